"""USB HID 2D scanner source: real kernel input_event records through a fake evdev device (a pipe),
and a virtual keyboard through uinput where this kernel allows it."""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import threading
import time
from pathlib import Path

import pytest
from evdev import ecodes
from evdev.events import InputEvent

from edge.config import CameraConfig
from edge.device.daemon import Daemon
from edge.device.notify import Notifier
from edge.devtools.bench.decode import sample_texts
from edge.scan.camera import CameraError, make_source
from edge.scan.camera.hid_scanner import HidScannerSource, us_keymap
from edge.scan.clock import SystemClock
from edge.scan.debounce import Debouncer
from edge.scan.decode import Decoder
from edge.scan.light import NullLight
from edge.verdict import Decision, Reason, Verdict

EVENT = struct.Struct("llHHi")  # struct input_event on a 64-bit kernel
HC1 = sample_texts(1)[0]  # base45 like a real HC1: letters, digits and " $%*+-./:"


def events_for(text: str, *, enter: bool = True) -> list[InputEvent]:
    """What a US-layout wedge scanner sends for ``text``: shift, key down/up, then Enter."""
    reverse = {}
    for code, (plain, shifted) in us_keymap().items():
        reverse.setdefault(plain, (code, False))
        reverse.setdefault(shifted, (code, True))
    out = []
    for char in text:
        code, shift = reverse[char]
        if shift:
            out.append(InputEvent(0, 0, ecodes.EV_KEY, ecodes.KEY_LEFTSHIFT, 1))
        out += [InputEvent(0, 0, ecodes.EV_KEY, code, 1), InputEvent(0, 0, ecodes.EV_SYN, 0, 0),
                InputEvent(0, 0, ecodes.EV_KEY, code, 0)]
        if shift:
            out.append(InputEvent(0, 0, ecodes.EV_KEY, ecodes.KEY_LEFTSHIFT, 0))
    if enter:
        out += [InputEvent(0, 0, ecodes.EV_KEY, ecodes.KEY_ENTER, value) for value in (1, 0)]
    return out


class PipeInputDevice:
    """An evdev device stand-in: reads kernel ``input_event`` records from a pipe, records grabs."""

    def __init__(self) -> None:
        self.fd, self._write = os.pipe()
        fcntl.fcntl(self.fd, fcntl.F_SETFL, os.O_NONBLOCK)
        self.grabbed = False
        self.busy = False
        self.unplugged = False
        self.closed = False

    def send(self, events: list[InputEvent]) -> None:
        os.write(self._write, b"".join(EVENT.pack(e.sec, e.usec, e.type, e.code, e.value) for e in events))

    def grab(self) -> None:
        if self.busy:
            raise OSError(errno.EBUSY, "Device or resource busy")
        self.grabbed = True

    def ungrab(self) -> None:
        self.grabbed = False

    def read(self):
        if self.unplugged:
            raise OSError(errno.ENODEV, "No such device")
        data = os.read(self.fd, EVENT.size * 256)
        return [InputEvent(*EVENT.unpack_from(data, i)) for i in range(0, len(data) - EVENT.size + 1, EVENT.size)]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def device() -> PipeInputDevice:
    return PipeInputDevice()


def source_for(device: PipeInputDevice, **kw) -> HidScannerSource:
    opened = []

    def opener(path: str) -> PipeInputDevice:
        opened.append(path)
        return device

    source = HidScannerSource("/dev/input/by-id/usb-scanner-event-kbd", opener=opener, **kw)
    source.open()
    assert opened == ["/dev/input/by-id/usb-scanner-event-kbd"]
    return source


def test_typed_codes_become_frames_and_the_device_is_grabbed_first(device):
    source = source_for(device)
    assert device.grabbed  # before a single key is read: nothing reaches the console
    device.send(events_for(HC1) + events_for("CP1:abc-XYZ/09"))
    first, second = source.read(1.0), source.read(1.0)
    assert first.texts == (HC1,) and second.texts == ("CP1:abc-XYZ/09",)
    assert first.image.size == 0 and second.seq == first.seq + 1
    source.close()
    assert not device.grabbed and device.closed


def test_an_idle_reader_answers_with_empty_frames_so_the_daemon_knows_it_is_alive(device):
    source = source_for(device)
    started = time.monotonic()
    frame = source.read(0.2)
    assert frame.texts == () and 0.15 <= time.monotonic() - started < 1.0


