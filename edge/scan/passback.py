"""Anti-passback: one pass, one person. A pass given green here a short while ago is checked by hand.

A phone handed back over the barrier shows the same pass again minutes later; the debouncer cannot
see that (the code left the view in between). Here every green pass is remembered for
``window_s`` seconds of monotonic time; the same pass (same pass id, or the same holder for a pass
without one) turning up again within the window gets amber CHECK ``repeat_pass`` instead of green,
so staff look at the person. Only greens are remembered: a refused pass shown again stays refused.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from edge.verdict import Decision, Reason, Verdict

#: at most this many recent passes are remembered (oldest forgotten first): bounded memory
MAX_TRACKED = 20_000


def pass_identity(verdict: Verdict) -> tuple[str, ...] | None:
    """What makes two scans the same pass: its id, else its holder and kind; None if neither."""
    if verdict.pass_id:
        return ("id", verdict.format or "", verdict.pass_id)
    if verdict.holder_hash:
        return ("holder", verdict.format or "", verdict.kind or "", verdict.holder_hash.hex())
    return None


class PassbackGuard:
    """Turns a second green for the same pass within ``window_s`` into CHECK ``repeat_pass``."""

    def __init__(self, window_s: float, monotonic: Callable[[], float], *, max_tracked: int = MAX_TRACKED):
        if window_s < 0:
            raise ValueError("the repeat-pass window must be >= 0 seconds")
        self.window_s, self.monotonic, self.max_tracked = window_s, monotonic, max_tracked
        self._passed: OrderedDict[tuple[str, ...], float] = OrderedDict()

    def check(self, verdict: Verdict) -> Verdict:
        if self.window_s == 0 or verdict.decision is not Decision.PASS:
            return verdict
        identity = pass_identity(verdict)
        if identity is None:
            return verdict
        now = self.monotonic()
        while self._passed and now - next(iter(self._passed.values())) >= self.window_s:
            self._passed.popitem(last=False)  # the oldest first: insertion order is time order
        if identity in self._passed:
            return replace(verdict, decision=Decision.CHECK, reason=Reason.REPEAT_PASS,
                           detail=f"the same pass was given green {now - self._passed[identity]:.0f} s ago here")
        self._passed[identity] = now
        while len(self._passed) > self.max_tracked:
            self._passed.popitem(last=False)
        return verdict
