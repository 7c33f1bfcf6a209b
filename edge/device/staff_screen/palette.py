"""The staff screen's colours, and the WCAG 2 contrast ratio they are held to (AA: at least 4.5:1).

Green, red and amber keep their lamp meanings; each background is dark or light enough that its
text passes AA even for the small lines (reason, counts), not only for the huge title.
"""

from __future__ import annotations

from dataclasses import dataclass

#: WCAG 2.x level AA for normal-size text
AA_NORMAL = 4.5


@dataclass(frozen=True)
class Colours:
    background: str
    text: str


PALETTE: dict[str, Colours] = {
    "PASS": Colours("#0b6623", "#ffffff"),
    "REFUSE": Colours("#b3131b", "#ffffff"),
    "CHECK": Colours("#f2a900", "#000000"),
    "ready": Colours("#14171a", "#ffffff"),
    "not_ready": Colours("#2b2b2b", "#ffc21a"),
    "not_working": Colours("#595959", "#ffffff"),
}


def relative_luminance(colour: str) -> float:
    """WCAG 2 relative luminance of ``#rrggbb`` (sRGB channels linearised)."""
    value = colour.lstrip("#")
    if len(value) != 6:
        raise ValueError(f"expected #rrggbb, got {colour!r}")
    channels = [int(value[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(first: str, second: str) -> float:
    """(L1 + 0.05) / (L2 + 0.05) with L1 the lighter: 1 (same) to 21 (black on white)."""
    a, b = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (a + 0.05) / (b + 0.05)
