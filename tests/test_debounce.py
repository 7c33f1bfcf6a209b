"""Debouncer: one decision per presentation of a code."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.config import DebounceConfig
from edge.scan.debounce import Debouncer


def test_held_code_is_decided_once():
    d = Debouncer(forget_after_s=2.0)
    decided = [d.feed(["A"], t / 10) for t in range(50)]  # 5 s in view
    assert decided[0] == ["A"] and all(x == [] for x in decided[1:])


def test_decided_again_only_after_leaving_view_long_enough():
    d = Debouncer(forget_after_s=2.0)
    assert d.feed(["A"], 0.0) == ["A"]
    assert d.feed([], 1.0) == []
    assert d.feed(["A"], 1.9) == []  # out of view 1.9 s < 2 s
    assert d.feed([], 3.0) == []
    assert d.feed(["A"], 4.0) == ["A"]  # out of view 2.1 s


def test_repeat_after_while_held():
    d = Debouncer(forget_after_s=2.0, repeat_after_s=3.0)
    out = [(t / 2, d.feed(["A"], t / 2)) for t in range(15)]
    assert [t for t, x in out if x] == [0.0, 3.0, 6.0]


def test_two_codes_are_independent_and_duplicates_collapse():
    d = Debouncer.from_config(DebounceConfig(forget_after_s=1.0))
    assert d.feed(["A", "B", "A"], 0.0) == ["A", "B"]
    assert d.feed(["B"], 0.5) == []
    assert d.feed(["A", "C"], 1.2) == ["A", "C"]
    assert sorted(d.in_view()) == ["A", "B", "C"]


def test_memory_is_bounded():
    d = Debouncer(forget_after_s=1e9, max_tracked=10)
    for i in range(100):
        d.feed([f"T{i}"], float(i))
    assert len(d.in_view()) == 10 and "T99" in d.in_view()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 1.0), st.booleans()), min_size=1, max_size=60),
       st.floats(0.1, 3.0))
def test_never_decides_while_continuously_in_view(steps, forget):
    """Property: between two decisions of one code it was out of view >= forget_after_s."""
    d = Debouncer(forget_after_s=forget)
    now, last_seen, decisions = 0.0, None, 0
    for gap, visible in steps:
        now += gap
        if not visible:
            d.feed([], now)
            continue
        got = d.feed(["X"], now)
        if got:
            decisions += 1
            assert last_seen is None or now - last_seen >= forget
        else:
            assert last_seen is not None and now - last_seen < forget
        last_seen = now
    assert decisions <= sum(1 for _, v in steps if v)
