"""Start-up of the device: every failure before the first frame is one clear message, shown on the lamps.

A checkpoint Pi has no screen. When it cannot start (not provisioned, no usable GPIO pin library,
a broken camera library, an unwritable data folder) staff see a fault pattern on the lamps and the
journal holds one line saying what happened and what to do; nobody reads a traceback on a road.
The lamps come up first, so every later failure can be shown on them.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from typing import TextIO

from edge.config import Config
from edge.device.appliance import Appliance
from edge.device.notify import Notifier
from edge.scan.camera import CameraError
from edge.scan.light import Fault, Light, make_light
from sync.wire.errors import CheckpointError
from sync.wire.keyfiles import KeyFileError

log = logging.getLogger(__name__)

#: How to get a pin library, said once for every lamp failure that means "no pin library".
PIN_LIBRARY_ACTION = ("on a Raspberry Pi: sudo apt install python3-lgpio and give the appliance's venv the system "
                      "site packages (scripts/bootstrap.sh does both); elsewhere set light.backend = \"terminal\" "
                      "or \"none\", or light.pin_factory = \"mock\"")


class StartupError(CheckpointError):
    """The device cannot start; ``action`` tells the operator what to do, ``fault`` what the lamps show.

    Staff need one thing from the lamps here: the device is not working, check by hand, call the
    technician; the journal line tells the technician which. So every start-up failure but the
    camera's shows the existing not-ready signal (the legend stays one page).
    """

    def __init__(self, problem: str, *, action: str, fault: Fault | None = None):
        super().__init__(f"{problem}. What to do: {action}")
        self.problem, self.action, self.fault = problem, action, fault


def open_light(config: Config, *, stream: TextIO | None = None, pin_factory: object = None) -> Light:
    """The lamps of ``light.backend``, or StartupError naming the missing pin library and the fix."""
    fallbacks: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return make_light(config.light, stream=stream, pin_factory=pin_factory)
            finally:
                fallbacks = [str(w.message) for w in caught]
    except ImportError as exc:  # gpiozero's BadPinFactory is an ImportError; so is a missing lgpio module
        tried = "; ".join(fallbacks) or str(exc)
        raise StartupError(f"no usable GPIO pin library for the lamps ({tried})", action=PIN_LIBRARY_ACTION) from None
    except ValueError as exc:  # an unknown light.pin_factory name
        raise StartupError(str(exc), action="fix light.pin_factory in the config") from None
    except Exception as exc:  # gpiozero raises many kinds (pin in use, invalid pin, no permission on /dev/gpiochip)
        raise StartupError(f"the lamps cannot be driven: {type(exc).__name__}: {exc}",
                           action="check the pin numbers in [light], that no other process holds the GPIO pins "
                                  "(systemctl stop checkpoint) and that the user is in the gpio group") from None


def explain_startup_failure(exc: Exception, config: Config) -> StartupError:
    """The operator's view of an error raised while the device was being built."""
    if isinstance(exc, StartupError):
        return exc
    if isinstance(exc, KeyFileError):
        return StartupError(f"device {config.device.id} is not provisioned: {exc}", fault=Fault.DEVICE_NOT_READY,
                            action="copy the device's provisioning bundle (checkpoint provision) to the boot "
                                   "partition as checkpoint/ and reboot, or point keys.* in the config at its key "
                                   "files")
    if isinstance(exc, CameraError):
        return StartupError(f"the camera cannot be set up: {exc}", fault=Fault.CAMERA_LOST,
                            action="check [camera] in the config and the cable; run 'checkpoint doctor'")
    if isinstance(exc, CheckpointError | ValueError):
        return StartupError(f"the device cannot start: {exc}", fault=Fault.DEVICE_NOT_READY,
                            action="fix what the message names; 'checkpoint doctor' checks the whole device")
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return StartupError(f"the device cannot use its files{where}: {exc.strerror or exc}",
                            fault=Fault.DEVICE_NOT_READY,
                            action=f"check that {config.device.data_dir} exists, is writable by the service user "
                                   "and the SD card is not full or read-only")
    return StartupError(f"the device cannot start: {type(exc).__name__}: {exc}", fault=Fault.DEVICE_NOT_READY,
                        action="run 'checkpoint -vv run' by hand for details and report it with the log")


def start_appliance(config: Config, *, light: Light, hold_s: float = 0.0, notifier: Notifier | None = None,
                    stop: threading.Event | None = None,
                    build: Callable[..., Appliance] = Appliance) -> Appliance:
    """Build the device around lamps that already work; on failure show the fault, hold it, raise.

    ``hold_s`` keeps the fault pattern lit before the process exits (systemd then restarts it), so
    a device that cannot start is visibly broken rather than dark. ``stop`` cuts the hold short.
    """
    try:
        return build(config, light=light)
    except Exception as exc:  # every kind: this is the boundary where errors become an operator's message
        failure = explain_startup_failure(exc, config)
        log.error("event=startup_failed device=%s problem=%r action=%r", config.device.id, failure.problem,
                  failure.action)
        log.debug("event=startup_failed_detail", exc_info=exc)
        if failure.fault is not None:
            light.set_faults({failure.fault})
        (notifier or Notifier()).status(f"cannot start: {failure.problem}")
        if hold_s > 0:
            (stop or threading.Event()).wait(hold_s)
        light.close()
        raise failure from None
