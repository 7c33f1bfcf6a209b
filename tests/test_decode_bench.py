"""The decode benchmark's building blocks, on a handful of frames (figures live in the bench)."""

from __future__ import annotations

from edge.devtools.bench.decode import _measure, sample_texts
from edge.devtools.synth import Distortion, render_idle, render_scene
from edge.scan.decode import Decoder


def test_sample_texts_are_pass_like_and_deterministic():
    texts = sample_texts(6)
    assert texts == sample_texts(6)
    assert [t[:4] for t in texts[:2]] == ["HC1:", "CP1:"]
    assert all(300 <= len(t) - 4 <= 560 for t in texts[::2])


def test_measure_counts_reads_and_times():
    text = sample_texts(1)[0]
    coded = [(text, render_scene(text, (640, 480), 1, Distortion())), ("CP1:NOT-THERE", render_idle((640, 480), 1))]
    figures = _measure("ours", Decoder().decode, [render_idle((640, 480), 2)], coded, idle_repeats=2)
    assert figures["read_rate"] == 0.5
    assert figures["idle_ms"] > 0 and figures["code_ms_p95"] >= figures["code_ms"]
