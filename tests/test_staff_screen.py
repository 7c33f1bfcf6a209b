"""Staff screen: read through the real daemon and status writer, served over loopback HTTP, and
painted by headless Chromium (screenshots kept under /tmp for a person to look at)."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest
from browser import chromium, needs_chromium

from edge.device.daemon import Daemon
from edge.device.notify import Notifier
from edge.device.staff_screen import (
    KINDS,
    PROBLEMS,
    SILENT_AFTER_S,
    ScreenSettings,
    StaffScreen,
    StatusWatch,
    view,
)
from edge.device.staff_screen.palette import AA_NORMAL, PALETTE, contrast_ratio
from edge.device.status import DeviceStatus, StatusFile
from edge.devtools.synth import Distortion, render_idle, render_scene
from edge.passes.credential import PassKind
from edge.scan.camera import Frame, FrameSource
from edge.scan.clock import FixedClock
from edge.scan.debounce import Debouncer
from edge.scan.decode import Decoder
from edge.scan.light import NullLight
from edge.verdict import MESSAGES, Decision, Reason, Verdict

SIZE = (320, 240)
READY_DEVICE = DeviceStatus(device_id="HN-1", enrolled=True, policy_version=3, risk_version=9,
                            risk_published_at="2026-05-01T00:00:00+00:00", unsynced_records=0)
AT = datetime(2026, 5, 1, 1, 30, tzinfo=UTC)  # 08:30 in Hà Nội


class Verifier:
    """CP1:OK -> PASS, CP1:F0 -> REFUSE (risk F0, vaccination pass), anything else -> CHECK."""

    def verify(self, text: str) -> Verdict:
        if text.startswith("CP1:OK"):
            return Verdict(Decision.PASS, Reason.OK, format="CP1", kind=PassKind.DCC_VACCINATION.value)
        if text.startswith("CP1:F0"):
            return Verdict(Decision.REFUSE, Reason.RISK_F0, format="CP1", kind=PassKind.RESIDENT.value)
        return Verdict(Decision.CHECK, Reason.NOT_A_PASS)


class ScriptedSource(FrameSource):
    """Plays queued frames at ~30 fps, repeats an idle frame in between; ``hang()`` blocks read()
    forever, the way a wedged camera driver ignores its timeout."""

    name = "scripted"

    def __init__(self) -> None:
        super().__init__()
        self.queue: list[np.ndarray] = []
        self.idle = render_idle(SIZE, 1)
        self.hung = threading.Event()
        self.release = threading.Event()

    def show(self, text: str, frames: int = 4) -> None:
        self.queue.extend(render_scene(text, SIZE, 7, Distortion(code_fraction=0.8)) for _ in range(frames))
        self.queue.extend([self.idle] * 40)  # out of view long enough for the debouncer to forget

    def hang(self) -> None:
        self.hung.set()

    def open(self) -> None:
        pass

    def read(self, timeout: float) -> Frame | None:
        if self.hung.is_set():
            self.release.wait()
            return None
        time.sleep(1 / 30)
        return self._frame(self.queue.pop(0) if self.queue else self.idle)

    def close(self) -> None:
        self.release.set()


class Device:
    """A real daemon thread writing a real status file, and the real screen server reading it."""

    def __init__(self, tmp_path: Path, *, device: DeviceStatus = READY_DEVICE, hold_s: float = 15.0,
                 language: str = "en"):
        self.source = ScriptedSource()
        self.status = StatusFile(tmp_path / "run" / "status.json")
        self.daemon = Daemon(source=self.source, decoder=Decoder(), debouncer=Debouncer(forget_after_s=0.5),
                             verifier=Verifier(), recorder=lambda v, t: None, light=NullLight(),
                             clock=FixedClock(AT), status_writer=self.status.write, notifier=Notifier(""),
                             status_extra=lambda: device)
        self.settings = ScreenSettings(language=language, checkpoint_name="Chốt Cầu Giấy",
                                       timezone=ZoneInfo("Asia/Ho_Chi_Minh"), hold_s=hold_s)
        self.screen = StaffScreen(self.status, self.settings, port=0)
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)

    def __enter__(self) -> Device:
        self.screen.start()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.daemon.request_stop()
        self.source.release.set()
        self.thread.join(timeout=10)
        self.screen.stop()

    def get(self) -> dict:
        with urllib.request.urlopen(self.screen.url + "screen.json", timeout=5) as r:
            return json.loads(r.read())

    def wait_for(self, predicate, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            answer = self.get()
            if predicate(answer):
                return answer
            assert time.monotonic() < deadline, answer
            time.sleep(0.05)


# -- the colours and words -------------------------------------------------------------------
def test_verdict_colours_meet_wcag_aa_and_the_old_amber_did_not():
    for name, colours in PALETTE.items():
        assert contrast_ratio(colours.background, colours.text) >= AA_NORMAL, name
    assert contrast_ratio("#f0a500", "#ffffff") == pytest.approx(2.08, abs=0.01)  # the white-on-amber it had
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)


def test_every_pass_kind_and_reason_has_vietnamese_and_english():
    for lang in ("vi", "en"):
        assert set(KINDS[lang]) == set(PassKind), lang
        assert all(KINDS[lang][k].strip() for k in PassKind)
    assert set(MESSAGES) == set(Reason)
    assert all(vi.strip() and en.strip() and vi != en for vi, en in MESSAGES.values())
    assert all(vi.strip() and en.strip() for vi, en in PROBLEMS.values())


# -- through the real daemon and status file --------------------------------------------------
def test_ready_then_a_verdict_translated_held_for_the_configured_time(tmp_path):
    with Device(tmp_path, hold_s=1.5, language="vi") as device:
        ready = device.wait_for(lambda v: v["mode"] == "ready")
        assert ready["title"] == "SẴN SÀNG" and ready["checkpoint"] == "Chốt Cầu Giấy"
        assert ready["clock"] == "08:30" and ready["date"] == "01/05/2026"  # local time, not UTC
        device.source.show("CP1:F0-A")
        refused = device.wait_for(lambda v: v["mode"] == "verdict")
        assert refused["title"] == "KHÔNG ĐƯỢC QUA" and refused["colours"] == {"background": "#b3131b",
                                                                              "text": "#ffffff"}
        assert refused["message"] == "Người nhiễm (F0): không được qua"
        assert refused["kind"] == "Cư dân"  # translated, never the raw code "resident"
        assert dict(map(tuple, refused["counts"])) == {"passed": 0, "refused": 1, "checked": 0}
        row = refused["recent"][0]
        assert (row["time"], row["title"], row["kind"]) == ("08:30:00", "KHÔNG ĐƯỢC QUA", "Cư dân")
        assert "F0-A" not in json.dumps(refused)  # no pass text, no identity on the screen
        shown_at = time.monotonic()
        device.wait_for(lambda v: v["mode"] == "ready")
        assert time.monotonic() - shown_at >= 1.0  # held ~1.5 s, not gone after one poll
        device.source.show("CP1:OK-B")
        passed = device.wait_for(lambda v: v["mode"] == "verdict" and v["verdict"] == "PASS")
        assert passed["kind"] == "Chứng nhận EU: tiêm chủng"
        assert [r["verdict"] for r in passed["recent"]] == ["PASS", "REFUSE"]


def test_hold_zero_keeps_the_verdict_until_the_next_person(tmp_path):
    with Device(tmp_path, hold_s=0) as device:
        device.wait_for(lambda v: v["mode"] == "ready")
        device.source.show("CP1:OK-A")
        device.wait_for(lambda v: v["verdict"] == "PASS")
        time.sleep(2.0)
        assert device.get()["verdict"] == "PASS"
        device.source.show("HELLO")
        checked = device.wait_for(lambda v: v["verdict"] == "CHECK")
        assert checked["title"] == "CHECK BY HAND" and checked["colours"]["text"] == "#000000"


def test_a_silent_daemon_turns_the_screen_grey_within_two_seconds(tmp_path):
    with Device(tmp_path) as device:
        device.source.show("CP1:OK-A")
        device.wait_for(lambda v: v["verdict"] == "PASS")  # a green verdict is up ...
        device.source.hang()  # ... and the daemon's loop wedges in the camera driver
        hung_at = time.monotonic()
        grey = device.wait_for(lambda v: v["mode"] == "not_working", timeout=5)
        assert time.monotonic() - hung_at <= 2.0
        assert (grey["title"], grey["subtitle"]) == ("NOT WORKING", "KHÔNG HOẠT ĐỘNG")
        assert grey["colours"] == {"background": "#595959", "text": "#ffffff"} and grey["verdict"] is None


def test_a_stopped_daemon_or_a_missing_or_broken_file_is_not_working(tmp_path):
    with Device(tmp_path) as device:
        device.wait_for(lambda v: v["mode"] == "ready")
        device.daemon.request_stop()
        device.thread.join(timeout=10)
        assert device.get()["mode"] == "not_working"  # its last words: state "stopped"
        device.status.path.write_text("{not json")
        assert device.get()["mode"] == "not_working"
        device.status.path.unlink()
        assert device.get()["mode"] == "not_working"


@pytest.mark.parametrize(("device", "problems"), [
    (DeviceStatus(), ["Device not enrolled with the server", "No trust list or policy installed",
                      "No risk list installed"]),
    (DeviceStatus(enrolled=True, policy_version=1), ["No risk list installed"]),
    (DeviceStatus(enrolled=False, policy_version=1, risk_version=1, risk_published_at="2026-05-01T00:00:00+00:00"),
     ["Device not enrolled with the server"]),
])
def test_never_ready_without_enrolment_or_lists_and_it_says_why(tmp_path, device, problems):
    with Device(tmp_path, device=device) as running:
        seen = [running.get()]
        seen.append(running.wait_for(lambda v: v["problems"] == problems))  # frames flowing, lists still missing
        for _ in range(10):
            seen.append(running.get())
            time.sleep(0.05)
        assert "ready" not in {v["mode"] for v in seen}  # not once (before the first write it is "not working")
        assert seen[-1]["title"] == "NOT READY" and seen[-1]["problems"] == problems


def test_camera_lost_is_not_ready_and_says_so(tmp_path):
    settings = ScreenSettings(language="en")
    status = StatusFile(tmp_path / "status.json")

    class Dead(ScriptedSource):
        def read(self, timeout: float) -> Frame | None:
            time.sleep(timeout)
            return None

    from edge.config import CameraConfig
    daemon = Daemon(source=Dead(), decoder=Decoder(), debouncer=Debouncer(), verifier=Verifier(),
                    recorder=lambda v, t: None, light=NullLight(), clock=FixedClock(AT),
                    status_writer=status.write, notifier=Notifier(""), status_extra=lambda: READY_DEVICE,
                    camera=CameraConfig(no_frame_timeout_s=0.3, reopen_backoff_s=2.0, max_reopen_attempts=2))
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    watch = StatusWatch(status)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            shown = view(*watch.read(), settings)
            if shown.problems and shown.problems[0].startswith("Camera"):
                break
            time.sleep(0.05)
        assert shown.mode == "not_ready" and shown.problems[0] == "Camera or scanner lost: check the cable"
        time.sleep(1.2)  # inside the 2 s reopen backoff the daemon still writes: lost, not "not working"
        assert view(*watch.read(), settings).mode == "not_ready"
    finally:
        daemon.request_stop()
        thread.join(timeout=10)


def test_silence_is_measured_on_the_monotonic_clock_not_the_wall_clock(tmp_path):
    """The daemon died, then the wall clock stepped back an hour: the file looks brand new by wall
    time, but it never changes again, so the screen still goes grey."""
    with Device(tmp_path) as device:
        device.wait_for(lambda v: v["mode"] == "ready")
    status = device.status  # the daemon has stopped: this file is its last word
    status.write(replace(status.read(), state="running"))  # as if it died mid-run, not stopped cleanly
    future = time.time() + 3600
    os.utime(status.path, (future, future))
    assert status.age_s() == 0.0  # a wall-clock age is fooled
    now = [100.0]
    watch = StatusWatch(status, monotonic=lambda: now[0])
    assert view(*watch.read(), ScreenSettings()).mode == "ready"
    now[0] += SILENT_AFTER_S + 0.2
    found, silent = watch.read()
    assert silent > SILENT_AFTER_S and view(found, silent, ScreenSettings()).mode == "not_working"


# -- in a real browser -------------------------------------------------------------------------
def _shot(url: str, tmp_path: Path, name: str) -> np.ndarray:
    shot = tmp_path / f"{name}.png"
    result = chromium(url, tmp_path, f"--screenshot={shot}", "--window-size=1024,600")
    image = cv2.imread(str(shot))
    assert image is not None, result.stderr[-2000:]
    shutil.copy(shot, Path("/tmp") / f"checkpoint-staff-screen-{name}.png")
    return image


def _bgr(colour: str) -> tuple[int, int, int]:
    value = colour.lstrip("#")
    r, g, b = (int(value[i:i + 2], 16) for i in (0, 2, 4))
    return b, g, r


def _text_contrast(image: np.ndarray, background: str) -> float:
    """Contrast between the background and the pixel farthest from it in the title band."""
    band = image[200:320, 100:924].reshape(-1, 3).astype(int)
    bg = np.array(_bgr(background))
    ink = band[np.abs(band - bg).sum(axis=1).argmax()]
    return contrast_ratio(background, f"#{ink[2]:02x}{ink[1]:02x}{ink[0]:02x}")


@pytest.mark.chromium
@needs_chromium
def test_page_in_headless_chromium_verdict_ready_and_not_working(tmp_path):
    with Device(tmp_path, hold_s=0, language="vi") as device:
        device.source.show("CP1:F0-A")
        device.wait_for(lambda v: v["verdict"] == "REFUSE")
        dom = chromium(device.screen.url, tmp_path, "--dump-dom")
        for text in ("KHÔNG ĐƯỢC QUA", "Người nhiễm (F0): không được qua", "Cư dân", "Chốt Cầu Giấy", "08:30"):
            assert text in dom.stdout, (text, dom.stderr[-2000:])
        refused = _shot(device.screen.url, tmp_path, "refuse")
        assert tuple(int(c) for c in refused[150, 20]) == pytest.approx(_bgr(PALETTE["REFUSE"].background), abs=3)
        assert _text_contrast(refused, PALETTE["REFUSE"].background) >= AA_NORMAL
        device.source.hang()
        device.wait_for(lambda v: v["mode"] == "not_working", timeout=5)
        grey = _shot(device.screen.url, tmp_path, "not-working")
        assert tuple(int(c) for c in grey[150, 20]) == pytest.approx(_bgr(PALETTE["not_working"].background), abs=3)
        assert _text_contrast(grey, PALETTE["not_working"].background) >= AA_NORMAL
    with Device(tmp_path, device=DeviceStatus(enrolled=True), language="vi") as device:
        device.wait_for(lambda v: v["mode"] == "not_ready")
        dom = chromium(device.screen.url, tmp_path, "--dump-dom")
        assert "CHƯA SẴN SÀNG" in dom.stdout and "Chưa có danh sách nguy cơ" in dom.stdout
        assert "SẴN SÀNG<" not in dom.stdout.replace("CHƯA SẴN SÀNG<", "")
        _shot(device.screen.url, tmp_path, "not-ready")


class _OnceThenDown(BaseHTTPRequestHandler):
    """Serves the real page; /screen.json answers once with a PASS verdict, then the server is 'gone'."""

    answered = 0

    def do_GET(self) -> None:
        if self.path == "/":
            body = resources.files("edge.device.staff_screen").joinpath("index.html").read_bytes()
            ctype = "text/html; charset=utf-8"
        elif _OnceThenDown.answered == 0:
            _OnceThenDown.answered += 1
            passed = view(None, None, ScreenSettings()).to_json() | {
                "mode": "verdict", "verdict": "PASS", "title": "ĐƯỢC QUA", "subtitle": "",
                "colours": {"background": PALETTE["PASS"].background, "text": "#ffffff"}}
            body, ctype = json.dumps(passed).encode(), "application/json"
        else:
            self.send_response(503)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.chromium
@needs_chromium
def test_the_page_itself_goes_grey_when_its_server_stops_answering(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OnceThenDown)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dom = chromium(f"http://127.0.0.1:{server.server_address[1]}/", tmp_path, "--dump-dom")
        assert _OnceThenDown.answered == 1
        assert 'data-mode="not_working"' in dom.stdout, dom.stdout[:2000]
        assert "NOT WORKING" in dom.stdout and "ĐƯỢC QUA" not in dom.stdout
    finally:
        server.shutdown()
        server.server_close()
