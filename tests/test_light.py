"""Lamp patterns asserted as pin state sequences on gpiozero's MockFactory, and the terminal rendering."""

from __future__ import annotations

import io
import time

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge.config import LightConfig
from edge.scan.light import FAULT_PATTERNS, Fault, NullLight, make_light, top_fault
from edge.scan.light.gpio import GpioLight, make_pin_factory
from edge.scan.light.terminal import TerminalLight
from edge.verdict import Decision

PINS = {"green_pin": 17, "red_pin": 27, "amber_pin": 22, "buzzer_pin": 23}


class Mono:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def states(factory: MockFactory, pin: int) -> list[float]:
    return [s.state for s in factory.pin(pin).states]


def wait_for(predicate, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


_made: list[GpioLight] = []


@pytest.fixture
def factory() -> MockFactory:
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    while _made:
        _made.pop().close()  # stop blink/beep threads before the pins go
    f.close()


def make(factory: MockFactory, mono: Mono | None = None, **overrides) -> GpioLight:
    config = LightConfig(backend="gpio", verdict_hold_s=3.0, **{**PINS, **overrides})
    light = GpioLight(config, pin_factory=factory, monotonic=mono or Mono())
    _made.append(light)
    return light


def test_pass_is_steady_green_and_one_short_beep(factory):
    light = make(factory)
    light.show(Decision.PASS)
    wait_for(lambda: not light.buzzer.is_active and len(states(factory, 23)) >= 3)
    assert states(factory, 17) == [False, True]
    assert states(factory, 27) == [False] and states(factory, 22) == [False]
    assert states(factory, 23) == [False, True, False]
    factory.pin(23).assert_states([False, True, False])


def test_refuse_is_steady_red_and_long_beep(factory):
    light = make(factory)
    light.show(Decision.REFUSE)
    assert states(factory, 27) == [False, True]
    wait_for(lambda: not light.buzzer.is_active and len(states(factory, 23)) >= 3)
    on_time = factory.pin(23).states[2].timestamp
    assert on_time >= 0.7  # the long beep held ~0.8 s
    assert states(factory, 17) == [False]


def test_check_is_amber_without_beep_and_verdicts_replace_each_other(factory):
    light = make(factory)
    light.show(Decision.PASS)
    light.show(Decision.CHECK)
    assert states(factory, 22) == [False, True]
    assert states(factory, 17) == [False, True, False]


def test_verdict_holds_then_idle_shows_top_fault(factory):
    mono = Mono()
    light = make(factory, mono)
    light.set_faults({Fault.SERVER_UNREACHABLE, Fault.RISK_STALE})
    wait_for(lambda: len(states(factory, 22)) >= 2)  # risk stale outranks server: amber blinks
    light.show(Decision.REFUSE)
    assert factory.pin(22).state == 0 and factory.pin(27).state == 1
    mono.t += 2.9
    light.tick()
    assert light.decision is Decision.REFUSE and factory.pin(27).state == 1
    mono.t += 0.2
    light.tick()
    assert light.decision is None
    assert factory.pin(27).state == 0
    before = len(states(factory, 22))
    wait_for(lambda: len(states(factory, 22)) > before)  # amber blinking again
    assert states(factory, 17) == [False]  # server fault hidden behind the more urgent one


def test_fault_blink_timing_is_the_learned_pattern(factory):
    light = make(factory)
    light.set_faults({Fault.CLOCK_UNTRUSTED})
    wait_for(lambda: len(states(factory, 22)) >= 3, timeout=5)
    pin_states = factory.pin(22).states
    assert [s.state for s in pin_states[:3]] == [False, True, False]
    assert pin_states[2].timestamp == pytest.approx(0.2, abs=0.1)  # 0.2 s flash
    light.off()
    assert factory.pin(22).state == 0


def test_unchanged_faults_do_not_restart_the_blink(factory):
    light = make(factory)
    light.set_faults({Fault.CAMERA_LOST})
    wait_for(lambda: len(states(factory, 27)) >= 2)
    thread = light.lamps["red"]._blink_thread
    light.set_faults({Fault.CAMERA_LOST, Fault.DISK_LOW})
    light.tick()
    assert light.lamps["red"]._blink_thread is thread
    light.set_faults(set())
    assert factory.pin(27).state == 0


def test_rgb_led_colours(factory):
    light = make(factory, rgb_pins=(5, 6, 13), buzzer_pin=None)
    light.show(Decision.PASS)
    assert (factory.pin(5).state, factory.pin(6).state, factory.pin(13).state) == (0, 1, 0)
    light.show(Decision.CHECK)
    assert factory.pin(5).state == 1 and factory.pin(6).state == pytest.approx(0.55)
    light.off()
    assert (factory.pin(5).state, factory.pin(6).state, factory.pin(13).state) == (0, 0, 0)


def test_active_low_lamps(factory):
    light = make(factory, active_high=False)
    light.show(Decision.PASS)
    assert factory.pin(17).state == 0 and factory.pin(27).state == 1


def test_every_fault_has_a_distinct_pattern():
    seen = {(p.lamp, p.on_s, p.off_s) for p in FAULT_PATTERNS.values()}
    assert len(seen) == len(Fault) == len(FAULT_PATTERNS)
    assert all(not p.steady for p in FAULT_PATTERNS.values())
    assert top_fault([Fault.SERVER_UNREACHABLE, Fault.CAMERA_LOST]) is Fault.CAMERA_LOST
    assert top_fault([]) is None


def test_terminal_light_renders_the_same_patterns():
    out, mono = io.StringIO(), Mono()
    light = TerminalLight(out, color=False, hold_s=1.0, monotonic=mono)
    light.show(Decision.PASS)
    light.tick()
    mono.t += 1.5
    light.set_faults({Fault.CAMERA_LOST})
    light.tick()
    light.tick()
    light.off()
    assert out.getvalue().splitlines() == [
        "[  PASS  ] steady green, one short beep",
        "[ fault  ] camera_lost: red slow blink (1 s on, 1 s off)",
        "[  idle  ] lamps off",
    ]
    coloured = io.StringIO()
    TerminalLight(coloured, color=True).show(Decision.REFUSE)
    assert "\x1b[1;97;41m" in coloured.getvalue()


def test_make_light_by_backend():
    stream = io.StringIO()
    assert isinstance(make_light(LightConfig(backend="terminal"), stream=stream), TerminalLight)
    assert isinstance(make_light(LightConfig(backend="none")), NullLight)
    light = make_light(LightConfig(backend="gpio", pin_factory="mock"))
    try:
        light.show(Decision.PASS)
        assert light.lamps["green"].is_lit
    finally:
        light.close()
    with pytest.raises(ValueError, match=r"unknown light\.pin_factory"):
        make_pin_factory("bogus")
