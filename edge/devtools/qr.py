"""Render pass text as a QR code PNG (segno)."""

from __future__ import annotations

from pathlib import Path

import segno


def write_png(text: str, path: Path, *, scale: int = 6, border: int = 4, error: str = "m") -> Path:
    """Write ``text`` as a QR code PNG at ``path`` (parent folders are created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    segno.make(text, error=error, micro=False).save(str(path), kind="png", scale=scale, border=border)
    return path
