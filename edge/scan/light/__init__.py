"""Lamps: the signal table (verdicts, faults, ready) on gpiozero, the terminal (demo) or nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from edge.config import LightConfig
from edge.scan.light.base import Light, NullLight
from edge.scan.light.signals import FAULTS, OFF, READY, VERDICTS, Fault, Lamp, Signal, top_fault

__all__ = ["FAULTS", "OFF", "READY", "VERDICTS", "Fault", "Lamp", "Light", "NullLight", "Signal", "make_light",
           "top_fault"]


def make_light(config: LightConfig, *, stream: TextIO | None = None, pin_factory=None,
               monotonic: Callable[[], float] = time.monotonic) -> Light:
    """The lamp back-end named by ``light.backend``."""
    if config.backend == "gpio":
        from edge.scan.light.gpio import GpioLight

        return GpioLight(config, pin_factory=pin_factory, monotonic=monotonic)
    if config.backend == "terminal":
        from edge.scan.light.terminal import TerminalLight

        return TerminalLight(stream, hold_s=config.verdict_hold_s, monotonic=monotonic)
    return NullLight(hold_s=config.verdict_hold_s, monotonic=monotonic)
