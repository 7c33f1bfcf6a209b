"""gpiozero lamps: green, red and amber LEDs plus a buzzer, or one RGB LED.

The pin factory comes from config (``"mock"`` gives gpiozero's MockFactory with PWM-capable mock
pins, as the RGB LED needs PWM); empty means gpiozero's default order (lgpio first on a Pi).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable

from edge.config import LightConfig
from edge.scan.light.base import Fault, Light, Pattern
from edge.verdict import Decision

#: name -> "module:class" for the pin factories gpiozero ships
PIN_FACTORIES = {
    "lgpio": "gpiozero.pins.lgpio:LGPIOFactory",
    "rpigpio": "gpiozero.pins.rpigpio:RPiGPIOFactory",
    "pigpio": "gpiozero.pins.pigpio:PiGPIOFactory",
    "native": "gpiozero.pins.native:NativeFactory",
}

RGB = {"green": (0.0, 1.0, 0.0), "red": (1.0, 0.0, 0.0), "amber": (1.0, 0.55, 0.0)}


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


class GpioLight(Light):
    """Lamps on GPIO pins through gpiozero."""

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

    def _only(self, lamp: str | None) -> None:
        for name, led in self.lamps.items():
            if name != lamp:
                led.off()

    def _draw_verdict(self, decision: Decision, pattern: Pattern) -> None:
        if self.rgb is not None:
            self.rgb.color = RGB[pattern.lamp]
        else:
            self._only(pattern.lamp)
            self.lamps[pattern.lamp].on()
        if self.buzzer is not None:
            if pattern.beep_s:
                self.buzzer.beep(on_time=pattern.beep_s, off_time=0.05, n=1, background=True)
            else:
                self.buzzer.off()

    def _draw_fault(self, fault: Fault, pattern: Pattern) -> None:
        if self.buzzer is not None:
            self.buzzer.off()
        if self.rgb is not None:
            self.rgb.blink(on_time=pattern.on_s, off_time=pattern.off_s, on_color=RGB[pattern.lamp],
                           off_color=(0, 0, 0), background=True)
        else:
            self._only(pattern.lamp)
            self.lamps[pattern.lamp].blink(on_time=pattern.on_s, off_time=pattern.off_s, background=True)

    def _draw_off(self) -> None:
        if self.rgb is not None:
            self.rgb.off()
        self._only(None)
        if self.buzzer is not None:
            self.buzzer.off()

    def close(self) -> None:
        super().close()
        for device in (*self.lamps.values(), self.rgb, self.buzzer):
            if device is not None:
                device.close()