def test_a_half_typed_code_is_dropped_never_decided(device):
    source = source_for(device, gap_s=0.2)
    device.send(events_for("HC1:HALF-A-CO", enter=False))
    assert source.read(0.1).texts == ()
    time.sleep(0.25)
    assert source.read(0.05).texts == ()  # the stale half is gone ...
    device.send(events_for("CP1:WHOLE"))
    assert source.read(1.0).texts == ("CP1:WHOLE",)  # ... and does not prefix the next code


def test_auto_repeat_and_caps_lock(device):
    source = source_for(device)
    a = ecodes.KEY_A
    device.send([InputEvent(0, 0, ecodes.EV_KEY, a, 1), InputEvent(0, 0, ecodes.EV_KEY, a, 2),
                 InputEvent(0, 0, ecodes.EV_KEY, a, 0), InputEvent(0, 0, ecodes.EV_KEY, ecodes.KEY_CAPSLOCK, 1),
                 InputEvent(0, 0, ecodes.EV_KEY, a, 1), InputEvent(0, 0, ecodes.EV_KEY, ecodes.KEY_1, 1),
                 InputEvent(0, 0, ecodes.EV_KEY, ecodes.KEY_ENTER, 1)])
    assert source.read(1.0).texts == ("aA1",)


def test_a_busy_or_unplugged_reader_is_a_camera_error(device):
    device.busy = True
    with pytest.raises(CameraError, match="another process holds the scanner"):
        source_for(device)
    assert device.closed
    device.busy, device.closed = False, False
    source = source_for(device)
    device.unplugged = True
    device.send(events_for("X"))
    with pytest.raises(CameraError, match="scanner_lost"):
        source.read(1.0)
    with pytest.raises(CameraError, match="scanner_open_failed"):
        HidScannerSource("/nonexistent/event-kbd").open()


def test_chosen_by_configuration():
    source = make_source(CameraConfig(source="hid_scanner", scanner_device="/dev/input/event7", scanner_gap_s=0.3))
    assert isinstance(source, HidScannerSource) and source.device_path == "/dev/input/event7" and source.gap_s == 0.3
    with pytest.raises(CameraError, match="scanner_device"):
        make_source(CameraConfig(source="hid_scanner"))


class Verifier:
    def verify(self, text: str) -> Verdict:
        return Verdict(Decision.PASS, Reason.OK, format="HC1", kind="dcc_vaccination")


def test_the_daemon_decides_a_scanned_code_once_and_stays_alive_between_scans(device):
    events = []
    source = HidScannerSource("scanner", opener=lambda path: device)
    light = NullLight()
    daemon = Daemon(source=source, decoder=Decoder(), debouncer=Debouncer(forget_after_s=1.0), verifier=Verifier(),
                    recorder=lambda v, t: None, light=light, clock=SystemClock(), notifier=Notifier(""),
                    on_decision=events.append, camera=CameraConfig(no_frame_timeout_s=0.5))
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        for _ in range(3):  # presentation mode: the reader scans the held pass again and again
            device.send(events_for(HC1))
            time.sleep(0.1)
        time.sleep(1.0)  # idle longer than no_frame_timeout: empty frames keep the camera "alive"
        assert not daemon.camera_lost and light.alive
        device.send(events_for(HC1))  # the same pass presented again after the debounce window
        deadline = time.monotonic() + 5
        while len(events) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        daemon.request_stop()
        thread.join(timeout=10)
    assert [e.text for e in events] == [HC1, HC1] and events[0].shown is Decision.PASS


@pytest.mark.skipif(not os.access("/dev/uinput", os.W_OK), reason="no writable /dev/uinput on this kernel")
def test_a_virtual_keyboard_through_uinput_is_grabbed_and_read():
    from evdev import InputDevice, UInput

    keys = sorted({code for code in us_keymap()} | {ecodes.KEY_ENTER, ecodes.KEY_LEFTSHIFT})
    with UInput({ecodes.EV_KEY: keys}, name="checkpoint-test-scanner") as ui:
        time.sleep(0.3)  # udev creates the node
        source = HidScannerSource(ui.device.path)
        source.open()
        try:
            with pytest.raises(OSError):
                InputDevice(ui.device.path).grab()  # exclusive: nobody else gets the keys
            for event in events_for("CP1:UINPUT-1"):
                ui.write(event.type, event.code, event.value)
                ui.syn()
            assert source.read(2.0).texts == ("CP1:UINPUT-1",)
        finally:
            source.close()
    assert Path(ui.device.path).name.startswith("event")
