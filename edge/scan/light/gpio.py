"""gpiozero lamps: green, red and amber LEDs plus a buzzer, or one RGB LED.

The pin factory comes from config (``"mock"`` gives gpiozero's MockFactory with PWM-capable mock
pins, as the RGB LED needs PWM); empty means gpiozero's default order (lgpio first on a Pi).
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable

from edge.config import LightConfig
from edge.scan.light.base import Light
from edge.scan.light.signals import Lamp, Signal

#: name -> "module:class" for the pin factories gpiozero ships
PIN_FACTORIES = {
    "lgpio": "gpiozero.pins.lgpio:LGPIOFactory",
    "rpigpio": "gpiozero.pins.rpigpio:RPiGPIOFactory",
    "pigpio": "gpiozero.pins.pigpio:PiGPIOFactory",
    "native": "gpiozero.pins.native:NativeFactory",
}

RGB = {"green": (0.0, 1.0, 0.0), "red": (1.0, 0.0, 0.0), "amber": (1.0, 0.55, 0.0)}
DARK = (0.0, 0.0, 0.0)


def make_pin_factory(name: str):
    """A gpiozero pin factory by name; None for ``""`` (gpiozero picks). Raises ValueError if unknown."""
    if not name:
        return None
    if name == "mock":
        from gpiozero.pins.mock import MockFactory, MockPWMPin

        return MockFactory(pin_class=MockPWMPin)
    if name not in PIN_FACTORIES:
        raise ValueError(f"unknown light.pin_factory {name!r}: use one of mock, {', '.join(PIN_FACTORIES)}")
    module, cls = PIN_FACTORIES[name].split(":")
    return getattr(importlib.import_module(module), cls)()


class RhythmPlayer:
    """One background thread that plays a signal's lit/dark rhythm on ``set_lamp``.

    gpiozero's ``blink`` only knows one on/off pair; the fault rhythms (two flashes, then a pause)
    need a sequence, and one timeline drives three lamps or an RGB LED alike.
    """

    def __init__(self, set_lamp: Callable[[Lamp | None], None]):
        self._set_lamp = set_lamp
        self._changed = threading.Condition()
        self._signal: Signal | None = None
        self._generation = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="lamp-rhythm", daemon=True)
        self._thread.start()

    def play(self, signal: Signal) -> None:
        """Replace the rhythm being played (the first lit segment starts now)."""
        with self._changed:
            self._signal, self._generation = signal, self._generation + 1
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        with self._changed:
            while not self._closed:
                if self._signal is None:
                    self._changed.wait()
                    continue
                generation, segments = self._generation, self._signal.segments()
                self._signal = None
                while generation == self._generation and not self._closed:
                    for lamp, seconds in segments:
                        self._set_lamp(lamp)
                        deadline = time.monotonic() + seconds
                        while generation == self._generation and not self._closed:
                            left = deadline - time.monotonic()
                            if left <= 0:
                                break
                            self._changed.wait(None if left == float("inf") else left)
                        if generation != self._generation or self._closed:
                            break


class GpioLight(Light):
    """Lamps on GPIO pins through gpiozero: three LEDs or one RGB LED, plus an optional buzzer."""

    name = "gpio"

    def __init__(self, config: LightConfig, *, pin_factory=None,
                 monotonic: Callable[[], float] = time.monotonic):
        super().__init__(hold_s=config.verdict_hold_s, monotonic=monotonic)
        from gpiozero import LED, RGBLED, Buzzer

        factory = pin_factory if pin_factory is not None else make_pin_factory(config.pin_factory)
        kw = {"pin_factory": factory} if factory is not None else {}
        self.rgb = None
        self.lamps: dict[str, LED] = {}
        if config.rgb_pins is not None:
            red, green, blue = config.rgb_pins
            self.rgb = RGBLED(red, green, blue, active_high=config.active_high, **kw)
        else:
            self.lamps = {
                "green": LED(config.green_pin, active_high=config.active_high, **kw),
                "red": LED(config.red_pin, active_high=config.active_high, **kw),
                "amber": LED(config.amber_pin, active_high=config.active_high, **kw),
            }
        self.buzzer = Buzzer(config.buzzer_pin, **kw) if config.buzzer_pin is not None else None
        self._player = RhythmPlayer(self._set_lamp)

    def _set_lamp(self, lamp: Lamp | None) -> None:
        """Exactly one lamp lit (or none): the rhythm player's only way to touch the pins."""
        if self.rgb is not None:
            self.rgb.color = RGB[lamp] if lamp is not None else DARK
            return
        for name, led in self.lamps.items():
            if name != lamp:
                led.off()
        if lamp is not None:
            self.lamps[lamp].on()

    def _draw(self, signal: Signal) -> None:
        self._player.play(signal)
        if self.buzzer is None:
            return
        if signal.beep is None:
            self.buzzer.off()
        else:
            beep = signal.beep
            self.buzzer.beep(on_time=beep.on_s, off_time=beep.off_s, n=beep.count, background=True)

    def close(self) -> None:
        super().close()
        self._player.close()
        self._set_lamp(None)
        for device in (*self.lamps.values(), self.rgb, self.buzzer):
            if device is not None:
                device.close()
