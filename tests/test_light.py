"""Lamp signals asserted as pin state sequences on gpiozero's MockFactory, and the terminal rendering.

Every rhythm is checked against the one signal table (:mod:`edge.scan.light.signals`) on a
three-lamp head and on a single RGB LED at once, so "the same patterns on both" is measured,
not assumed.
"""

from __future__ import annotations

import io
import time

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge.config import LightConfig
from edge.scan.light import FAULTS, OFF, READY, VERDICTS, Fault, Lamp, NullLight, make_light, top_fault
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
        _made.pop().close()  # stop rhythm/beep threads before the pins go
    f.close()


def make(factory: MockFactory, mono: Mono | None = None, **overrides) -> GpioLight:
    config = LightConfig(backend="gpio", verdict_hold_s=3.0, **{**PINS, **overrides})
    light = GpioLight(config, pin_factory=factory, monotonic=mono or Mono())
    _made.append(light)
    return light


def lit_durations(factory: MockFactory, pin: int, count: int) -> list[float]:
    """Durations of the first ``count`` completed segments after the pin first lit (lit, dark, ...)."""
    recorded = factory.pin(pin).states
    return [s.timestamp for s in recorded[2:2 + count]]


#: a blink thread sleeps each segment out, so a segment is never shorter than the table's (but for
#: timer grain) and is longer by however late a loaded machine wakes the thread (0.08 s seen in CI)
EARLY_S, LATE_S = 0.03, 0.25


def plays(got: list[float], want: list[float]) -> bool:
    """Whether recorded segment durations are the table's rhythm: as many, none early, none very late
    (the rhythms differ in their count of blinks and where the long pause falls, not by 0.1 s alone)."""
    return len(got) == len(want) and all(w - EARLY_S <= g <= w + LATE_S for g, w in zip(got, want, strict=True))


# -- the table's rules ---------------------------------------------------------------------------
def test_no_fault_uses_green_or_red_and_every_fault_is_amber_with_its_own_rhythm():
    assert {s.lamp for s in FAULTS.values()} == {Lamp.AMBER}
    rhythms = [s.rhythm for s in FAULTS.values()]
    assert len(set(rhythms)) == len(rhythms) == len(Fault)
    assert all(not s.steady and len(s.rhythm) % 2 == 0 for s in FAULTS.values())
    assert VERDICTS[Decision.CHECK].lamp is Lamp.AMBER and VERDICTS[Decision.CHECK].steady


def test_ready_is_a_green_blip_distinct_from_off_and_from_pass():
    assert READY.lamp is Lamp.GREEN and not READY.steady
    assert READY.rhythm[0] < 0.2 < READY.period_s  # brief: nobody reads it as a steady PASS
    assert OFF.lamp is None and READY != OFF
    assert VERDICTS[Decision.PASS].steady


def test_amber_verdict_has_a_short_sound_and_all_beeps_differ():
    beeps = {d: VERDICTS[d].beep for d in Decision}
    assert beeps[Decision.CHECK] is not None and beeps[Decision.CHECK].total_s < 0.5
    assert len({(b.on_s, b.count) for b in beeps.values()}) == 3


def test_top_fault_is_the_most_urgent():
    assert top_fault([Fault.SERVER_UNREACHABLE, Fault.CAMERA_LOST]) is Fault.CAMERA_LOST
    assert top_fault([Fault.RISK_STALE, Fault.DEVICE_NOT_READY]) is Fault.DEVICE_NOT_READY
    assert top_fault([]) is None


# -- pin sequences -----------------------------------------------------------------------------
def test_every_idle_rhythm_is_the_same_on_three_lamps_and_on_one_rgb_led():
    """All idle signals play at once (a lamp head and an RGB LED each, on its own mock board) for a cycle."""
    signals = [READY, *FAULTS.values()]
    boards = [MockFactory(pin_class=MockPWMPin) for _ in signals]
    try:
        for board, signal in zip(boards, signals, strict=True):
            for light in (make(board), make(board, rgb_pins=(5, 6, 13), buzzer_pin=None)):
                if signal is READY:
                    light.set_alive(True)
                else:
                    light.set_faults({Fault(signal.key)})
        time.sleep(max(s.period_s for s in signals) + 0.5)
        for board, signal in zip(boards, signals, strict=True):
            lamp_pin = {Lamp.GREEN: 17, Lamp.AMBER: 22}[signal.lamp]
            rgb_pin = 6 if signal.lamp is Lamp.GREEN else 5  # amber drives the red channel fully
            want = list(signal.rhythm)
            for pin in (lamp_pin, rgb_pin):
                assert plays(lit_durations(board, pin, len(want)), want), (signal.key, pin)
            others = {17, 27, 22} - {lamp_pin}
            assert all(states(board, p) == [False] for p in others), signal.key  # one lamp only
            if signal is not READY:
                assert states(board, 23)[:3] == [False, True, False]  # one chirp when the fault starts
                assert 1.0 not in [s.state for s in board.pin(6).states]  # the RGB never shows full green
    finally:
        while _made:
            _made.pop().close()
        for board in boards:
            board.close()


