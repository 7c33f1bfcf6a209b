"""The demo's lamps: the same patterns as coloured text lines on a stream (stdout by default)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from edge.scan.light.base import Fault, Light, Pattern
from edge.verdict import Decision

_ANSI = {"green": "\x1b[1;97;42m", "red": "\x1b[1;97;41m", "amber": "\x1b[1;30;43m"}
_FAINT = {"green": "\x1b[32m", "red": "\x1b[31m", "amber": "\x1b[33m"}
_RESET = "\x1b[0m"


class TerminalLight(Light):
    """Writes one line per lamp change, e.g. ``[ PASS ] steady green, one short beep``."""

    name = "terminal"

    def __init__(self, stream: TextIO | None = None, *, color: bool | None = None, hold_s: float = 3.0,
                 monotonic: Callable[[], float] = time.monotonic):
        super().__init__(hold_s=hold_s, monotonic=monotonic)
        self.stream = stream if stream is not None else sys.stdout
        self.color = self.stream.isatty() if color is None else color

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def _paint(self, lamp: str, text: str, table: dict[str, str]) -> str:
        return f"{table[lamp]}{text}{_RESET}" if self.color else text

    def _draw_verdict(self, decision: Decision, pattern: Pattern) -> None:
        self._write(f"{self._paint(pattern.lamp, f'[ {decision.value:^6} ]', _ANSI)} {pattern.label}")

    def _draw_fault(self, fault: Fault, pattern: Pattern) -> None:
        self._write(self._paint(pattern.lamp, f"[ fault  ] {fault.value}: {pattern.label}", _FAINT))

    def _draw_off(self) -> None:
        self._write("[  idle  ] lamps off")
