"""USB HID 2D scanners ("keyboard wedge" readers) as a frame source, through Linux evdev.

A wedge scanner types each code as key presses followed by Enter. This source grabs the input
device exclusively (EVIOCGRAB), so the keystrokes never reach a console or a login prompt, turns
key-downs back into text with a US layout (what scanners emulate by default) and hands each
finished code to the daemon as a :class:`Frame` whose ``texts`` are set: the decoder is skipped,
debouncing and everything after it are the same as for a camera.

Between codes it returns empty frames every ``timeout``, so the daemon knows the reader is alive
(its watchdog, the "ready" blip); an unplugged reader is a :class:`CameraError`, like a lost camera.
A half-typed code (no Enter within ``gap_s`` of the last key) is dropped, never decided.
"""

from __future__ import annotations

import contextlib
import logging
import select
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from edge.scan.camera.base import CameraError, Frame, FrameSource, Monotonic

log = logging.getLogger(__name__)

EV_KEY = 1
KEY_DOWN, KEY_HOLD = 1, 2
#: the longest code we accept; a pass is far smaller (readers bound it again)
MAX_CODE_CHARS = 8192
_EMPTY = np.zeros((0, 0), np.uint8)


class InputDevice(Protocol):
    """What we use of ``evdev.InputDevice`` (the test back-end provides the same)."""

    fd: int

    def grab(self) -> None: ...

    def ungrab(self) -> None: ...

    def read(self) -> Any: ...

    def close(self) -> None: ...


def us_keymap() -> dict[int, tuple[str, str]]:
    """Key code -> (plain, shifted) character for a US keyboard layout, from evdev's key names."""
    from evdev import ecodes

    keymap: dict[int, tuple[str, str]] = {}
    for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        keymap[ecodes.ecodes[f"KEY_{letter}"]] = (letter.lower(), letter)
    for digit, shifted in zip("1234567890", "!@#$%^&*()", strict=True):
        keymap[ecodes.ecodes[f"KEY_{digit}"]] = (digit, shifted)
    for name, pair in {"MINUS": "-_", "EQUAL": "=+", "LEFTBRACE": "[{", "RIGHTBRACE": "]}",
                       "SEMICOLON": ";:", "APOSTROPHE": "'\"", "GRAVE": "`~", "BACKSLASH": "\\|",
                       "COMMA": ",<", "DOT": ".>", "SLASH": "/?", "SPACE": "  ", "TAB": "\t\t",
                       "KPMINUS": "--", "KPPLUS": "++", "KPASTERISK": "**", "KPSLASH": "//", "KPDOT": "..",
                       **{f"KP{d}": d + d for d in "0123456789"}}.items():
        keymap[ecodes.ecodes[f"KEY_{name}"]] = (pair[0], pair[1])
    return keymap


def _open_evdev(path: str) -> InputDevice:
    try:
        from evdev import InputDevice as EvdevDevice
    except ImportError as exc:
        raise CameraError("event=scanner_unavailable reason=python evdev missing "
                          "action=install the scanner extra (pip install 'checkpoint-appliance[scanner]') "
                          "or python3-evdev") from exc
    return EvdevDevice(path)


