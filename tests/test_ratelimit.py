"""Per-device rate limits: the in-process cell rate limiter against a hand-stepped clock, and the
shared moving window it replaced for ``memory://``, fed the same traffic."""

from __future__ import annotations

import pytest
from limits import parse_many

from sync.server.ratelimit import CellRateLimiter, SharedRateLimiter, device_rate_limiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_the_limit_then_one_per_interval():
    clock = Clock()
    limiter = CellRateLimiter(parse_many("5/minute"), clock)
    assert [limiter.hit("dev-1") for _ in range(5)] == [None] * 5
    refused = limiter.hit("dev-1")
    assert refused is not None and refused[0] == "5 per 1 minute" and refused[1] == pytest.approx(12.0)
    clock.now += 11.9
    assert limiter.hit("dev-1") is not None  # still too early
    clock.now += 0.2
    assert limiter.hit("dev-1") is None  # one interval (60 s / 5) after the burst
    assert limiter.hit("dev-1") is not None
    assert limiter.hit("dev-2") is None  # another device has its own allowance


def test_every_limit_must_allow_and_a_refused_request_costs_nothing():
    clock = Clock()
    limiter = CellRateLimiter(parse_many("3/second;4/minute"), clock)
    assert [limiter.hit("d") for _ in range(3)] == [None] * 3
    refused = limiter.hit("d")
    assert refused is not None and refused[0] == "3 per 1 second"
    clock.now += 1.0
    assert limiter.hit("d") is None  # the 4th of the minute
    clock.now += 1.0
    refused = limiter.hit("d")
    assert refused is not None and refused[0] == "4 per 1 minute" and refused[1] == pytest.approx(13.0)
    for _ in range(50):  # hammering while refused does not push the allowance further away
        assert limiter.hit("d") is not None
    clock.now += 13.0
    assert limiter.hit("d") is None


def test_a_flooding_device_is_held_to_the_rate():
    """A device sending 50 a second for 10 minutes under 30/second;1200/minute gets the minute's
    1,200 as a burst, then 20 a second; one sending 10 a second is never refused."""
    clock = Clock()
    cell = CellRateLimiter(parse_many("30/second;1200/minute"), clock)
    admitted = 0
    for _ in range(50 * 600):
        clock.now += 0.02
        admitted += cell.hit("flood") is None
    assert 1200 + 20 * 600 - 2 <= admitted <= 1200 + 20 * 600 + 2
    refused = 0
    for _ in range(10 * 600):
        clock.now += 0.1
        refused += cell.hit("calm") is not None
    assert refused == 0


def test_memory_stays_bounded_by_recently_active_devices():
    clock = Clock()
    limiter = CellRateLimiter(parse_many("30/second"), clock)
    for i in range(20_000):
        limiter.hit(f"dev-{i}")
        clock.now += 0.001
    assert len(limiter) < 20_000  # devices whose allowance came back whole were forgotten
    assert len(limiter) >= 1


def test_storage_choice():
    assert isinstance(device_rate_limiter("5/minute"), CellRateLimiter)
    shared = SharedRateLimiter(parse_many("2/minute"), "memory://")
    assert shared.hit("d") is None and shared.hit("d") is None
    refused = shared.hit("d")
    assert refused is not None and refused[0] == "2 per 1 minute" and 0 < refused[1] <= 60


def test_a_rate_that_allows_nothing_or_cannot_be_read_is_refused():
    """A limit of 0 per period has no emission interval (it divided by zero at start-up)."""
    for spec in ("0/minute", "10/second;0/hour", "lots"):
        with pytest.raises(ValueError):
            device_rate_limiter(spec)


def test_peek_answers_as_hit_would_and_counts_nothing():
    clock = [0.0]
    limiter = CellRateLimiter(parse_many("2/minute"), clock=lambda: clock[0])
    assert limiter.peek("d") is None and len(limiter) == 0  # a device never heard from holds no memory
    for _ in range(5):
        assert limiter.peek("d") is None
    assert limiter.hit("d") is None and limiter.hit("d") is None
    refused = limiter.peek("d")
    assert refused is not None and refused == limiter.hit("d")
    clock[0] = 30.0
    assert limiter.peek("d") is None and limiter.hit("d") is None


def test_shared_peek_counts_nothing():
    shared = SharedRateLimiter(parse_many("2/minute"), "memory://")
    assert all(shared.peek("d") is None for _ in range(5))
    assert shared.hit("d") is None and shared.hit("d") is None
    assert shared.peek("d") is not None and shared.hit("d") is not None
