"""Staff screen: the view logic, the HTTP endpoints, and the page in headless Chromium."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import cv2
import pytest
from browser import chromium, needs_chromium

from edge.staff_screen import COLOURS, StaffScreen, view

REFUSED = {"state": "running", "showing": "REFUSE", "faults": ["risk_stale"],
           "last_verdicts": [{"verdict": "REFUSE", "reason": "risk_f0", "kind": "vaccination",
                              "message_vi": "Người nhiễm (F0): không được qua",
                              "message_en": "Infected person (F0): refuse"}]}


def test_view_in_vietnamese_and_english():
    vi = view(REFUSED, "vi")
    assert vi["title"] == "KHÔNG ĐƯỢC QUA" and vi["colour"] == COLOURS["REFUSE"]
    assert vi["message"] == "Người nhiễm (F0): không được qua" and vi["kind"] == "Tiêm chủng"
    assert vi["faults"] == ["Danh sách nguy cơ đã cũ"]
    en = view(REFUSED, "en")
    assert en["title"] == "REFUSE" and en["message"] == "Infected person (F0): refuse"
    assert en["faults"] == ["Risk list is stale"]


def test_idle_view_shows_ready_and_faults():
    v = view({"showing": None, "faults": ["camera_lost"], "last_verdicts": REFUSED["last_verdicts"]})
    assert v["title"] == "SẴN SÀNG" and v["verdict"] is None and v["kind"] == ""
    assert v["faults"] == ["Mất camera: kiểm tra cáp"]


def test_http_endpoints_on_loopback():
    screen = StaffScreen(lambda: REFUSED, port=0)
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
def test_page_in_headlesschromium(tmp_path):
    snapshot = dict(REFUSED)
    screen = StaffScreen(lambda: snapshot, port=0, language="vi")
    screen.start()
    try:
        dom = chromium(screen.url, tmp_path, "--dump-dom")
        assert "KHÔNG ĐƯỢC QUA" in dom.stdout, dom.stderr[-2000:]
        assert "Người nhiễm (F0): không được qua" in dom.stdout
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
