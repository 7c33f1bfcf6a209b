"""``checkpoint decode FILE...``: one JSON line per image with the QR texts found and the time."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge.cli.common import reports_errors


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Use the [decoder] section (roi, downscale, pyzbar_fallback) of this config.")
@click.option("--no-pyzbar", is_flag=True, help="Disable the pyzbar fallback.")
@reports_errors
def decode(files: tuple[Path, ...], config_path: Path | None, no_pyzbar: bool) -> None:
    """Decode QR codes in image FILES; print {file, texts, ms} per image. Exit 1 if any is unreadable."""
    from edge.config import DecoderConfig, load_config
    from edge.scan.decode import Decoder, decode_file

    section = load_config(config_path).decoder if config_path else DecoderConfig()
    decoder = Decoder(section, pyzbar_fallback=False if no_pyzbar else None)
    failed = False
    for path in files:
        try:
            result = decode_file(decoder, str(path))
        except ValueError as exc:
            result = {"file": str(path), "texts": [], "ms": None, "error": str(exc)}
        failed |= "error" in result
        click.echo(json.dumps(result, ensure_ascii=False))
    if failed:
        raise SystemExit(1)
