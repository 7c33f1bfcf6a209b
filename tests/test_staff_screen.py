"""Staff screen: the view logic, the HTTP endpoints, and the page in headless Chromium."""

from __future__ import annotations

import json
import shutil
import urllib.request
from datetime import datetime
from pathlib import Path

import cv2
import pytest
from browser import chromium, needs_chromium

from edge.device.daemon import Daemon
from edge.device.notify import Notifier
from edge.device.staff_screen import COLOURS, KINDS, StaffScreen, view
from edge.device.status import StatusFile, StatusSnapshot
from edge.devtools.synth import Distortion, render_idle, render_sequence
from edge.passes.credential import PassKind
from edge.scan.camera.replay import ReplaySource
from edge.scan.clock import FixedClock
from edge.scan.debounce import Debouncer
from edge.scan.decode import Decoder
from edge.scan.light import Fault, NullLight
from edge.verdict import MESSAGES, Decision, Reason, Verdict


class RefuseF0:
    """A verifier that refuses everyone as F0 with a vaccination EU DCC (what the real one says for them)."""

    def verify(self, text: str) -> Verdict:
        return Verdict(Decision.REFUSE, Reason.RISK_F0, format="HC1", kind=PassKind.DCC_VACCINATION)


def daemon_snapshot(tmp_path: Path) -> StatusSnapshot:
    """Run the real daemon over one held code, with the risk list stale; the status file read back
    while the verdict was showing (at shutdown the lamps go off)."""
    frames = render_sequence(["HC1:F0"], (320, 240), 1, idle_frames=1, hold_frames=2,
                             distortion=Distortion(code_fraction=0.8))
    frames += [render_idle((320, 240), 1)] * 12  # ~1.5 s of an empty view: the status is written each second
    light = NullLight(hold_s=60)
    status = StatusFile(tmp_path / "status.json")
    showing: list[StatusSnapshot] = []

    def write(snapshot: StatusSnapshot) -> None:
        status.write(snapshot)
        if snapshot.showing:
            showing.append(status.read())
    daemon = Daemon(source=ReplaySource(images=frames, fps=8), decoder=Decoder(), debouncer=Debouncer(5),
                    verifier=RefuseF0(), recorder=lambda v, t: None, light=light,
                    clock=FixedClock(datetime(2026, 5, 1, 8, 0), trusted=True), status_writer=write,
                    notifier=Notifier(""), health_probes=[lambda: [Fault.RISK_STALE]])
    assert daemon.run() == 0
    return showing[-1]


@pytest.fixture
def refused(tmp_path) -> StatusSnapshot:
    return daemon_snapshot(tmp_path)


def test_every_pass_kind_is_translated():
    for language in ("vi", "en"):
        assert set(KINDS[language]) == set(PassKind), language


def test_view_in_vietnamese_and_english(refused):
    vi = view(refused, "vi")
    assert vi["title"] == "KHÔNG ĐƯỢC QUA" and vi["colour"] == COLOURS["REFUSE"]
    assert vi["message"] == MESSAGES[Reason.RISK_F0][0]
    assert vi["kind"] == "Hộ chiếu vắc-xin: tiêm chủng"  # a translation, never the raw code
    assert vi["faults"] == ["Danh sách nguy cơ đã cũ"]
    en = view(refused, "en")
    assert en["title"] == "REFUSE" and en["message"] == MESSAGES[Reason.RISK_F0][1]
    assert en["kind"] == "EU DCC: vaccination" and en["faults"] == ["Risk list is stale"]


def test_idle_view_shows_ready_and_faults(refused):
    idle = StatusSnapshot(**{**refused.__dict__, "showing": None, "faults": ("camera_lost",)})
    v = view(idle)
    assert v["title"] == "SẴN SÀNG" and v["verdict"] is None and v["kind"] == ""
    assert v["faults"] == ["Mất camera: kiểm tra cáp"]


def test_http_endpoints_on_loopback(refused):
    screen = StaffScreen(lambda: refused, port=0)
    screen.start()
    try:
        assert screen.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(screen.url + "screen.json", timeout=5) as r:
            assert json.loads(r.read())["verdict"] == "REFUSE"
        with urllib.request.urlopen(screen.url, timeout=5) as r:
            assert b"/screen.json" in r.read()
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(screen.url + "nope", timeout=5)
    finally:
        screen.stop()


def test_broken_snapshot_gives_503_not_a_crash():
    def broken() -> dict:
        raise RuntimeError("boom")

    screen = StaffScreen(broken, port=0)
    screen.start()
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(screen.url + "screen.json", timeout=5)
        assert info.value.code == 503
    finally:
        screen.stop()


@pytest.mark.chromium
@needs_chromium
def test_page_in_headlesschromium(tmp_path, refused):
    screen = StaffScreen(lambda: refused, port=0, language="vi")
    screen.start()
    try:
        dom = chromium(screen.url, tmp_path, "--dump-dom")
        assert "KHÔNG ĐƯỢC QUA" in dom.stdout, dom.stderr[-2000:]
        assert MESSAGES[Reason.RISK_F0][0] in dom.stdout
        assert "Danh sách nguy cơ đã cũ" in dom.stdout
        shot = tmp_path / "screen.png"
        chromium(screen.url, tmp_path, f"--screenshot={shot}", "--window-size=800,480")
        image = cv2.imread(str(shot))
        assert image is not None and image.shape[:2] == (480, 800)
        b, g, r = (int(c) for c in image[20, 20])  # the background is the verdict colour
        assert r > 150 and g < 60 and b < 60, (b, g, r)
        shutil.copy(shot, Path("/tmp") / "checkpoint-staff-screen-refuse.png")
    finally:
        screen.stop()
