"""``checkpoint bench``: every benchmark the project has, one table or one JSON object."""

from __future__ import annotations

import importlib

import click

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
@click.option("--publish-rows", type=click.IntRange(min=1), default=None,
              help="risk: only the publisher's time and peak memory for an input of this many rows.")
@click.option("--records", type=click.IntRange(min=1000), default=None,
              help="trace: scan records to generate (default 20,000,000).")
@click.option("--checkpoints", type=click.IntRange(min=1), default=None, help="trace: checkpoints (default 1,000).")
@click.option("--days", type=click.IntRange(min=1, max=62), default=None, help="trace: days of records (default 30).")
@click.option("--queries", type=click.IntRange(min=1), default=None, help="trace: traces to time (default 300).")
def bench(names: tuple[str, ...], as_json: bool, quick: bool, entries: int | None, photos: str | None,
          publish_rows: int | None, records: int | None, checkpoints: int | None, days: int | None,
          queries: int | None) -> None:
    """Run benchmarks (all when no NAME is given) and print their figures."""
    results: dict[str, dict[str, object]] = {}
    for name in names or tuple(BENCHES):
        options: dict[str, object] = {"quick": quick}
        if name == "risk" and entries is not None:
            options["entries"] = entries
        if name == "decode" and photos is not None:
            options["photos"] = photos
        if name == "risk" and publish_rows is not None:
            options["publish_rows"] = publish_rows
        if name == "trace":
            options.update(records=records, checkpoints=checkpoints, days=days, queries=queries)
        if not as_json:
            click.echo(f"running bench {name} ...", err=True)
        results[name] = _load(name)(**options)
    emit(results, as_json)
