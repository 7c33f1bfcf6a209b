"""Anti-passback guard: one pass, one person, within a window of monotonic time."""

from __future__ import annotations

import pytest

from edge.scan.passback import PassbackGuard
from edge.verdict import Decision, Reason, Verdict


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def green(pass_id: str | None = "P-1", holder: bytes | None = None) -> Verdict:
    return Verdict(Decision.PASS, Reason.OK, format="CP1", kind="resident", pass_id=pass_id, holder_hash=holder)


def test_second_green_within_the_window_is_checked_and_the_window_ends():
    ticks = Ticks()
    guard = PassbackGuard(600, ticks)
    assert guard.check(green()).decision is Decision.PASS
    ticks.now += 599
    again = guard.check(green())
    assert (again.decision, again.reason, again.pass_id) == (Decision.CHECK, Reason.REPEAT_PASS, "P-1")
    ticks.now += 2  # 601 s after the first green: a new day at the barrier
    assert guard.check(green()).decision is Decision.PASS


def test_only_greens_count_and_passes_without_id_use_the_holder():
    ticks = Ticks()
    guard = PassbackGuard(600, ticks)
    refused = Verdict(Decision.REFUSE, Reason.RISK_F0, pass_id="P-2")
    assert guard.check(refused) is refused and guard.check(refused) is refused
    assert guard.check(green("P-2")).decision is Decision.PASS  # the refusal was not remembered
    holder = bytes(16)
    assert guard.check(green(None, holder)).decision is Decision.PASS
    assert guard.check(green(None, holder)).reason is Reason.REPEAT_PASS
    assert guard.check(green(None, None)).decision is Decision.PASS  # nothing to tell passes apart by


def test_off_and_bounded():
    ticks = Ticks()
    off = PassbackGuard(0, ticks)
    assert off.check(green()).decision is Decision.PASS and off.check(green()).decision is Decision.PASS
    small = PassbackGuard(600, ticks, max_tracked=3)
    for n in range(10):
        small.check(green(f"P-{n}"))
    assert small.check(green("P-0")).decision is Decision.PASS  # forgotten: memory stays bounded
    with pytest.raises(ValueError):
        PassbackGuard(-1, ticks)
