"""The demo's lamps: the same signals as coloured text lines on a stream (stdout by default)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from edge.scan.light.base import Light
from edge.scan.light.signals import Signal

_ANSI = {"green": "\x1b[1;97;42m", "red": "\x1b[1;97;41m", "amber": "\x1b[1;30;43m"}
_FAINT = {"green": "\x1b[32m", "red": "\x1b[31m", "amber": "\x1b[33m"}
_RESET = "\x1b[0m"


class TerminalLight(Light):
    """Writes one line per signal change, e.g. ``[  PASS  ] Steady green, one short beep``."""

    name = "terminal"

    def __init__(self, stream: TextIO | None = None, *, color: bool | None = None, hold_s: float = 3.0,
                 monotonic: Callable[[], float] = time.monotonic):
        super().__init__(hold_s=hold_s, monotonic=monotonic)
        self.stream = stream if stream is not None else sys.stdout
        self.color = self.stream.isatty() if color is None else color

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def _draw(self, signal: Signal) -> None:
        looks = signal.looks[1]
        if signal.key in ("PASS", "REFUSE", "CHECK"):
            text, table = f"[ {signal.key:^6} ] {looks}", _ANSI
        elif signal.key in ("ready", "off"):
            text, table = f"[ {signal.key:^6} ] {looks}", _FAINT
        else:
            text, table = f"[ fault  ] {signal.key}: {looks}", _FAINT
        if self.color and signal.lamp is not None:
            text = f"{table[signal.lamp]}{text}{_RESET}"
        self._write(text)
