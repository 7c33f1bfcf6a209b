"""The daemon with the real verifier and the real scan log (the pipeline bench's child, small)."""

from __future__ import annotations

import json

from edge.devtools.bench.pipeline import _write_frames, child, load_verifier, make_scenario, peak_rss_mb


def test_real_verifier_and_scanlog_through_the_loop(tmp_path):
    scenario = tmp_path / "scenario.json"
    texts = make_scenario(scenario)
    verifier = load_verifier(scenario)
    reasons = [verifier.verify(t).reason.value for t in texts]
    # signatures check out for both; the EU vector then meets the default policy's dose rule
    assert reasons == ["ok", "insufficient_vaccination"]
    folder = tmp_path / "frames"
    folder.mkdir()
    _write_frames(folder, texts, (640, 480), people=2)
    out = tmp_path / "out.json"
    child(str(folder), str(scenario), str(out))
    result = json.loads(out.read_text())
    assert result["code"] == 0 and result["frames"] == 14 and result["errors"] == 0
    assert result["records"] == len(result["latencies"]) >= 6  # one durable record per decision
    assert all(ms > 0 for ms in result["latencies"])
    assert set(result["reasons"]) == set(reasons)
    assert sum(result["reasons"].values()) == len(result["latencies"])
    assert 10 < peak_rss_mb() < 4096