def test_pass_is_steady_green_and_one_short_beep(factory):
    light = make(factory)
    light.show(Decision.PASS)
    wait_for(lambda: not light.buzzer.is_active and len(states(factory, 23)) >= 3)
    assert states(factory, 17) == [False, True]
    assert states(factory, 27) == [False] and states(factory, 22) == [False]
    factory.pin(23).assert_states([False, True, False])
    assert plays([factory.pin(23).states[2].timestamp], [0.1])


def test_refuse_is_steady_red_and_long_beep(factory):
    light = make(factory)
    light.show(Decision.REFUSE)
    wait_for(lambda: states(factory, 27) == [False, True])
    wait_for(lambda: not light.buzzer.is_active and len(states(factory, 23)) >= 3)
    assert factory.pin(23).states[2].timestamp >= 0.7  # the long beep held ~0.8 s
    assert states(factory, 17) == [False]


def test_check_is_steady_amber_with_two_short_beeps(factory):
    light = make(factory)
    light.show(Decision.CHECK)
    wait_for(lambda: len(states(factory, 23)) >= 5, timeout=3)
    assert states(factory, 23)[:5] == [False, True, False, True, False]
    beeps = [s.timestamp for s in factory.pin(23).states[2:5:2]]
    assert plays(beeps, [0.1, 0.1])
    time.sleep(0.3)
    assert states(factory, 22) == [False, True]  # steady: lit once, never blinked


def test_verdicts_replace_each_other(factory):
    light = make(factory)
    light.show(Decision.PASS)
    wait_for(lambda: factory.pin(17).state == 1)
    light.show(Decision.CHECK)
    wait_for(lambda: factory.pin(22).state == 1)
    assert factory.pin(17).state == 0


def test_idle_is_dark_until_alive_then_blips_and_dark_again_after_off(factory):
    light = make(factory)
    light.tick()
    time.sleep(0.2)
    assert all(states(factory, p) == [False] for p in (17, 27, 22))  # not running: dark
    light.set_alive(True)
    wait_for(lambda: len(states(factory, 17)) >= 3)  # the green blip came and went
    assert plays([factory.pin(17).states[2].timestamp], [READY.rhythm[0]])
    light.off()
    wait_for(lambda: factory.pin(17).state == 0)
    assert not light.alive


def test_verdict_holds_then_idle_shows_top_fault(factory):
    mono = Mono()
    light = make(factory, mono)
    light.set_alive(True)
    light.set_faults({Fault.SERVER_UNREACHABLE, Fault.RISK_STALE})
    wait_for(lambda: len(states(factory, 22)) >= 2)
    light.show(Decision.REFUSE)
    wait_for(lambda: factory.pin(27).state == 1 and factory.pin(22).state == 0)
    mono.t += 2.9
    light.tick()
    assert light.decision is Decision.REFUSE and factory.pin(27).state == 1
    mono.t += 0.2
    light.tick()
    assert light.decision is None
    wait_for(lambda: factory.pin(27).state == 0)
    wait_for(lambda: factory.pin(22).state == 1)  # risk-stale flashes again
    assert factory.pin(17).state == 0  # ready blip hidden while a fault is up


def test_unchanged_faults_do_not_restart_the_rhythm(factory):
    light = make(factory)
    light.set_faults({Fault.CAMERA_LOST})
    wait_for(lambda: len(states(factory, 22)) >= 2 and len(states(factory, 23)) >= 3)  # lit, chirp done
    chirps = len(states(factory, 23))
    light.set_faults({Fault.CAMERA_LOST, Fault.DISK_LOW})
    light.tick()
    time.sleep(0.1)
    assert len(states(factory, 23)) == chirps  # no second chirp: the top fault did not change
    light.set_faults(set())
    wait_for(lambda: factory.pin(22).state == 0)


def test_rgb_led_colours(factory):
    light = make(factory, rgb_pins=(5, 6, 13), buzzer_pin=None)
    light.show(Decision.PASS)
    wait_for(lambda: (factory.pin(5).state, factory.pin(6).state, factory.pin(13).state) == (0, 1, 0))
    light.show(Decision.CHECK)
    wait_for(lambda: factory.pin(5).state == 1 and factory.pin(6).state == pytest.approx(0.55))
    light.off()
    wait_for(lambda: (factory.pin(5).state, factory.pin(6).state, factory.pin(13).state) == (0, 0, 0))


def test_active_low_lamps(factory):
    light = make(factory, active_high=False)
    light.show(Decision.PASS)
    wait_for(lambda: factory.pin(17).state == 0 and factory.pin(27).state == 1)


def test_terminal_light_renders_the_same_signals():
    out, mono = io.StringIO(), Mono()
    light = TerminalLight(out, color=False, hold_s=1.0, monotonic=mono)
    light.tick()
    light.set_alive(True)
    light.show(Decision.PASS)
    mono.t += 1.5
    light.tick()
    light.set_faults({Fault.CAMERA_LOST})
    light.tick()
    light.off()
    assert out.getvalue().splitlines() == [
        "[  off   ] All lamps dark",
        "[ ready  ] Green blip every 4 s",
        "[  PASS  ] Steady green, one short beep",
        "[ ready  ] Green blip every 4 s",
        "[ fault  ] camera_lost: Amber fast blink",
        "[  off   ] All lamps dark",
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
        wait_for(lambda: light.lamps["green"].is_lit)
    finally:
        light.close()
    with pytest.raises(ValueError, match=r"unknown light\.pin_factory"):
        make_pin_factory("bogus")
