"""The EU DCC conformance run on the shared test data: only upstream-known or listed cases disagree."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edge.cli.conformance import conformance
from edge.devtools.conformance import DEFAULT_KNOWN, load_known_issues, run
from edge.devtools.dgc_testdata import dgc_testdata_dir

DATA = dgc_testdata_dir()
pytestmark = pytest.mark.dgc

@pytest.fixture(scope="module")
def results():
    return run(DATA, load_known_issues(DEFAULT_KNOWN))


def test_no_unexplained_disagreement(results) -> None:
    assert len(results) == 455
    unexplained = {r.path: r.disagreements for r in results if not r.ok and not r.known}
    assert unexplained == {}
    assert sum(r.ok for r in results) >= 308


@pytest.mark.parametrize("version", ["1.0.0", "1.2.1", "1.3.0"])
@pytest.mark.parametrize("number", [7, 8, 9])
def test_value_set_violations_are_not_schema_violations(results, version: str, number: int) -> None:
    """PL 7/8/9 (unknown test device, country XY, unknown vaccine manufacturer) are valid against
    their schema: the value sets are a stage of their own, so these cases are known issues with
    the sibling cases that contradict them as evidence."""
    result = next(r for r in results if r.path == f"PL/{version}/2DCode/raw/{number}.json")
    assert result.disagreements == ["EXPECTEDSCHEMAVALIDATION expected False got True"]
    assert result.known and "SM/2DCode/raw/1-5.json" in result.known


@pytest.mark.parametrize("case", ["GE/2DCode/raw/1.json", "SM/2DCode/raw/1.json", "SM/2DCode/raw/5.json"])
def test_value_set_violations_pass_schema_validation(results, case: str) -> None:
    """Before the schema and value-set stages were apart these disagreed (listed as known)."""
    assert next(r for r in results if r.path == case).ok


def test_each_version_meets_its_own_schema(results) -> None:
    """1.0.0 / 1.2.1 / 1.3.0 vectors of one issuer: all agree, checked against their own release."""
    for version in ("1.0.0", "1.2.1", "1.3.0"):
        for number in (2, 3, 4, 11, 12):
            result = next(r for r in results if r.path == f"PL/{version}/2DCode/raw/{number}.json")
            assert result.ok, (result.path, result.disagreements)


def test_json_compares_instants_not_strings() -> None:
    from edge.devtools.conformance import _same_json

    assert _same_json({"sc": "2021-06-01T10:00:00+00:00"}, {"sc": "2021-06-01T10:00:00Z"})
    assert _same_json({"sc": "2021-06-01T12:00:00+02:00"}, {"sc": "2021-06-01T10:00:00Z"})
    assert not _same_json({"sc": "2021-06-01T10:00:01Z"}, {"sc": "2021-06-01T10:00:00Z"})


def test_known_issues_give_evidence(results) -> None:
    known = [r for r in results if r.known]
    assert known
    for r in known:  # an upstream issue, or the explicit statement that none was found plus the evidence
        assert "dgc-testdata/issues/" in r.known or "no upstream issue found" in r.known, r.path
    # the test data's own list of broken vectors is honoured with its issue as the evidence
    assert any(r.known.startswith("upstream tests/known_issues.csv: test_cose_schema NL") for r in known)


def test_cli_summary_line(tmp_path: Path) -> None:
    case_dir = tmp_path / "XX" / "2DCode" / "raw"
    case_dir.mkdir(parents=True)
    for name in ("CO3", "CO5", "Z2"):
        (case_dir / f"{name}.json").write_bytes((DATA / "common/2DCode/raw" / f"{name}.json").read_bytes())
    result = CliRunner().invoke(conformance, ["dgc", str(tmp_path)])
    assert result.output.strip().splitlines()[-1] == "3 passed, 0 failed", result.output
    broken = (case_dir / "CO3.json").read_text(encoding="utf-8-sig").replace('"EXPECTEDVERIFY": true',
                                                                             '"EXPECTEDVERIFY": false')
    (case_dir / "CO3.json").write_text(broken, encoding="utf-8")
    result = CliRunner().invoke(conformance, ["dgc", str(tmp_path)])
    assert result.exit_code == 1 and "FAIL  XX/2DCode/raw/CO3.json: EXPECTEDVERIFY" in result.output
    assert result.output.strip().endswith("2 passed, 1 failed")
