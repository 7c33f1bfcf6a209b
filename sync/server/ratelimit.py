"""Per-device request rates (``RequestLimits.device_rate``, e.g. "30/second;1200/minute").

Two back-ends behind one call, chosen by the rate-limit storage URI as the ``limits`` library
names them:

* ``memory://`` (the default, limits per server process): ``CellRateLimiter``, the generic cell
  rate algorithm: one float per device and limit, O(1) per request, nothing running in the
  background. The ``limits`` library's memory storage was tried first: its expiry timer rescans
  every key every 10 ms while requests arrive, ~5 % of a server's CPU with 1,000 pushing devices
  (``checkpoint bench server``, profiled).
* anything else (``redis://…``, shared by every server process): ``limits``' moving window on that
  storage, as before.

Both hold a device to N per period in the long run, and both let it send N at once; after such a
burst the cell rate limiter admits one request every period/N, so a window of one period can hold
up to 2N where the moving window holds N.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

#: every this many allowed requests, forget the devices whose allowance is whole again (memory stays
#: bounded by the devices that sent lately)
_SWEEP_EVERY = 10_000
#: float rounding: N requests at one instant must all fit a limit of N
_GRAIN_S = 1e-6


class RateLimited(Protocol):
    def hit(self, key: str) -> tuple[str, float] | None:
        """Count one request of ``key``: None if allowed, else (the limit, seconds until it is)."""

    def peek(self, key: str) -> tuple[str, float] | None:
        """Would ``hit`` allow a request of ``key`` now? The same answer, counting nothing."""


class CellRateLimiter:
    """GCRA over several limits: a request is allowed only if every limit allows it, and counts
    against all of them only then."""

    def __init__(self, items: list[RateLimitItem], clock: Callable[[], float] = time.monotonic):
        # per limit: (text, emission interval T = period / amount, burst tolerance = period - T)
        self._limits = [(str(item), item.get_expiry() / item.amount, item.get_expiry() * (1 - 1 / item.amount))
                        for item in items]
        self._clock = clock
        #: key -> theoretical arrival time per limit
        self._due: dict[str, list[float]] = {}
        self._hits = 0

    def peek(self, key: str) -> tuple[str, float] | None:
        due = self._due.get(key)
        return None if due is None else self._refusal(due, self._clock())

    def _refusal(self, due: list[float], now: float) -> tuple[str, float] | None:
        for (text, _interval, tolerance), at in zip(self._limits, due, strict=True):
            wait = max(at, now) - tolerance - now
            if wait > _GRAIN_S:
                return text, wait
        return None

    def hit(self, key: str) -> tuple[str, float] | None:
        now = self._clock()
        due = self._due.get(key)
        if due is None:
            due = self._due[key] = [now] * len(self._limits)
        refused = self._refusal(due, now)
        if refused is not None:
            return refused
        for i, (_text, interval, _tolerance) in enumerate(self._limits):
            due[i] = max(due[i], now) + interval
        self._hits += 1
        if self._hits % _SWEEP_EVERY == 0:
            self._sweep(now)
        return None

    def _sweep(self, now: float) -> None:
        for key in [k for k, due in self._due.items() if max(due) <= now]:
            del self._due[key]

    def __len__(self) -> int:
        return len(self._due)


class SharedRateLimiter:
    """``limits``' moving window on a shared storage (every server process counts together)."""

    def __init__(self, items: list[RateLimitItem], storage_uri: str):
        self._items = items
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))

    def hit(self, key: str) -> tuple[str, float] | None:
        return self._check(key, self._limiter.hit)

    def peek(self, key: str) -> tuple[str, float] | None:
        return self._check(key, self._limiter.test)

    def _check(self, key: str, allowed: Callable[..., bool]) -> tuple[str, float] | None:
        for item in self._items:
            if not allowed(item, "device", key):
                reset = self._limiter.get_window_stats(item, "device", key).reset_time
                return str(item), (reset - time.time()) if reset else 1.0
        return None


def parse_rate(spec: str) -> list[RateLimitItem]:
    """The limits of ``spec`` ("30/second;1200/minute"); ValueError if it cannot be read or a limit
    allows nothing (a rate of 0 per period has no emission interval)."""
    items = parse_many(spec)
    if any(item.amount < 1 for item in items):
        raise ValueError("a rate must allow at least one request")
    return items


def device_rate_limiter(spec: str, storage_uri: str = "memory://") -> RateLimited:
    """The limiter for ``spec`` ("30/second;1200/minute") on the storage ``storage_uri``."""
    items = parse_rate(spec)
    if storage_uri.startswith("memory://"):
        return CellRateLimiter(items)
    return SharedRateLimiter(items, storage_uri)