class HidScannerSource(FrameSource):
    """Codes typed by a USB HID scanner at ``device`` (e.g. ``/dev/input/by-id/usb-…-event-kbd``)."""

    name = "hid_scanner"

    def __init__(self, device: str, *, gap_s: float = 0.5,
                 opener: Callable[[str], InputDevice] = _open_evdev, monotonic: Monotonic = time.monotonic):
        super().__init__(monotonic=monotonic)
        self.device_path, self.gap_s, self._opener = device, gap_s, opener
        self._device: InputDevice | None = None
        self._keymap: dict[int, tuple[str, str]] = {}
        self._enter: frozenset[int] = frozenset()
        self._shift_keys: frozenset[int] = frozenset()
        self._capslock_key = -1
        self._shift_down: set[int] = set()
        self._capslock = False
        self._buffer: list[str] = []
        self._started_at: float | None = None
        self._last_key_at = 0.0
        self._ready: list[str] = []

    def open(self) -> None:
        from evdev import ecodes

        self.close()
        self._keymap = us_keymap()
        self._enter = frozenset({ecodes.KEY_ENTER, ecodes.KEY_KPENTER})
        self._shift_keys = frozenset({ecodes.KEY_LEFTSHIFT, ecodes.KEY_RIGHTSHIFT})
        self._capslock_key = ecodes.KEY_CAPSLOCK
        try:
            device = self._opener(self.device_path)
        except OSError as exc:
            raise CameraError(f"event=scanner_open_failed device={self.device_path} error={exc} "
                              "action=check the USB cable and camera.scanner_device "
                              "(ls /dev/input/by-id/); the service user needs the input group") from None
        try:
            device.grab()  # exclusive: no keystroke reaches a console while we read
        except OSError as exc:
            device.close()
            raise CameraError(f"event=scanner_grab_failed device={self.device_path} error={exc} "
                              "action=another process holds the scanner; stop it") from None
        self._device = device
        self._shift_down.clear()
        self._buffer.clear()
        self._ready.clear()
        log.info("event=scanner_opened device=%s grabbed=yes", self.device_path)

    def read(self, timeout: float) -> Frame | None:
        """The next finished code as a frame, or an empty frame after ``timeout`` (the reader is alive)."""
        if self._device is None:
            raise CameraError(f"event=scanner_not_open device={self.device_path}")
        deadline = self._monotonic() + max(0.0, timeout)
        while not self._ready:
            left = deadline - self._monotonic()
            if left <= 0:
                break
            try:
                readable, _, _ = select.select([self._device.fd], [], [], left)
                if readable:
                    self._consume(self._device.read())
            except BlockingIOError:
                continue
            except OSError as exc:  # ENODEV: unplugged
                raise CameraError(f"event=scanner_lost device={self.device_path} error={exc} "
                                  "action=check the USB cable") from None
        self._drop_stale_partial()
        if self._ready:
            code = self._ready.pop(0)
            captured, self._started_at = self._started_at, None
            return Frame(_EMPTY, captured if captured is not None else self._monotonic(), self._next_seq(),
                         texts=(code,))
        return Frame(_EMPTY, self._monotonic(), self._next_seq(), texts=())

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _consume(self, events: Any) -> None:
        for event in events:
            if event.type != EV_KEY:
                continue
            code, value = event.code, event.value
            if code in self._shift_keys:
                (self._shift_down.add if value else self._shift_down.discard)(code)
                continue
            if value != KEY_DOWN:  # releases and auto-repeat carry no new character
                continue
            now = self._monotonic()
            if code == self._capslock_key:
                self._capslock = not self._capslock
            elif code in self._enter:
                self._finish()
            elif code in self._keymap:
                if not self._buffer:
                    self._started_at = now
                plain, shifted = self._keymap[code]
                upper = bool(self._shift_down) != (self._capslock and plain.isalpha())
                self._buffer.append(shifted if upper else plain)
                if len(self._buffer) > MAX_CODE_CHARS:
                    log.warning("event=scanner_code_too_long chars=%d action=dropped; check the scanner's "
                                "suffix setting (it must send Enter after each code)", len(self._buffer))
                    self._buffer.clear()
            else:
                log.debug("event=scanner_unmapped_key code=%d", code)
            self._last_key_at = now

    def _finish(self) -> None:
        if self._buffer:
            self._ready.append("".join(self._buffer))
            self._buffer.clear()

    def _drop_stale_partial(self) -> None:
        if self._buffer and self._monotonic() - self._last_key_at > self.gap_s:
            log.warning("event=scanner_partial_code chars=%d action=dropped, never decided; set the scanner "
                        "to send Enter after each code", len(self._buffer))
            self._buffer.clear()
            self._started_at = None

    def close(self) -> None:
        device, self._device = self._device, None
        if device is None:
            return
        for step in (device.ungrab, device.close):
            with contextlib.suppress(OSError):  # an unplugged device cannot be released twice
                step()
