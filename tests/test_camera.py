"""Frame sources and camera-like synthesis: real images, real files, real OpenCV."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import zxingcpp

from edge.config import parse_config
from edge.devtools.synth import Distortion, camera_like, qr_modules, render_idle, render_scene, render_sequence
from edge.scan.camera import CameraError, EndOfStream, make_source
from edge.scan.camera.opencv import OpenCVSource
from edge.scan.camera.replay import ReplaySource


def _read_qr(image: np.ndarray) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]


def test_render_scene_is_deterministic_and_camera_like():
    a = render_scene("CP1:HELLO", (640, 480), seed=3)
    b = render_scene("CP1:HELLO", (640, 480), seed=3)
    c = render_scene("CP1:HELLO", (640, 480), seed=4)
    assert a.shape == (480, 640) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("size", [(640, 480), (1280, 720)])
def test_clean_scene_decodes_to_its_text(size):
    text = "HC1:" + "6BFOXN*TS0BI$ZD4N9:9S6RCVN5+O30K3/XIV0W23NTDEXWK G2EP4J0B" * 4
    assert _read_qr(render_scene(text, size, seed=1, distortion=Distortion())) == [text]


def test_idle_scene_has_no_code():
    assert _read_qr(render_idle((640, 480), seed=2)) == []


def test_qr_modules_has_quiet_zone():
    m = qr_modules("CP1:X")
    assert m.shape[0] == m.shape[1]
    assert (m[:4] == 255).all() and (m[:, -4:] == 255).all()
    assert (m == 0).any()


def test_camera_like_draws_varied_distortions():
    draws = [camera_like(s) for s in range(50)]
    assert len({round(d.code_fraction, 3) for d in draws}) > 40
    assert any(d.glare > 0 for d in draws) and any(d.contrast < 1 for d in draws)
    assert any(d.blur > 0 for d in draws) and any(d.blur == 0 for d in draws)


def test_render_sequence_holds_each_code():
    frames = render_sequence(["CP1:A", "CP1:B"], (320, 240), seed=1, idle_frames=2, hold_frames=3,
                             distortion=Distortion(code_fraction=0.8))
    assert len(frames) == 2 + 3 + 2 + 3 + 2
    assert [tuple(_read_qr(f)) for f in frames] == [()] * 2 + [("CP1:A",)] * 3 + [()] * 2 + [("CP1:B",)] * 3 + [()] * 2


def test_replay_from_memory_ends_or_loops():
    images = [np.full((4, 4), i, np.uint8) for i in range(3)]
    ticks = iter(range(100))
    source = ReplaySource(images=images, fps=None, monotonic=lambda: float(next(ticks)))
    with source:
        frames = list(source.frames())
    assert [int(f.image[0, 0]) for f in frames] == [0, 1, 2]
    assert [f.seq for f in frames] == [1, 2, 3]
    assert frames[0].captured < frames[1].captured
    looping = ReplaySource(images=images, fps=None, loop=True)
    with looping:
        got = [int(looping.read(0.1).image[0, 0]) for _ in range(7)]
    assert got == [0, 1, 2, 0, 1, 2, 0]


def test_replay_folder_paces_frames_and_converts_colour(tmp_path: Path):
    for i in range(3):
        colour = np.zeros((8, 8, 3), np.uint8)
        colour[..., 2] = 50 * (i + 1)
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), colour)
    (tmp_path / "notes.txt").write_text("ignored")
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    source = ReplaySource(tmp_path, fps=10, monotonic=lambda: now[0], sleep=sleep)
    with source:
        frames = [source.read(1.0) for _ in range(3)]
        with pytest.raises(EndOfStream):
            source.read(1.0)
    assert all(f.image.ndim == 2 for f in frames)
    assert frames[0].image[0, 0] < frames[2].image[0, 0]
    assert [round(f.captured, 3) for f in frames] == [0.0, 0.1, 0.2]


def test_replay_read_times_out_before_next_frame():
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    source = ReplaySource(images=[np.zeros((2, 2), np.uint8)], fps=1, loop=True,
                          monotonic=lambda: now[0], sleep=sleep)
    with source:
        assert source.read(0.1) is not None
        assert source.read(0.1) is None  # next frame due at t=1.0
        assert now[0] == pytest.approx(0.1)


def test_replay_missing_path_is_a_clear_error(tmp_path: Path):
    with pytest.raises(CameraError, match=r"does not exist: check camera\.path"):
        ReplaySource(tmp_path / "nope").open()
    with pytest.raises(CameraError, match="holds no images"):
        ReplaySource(tmp_path).open()


def _write_video(path: Path, count: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened()
    for i in range(count):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()


def test_replay_video_file(tmp_path: Path):
    video = tmp_path / "clip.avi"
    _write_video(video, 4)
    source = ReplaySource(video, fps=None)
    with source:
        frames = list(source.frames())
    assert len(frames) == 4 and frames[0].size == (64, 48)


def test_opencv_source_reads_video_then_ends(tmp_path: Path):
    video = tmp_path / "clip.avi"
    _write_video(video, 5)
    source = OpenCVSource(str(video))
    with source:
        frames = list(source.frames(timeout=2.0))
    assert 1 <= len(frames) <= 5  # the grabber keeps only the newest frame
    assert all(f.image.ndim == 2 for f in frames)
    assert threading.active_count() < 50


def test_opencv_source_bad_target_is_camera_error(tmp_path: Path):
    with pytest.raises(CameraError, match="cannot open camera"):
        OpenCVSource(str(tmp_path / "missing.avi")).open()


def test_make_source_by_config(tmp_path: Path):
    config = parse_config({"device": {"data_dir": str(tmp_path)},
                           "camera": {"source": "replay", "path": "frames", "fps": 5, "loop": True}})
    source = make_source(config)
    assert isinstance(source, ReplaySource) and source._path == tmp_path / "frames"
    assert isinstance(make_source(parse_config({"camera": {"source": "opencv", "device": 0}})), OpenCVSource)
    with pytest.raises(CameraError, match="exactly one"):
        make_source(parse_config({"camera": {"source": "opencv"}}))
    with pytest.raises(CameraError, match=r"camera\.path"):
        make_source(parse_config({"camera": {"source": "replay"}}))


def test_picamera2_source_off_the_pi_fails_clearly():
    source = make_source(parse_config({"camera": {"source": "picamera2"}}))
    try:
        import picamera2  # noqa: F401
    except ImportError:
        with pytest.raises(CameraError, match="picamera2 is not importable"):
            source.open()
    else:  # pragma: no cover - only on a Pi
        pytest.skip("picamera2 present: hardware test, not run here")
