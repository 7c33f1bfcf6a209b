"""``checkpoint legend``: the one-page lamp legend (Vietnamese and English) to print and pin up."""

from __future__ import annotations

from pathlib import Path

import click

from edge.cli.common import reports_errors


@click.command()
@click.option("--format", "fmt", type=click.Choice(["html", "text"]), default="html", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file (default: standard output). Print the HTML from a browser: one A4 page.")
@reports_errors
def legend(fmt: str, output: Path | None) -> None:
    """Print the lamp and buzzer legend, drawn from the same table the lamps use."""
    from edge.scan.light.legend import legend_html, legend_text

    body = legend_html() if fmt == "html" else legend_text()
    if output is None:
        click.echo(body, nl=False)
    else:
        output.write_text(body, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
