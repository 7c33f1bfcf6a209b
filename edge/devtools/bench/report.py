"""Printing benchmark figures as one table or one JSON object."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable

import click


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; 0.0 for no values."""
    data = sorted(values)
    if not data:
        return 0.0
    rank = max(0, min(len(data) - 1, round(q / 100 * (len(data) - 1))))
    return data[rank]


def median(values: Iterable[float]) -> float:
    data = list(values)
    return statistics.median(data) if data else 0.0


def emit(results: dict[str, dict[str, object]], as_json: bool) -> None:
    """Print ``{bench_name: {figure: value}}`` as a table, or as one flat JSON object."""
    if as_json:
        flat: dict[str, object] = {}
        for figures in results.values():
            flat.update(figures)
        click.echo(json.dumps(flat, sort_keys=True))
        return
    width = max((len(k) for figures in results.values() for k in figures), default=10)
    for name, figures in results.items():
        click.echo(f"== bench {name}")
        for key, value in figures.items():
            shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
            click.echo(f"  {key:<{width}}  {shown}")
