"""The lamp seam: verdict patterns, fault patterns and the hold-then-idle rule, back-end neutral.

A verdict stays lit for ``hold_s`` seconds (``tick()`` returns to idle after that); when idle the
most urgent current fault is shown as a slow blink staff learn, one distinct pattern per fault.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from edge.verdict import Decision


class Fault(StrEnum):
    """Conditions staff must know about; listed most urgent first."""

    CAMERA_LOST = "camera_lost"
    CLOCK_UNTRUSTED = "clock_untrusted"
    #: a list on the card (risk list, trust list, policy) was refused at open: edited, damaged or rolled back
    LIST_DAMAGED = "list_damaged"
    RISK_STALE = "risk_stale"
    DISK_LOW = "disk_low"
    SERVER_UNREACHABLE = "server_unreachable"


#: most urgent first: only the first current fault blinks, the staff screen lists all
FAULT_PRIORITY: tuple[Fault, ...] = tuple(Fault)


@dataclass(frozen=True)
class Pattern:
    """A lamp colour (``green``/``red``/``amber``), on/off times (off 0 = steady) and a beep."""

    lamp: str
    on_s: float = 0.0
    off_s: float = 0.0
    beep_s: float = 0.0
    label: str = ""

    @property
    def steady(self) -> bool:
        return self.off_s == 0


VERDICT_PATTERNS: dict[Decision, Pattern] = {
    Decision.PASS: Pattern("green", beep_s=0.1, label="steady green, one short beep"),
    Decision.REFUSE: Pattern("red", beep_s=0.8, label="steady red, long beep"),
    Decision.CHECK: Pattern("amber", label="steady amber"),
}

FAULT_PATTERNS: dict[Fault, Pattern] = {
    Fault.CAMERA_LOST: Pattern("red", 1.0, 1.0, label="red slow blink (1 s on, 1 s off)"),
    Fault.CLOCK_UNTRUSTED: Pattern("amber", 0.2, 1.8, label="amber short flash every 2 s"),
    Fault.LIST_DAMAGED: Pattern("amber", 0.25, 0.25, label="amber fast blink (4 times a second)"),
    Fault.RISK_STALE: Pattern("amber", 1.0, 1.0, label="amber slow blink (1 s on, 1 s off)"),
    Fault.DISK_LOW: Pattern("red", 0.2, 1.8, label="red short flash every 2 s"),
    Fault.SERVER_UNREACHABLE: Pattern("green", 0.2, 2.8, label="green short flash every 3 s"),
}


def top_fault(faults: Iterable[Fault]) -> Fault | None:
    """The most urgent of ``faults`` (the one the lamp blinks), or None."""
    current = set(faults)
    return next((f for f in FAULT_PRIORITY if f in current), None)


class Light(ABC):
    """Show verdicts and faults. Thread-safe; every method returns quickly (blinks run in background)."""

    name = "light"

    def __init__(self, *, hold_s: float = 3.0, monotonic: Callable[[], float] = time.monotonic):
        self.hold_s = hold_s
        self._monotonic = monotonic
        self._lock = threading.RLock()
        self._decision: Decision | None = None
        self._until = 0.0
        self._faults: frozenset[Fault] = frozenset()
        self._idle_fault: Fault | None = None
        self._idle_drawn = False

    @property
    def faults(self) -> frozenset[Fault]:
        return self._faults

    @property
    def decision(self) -> Decision | None:
        """The verdict currently lit, or None when idle."""
        return self._decision

    def show(self, decision: Decision) -> None:
        """Light the verdict pattern now; it holds for ``hold_s`` then ``tick()`` returns to idle."""
        with self._lock:
            self._decision = decision
            self._until = self._monotonic() + self.hold_s
            self._idle_drawn = False
            self._draw_verdict(decision, VERDICT_PATTERNS[decision])

    def set_faults(self, faults: Iterable[Fault]) -> None:
        """Replace the set of current faults; the idle lamp changes only if the top fault did."""
        with self._lock:
            self._faults = frozenset(faults)
            if self._decision is None:
                self._draw_idle_if_changed()

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
            self._decision, self._idle_drawn = None, False
            self._draw_off()

    def close(self) -> None:
        """Lamps off and release the hardware."""
        self.off()

    def _draw_idle_if_changed(self) -> None:
        fault = top_fault(self._faults)
        if self._idle_drawn and fault == self._idle_fault:
            return
        self._idle_fault, self._idle_drawn = fault, True
        if fault is None:
            self._draw_off()
        else:
            self._draw_fault(fault, FAULT_PATTERNS[fault])

    @abstractmethod
    def _draw_verdict(self, decision: Decision, pattern: Pattern) -> None: ...

    @abstractmethod
    def _draw_fault(self, fault: Fault, pattern: Pattern) -> None: ...

    @abstractmethod
    def _draw_off(self) -> None: ...


class NullLight(Light):
    """``light.backend = "none"``: remembers state (for status) but drives nothing."""

    name = "none"

    def _draw_verdict(self, decision: Decision, pattern: Pattern) -> None:
        pass

    def _draw_fault(self, fault: Fault, pattern: Pattern) -> None:
        pass

    def _draw_off(self) -> None:
        pass
