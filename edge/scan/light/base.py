"""The lamp seam: the hold-then-idle rule over the signal table, back-end neutral.

A verdict stays lit for ``hold_s`` seconds (``tick()`` returns to idle after that). Idle shows,
in order: the most urgent current fault (its amber rhythm); else the "alive and ready" green blip
while the daemon says frames are flowing (``set_alive``); else all lamps dark. So a dark head
always means "not running", never "ready".
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable

from edge.scan.light.signals import FAULTS, OFF, READY, VERDICTS, Fault, Signal, top_fault
from edge.verdict import Decision


class Light(ABC):
    """Show verdicts and faults. Thread-safe; every method returns quickly (rhythms run in background)."""

    name = "light"

    def __init__(self, *, hold_s: float = 3.0, monotonic: Callable[[], float] = time.monotonic):
        self.hold_s = hold_s
        self._monotonic = monotonic
        self._lock = threading.RLock()
        self._decision: Decision | None = None
        self._until = 0.0
        self._faults: frozenset[Fault] = frozenset()
        self._alive = False
        self._idle: Signal | None = None  # the idle signal drawn last (None: must redraw)

    @property
    def faults(self) -> frozenset[Fault]:
        return self._faults

    @property
    def decision(self) -> Decision | None:
        """The verdict currently lit, or None when idle."""
        return self._decision

    @property
    def alive(self) -> bool:
        return self._alive

    def show(self, decision: Decision) -> None:
        """Light the verdict signal now; it holds for ``hold_s`` then ``tick()`` returns to idle."""
        with self._lock:
            self._decision = decision
            self._until = self._monotonic() + self.hold_s
            self._idle = None
            self._draw(VERDICTS[decision])

    def set_faults(self, faults: Iterable[Fault]) -> None:
        """Replace the set of current faults; the idle lamp changes only if the top fault did."""
        with self._lock:
            self._faults = frozenset(faults)
            if self._decision is None:
                self._draw_idle_if_changed()

    def set_alive(self, alive: bool) -> None:
        """The daemon is (or is no longer) reading frames: idle shows the ready blip, or dark."""
        with self._lock:
            self._alive = alive
            if self._decision is None:
                self._draw_idle_if_changed()

    def idle_signal(self) -> Signal:
        """What the lamps show when no verdict is held."""
        fault = top_fault(self._faults)
        if fault is not None:
            return FAULTS[fault]
        return READY if self._alive else OFF

    def tick(self) -> None:
        """Return to idle once the verdict hold has passed (call often, e.g. every loop)."""
        with self._lock:
            if self._decision is not None and self._monotonic() >= self._until:
                self._decision = None
            if self._decision is None:
                self._draw_idle_if_changed()

    def off(self) -> None:
        """All lamps and the buzzer off (shutdown)."""
        with self._lock:
            self._decision, self._alive = None, False
            self._idle = OFF
            self._draw(OFF)

    def close(self) -> None:
        """Lamps off and release the hardware."""
        self.off()

    def _draw_idle_if_changed(self) -> None:
        signal = self.idle_signal()
        if signal is self._idle:
            return
        self._idle = signal
        self._draw(signal)

    @abstractmethod
    def _draw(self, signal: Signal) -> None:
        """Start showing ``signal`` (replacing whatever was shown); must return at once."""


class NullLight(Light):
    """``light.backend = "none"``: remembers state (for status) but drives nothing."""

    name = "none"

    def _draw(self, signal: Signal) -> None:
        pass
