"""``checkpoint conformance dgc DIR``: the EU DCC test vectors through our HC1 reader."""

from __future__ import annotations

from pathlib import Path

import click

from edge.devtools.conformance import DEFAULT_KNOWN, load_known_issues, run


@click.group()
def conformance() -> None:
    """Conformance test suites."""


@conformance.command("dgc")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--known-issues", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="CSV of known-broken cases (path,reason); default: the list shipped with the runner.")
def dgc(folder: Path, known_issues: Path | None) -> None:
    """Run every EU DCC test case in FOLDER; one line per disagreeing case, then a summary."""
    results = run(folder, load_known_issues(known_issues or DEFAULT_KNOWN))
    failed = known = 0
    for result in results:
        if result.ok:
            continue
        if result.known:
            known += 1
            click.echo(f"KNOWN {result.path}: {'; '.join(result.disagreements)} ({result.known})")
        else:
            failed += 1
            click.echo(f"FAIL  {result.path}: {'; '.join(result.disagreements)}")
    passed = len(results) - failed - known
    click.echo(f"{passed} passed, {failed} failed" + (f", {known} known issues" if known else ""))
    if failed:
        raise SystemExit(1)
