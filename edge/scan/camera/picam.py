"""Raspberry Pi camera via picamera2 (imported only here: off the Pi there is no libcamera).

A video configuration with a small ``lores`` YUV420 stream; the first ``height`` rows of
``capture_array("lores")`` are the Y (grey) plane. Every capture passes ``wait=`` so a wedged
camera or pulled cable raises instead of blocking forever (picamera2 issues #794, #336); after a
timeout the pending requests are dropped with ``cancel_all_and_flush()``.
"""

from __future__ import annotations

import logging
import time

from edge.scan.camera.base import CameraError, Frame, FrameSource, Monotonic

log = logging.getLogger(__name__)


class Picamera2Source(FrameSource):
    """Grey frames from the lores stream of the Pi camera."""

    name = "picamera2"

    def __init__(self, *, width: int = 1280, height: int = 720, lores_width: int = 640,
                 lores_height: int = 480, fps: float = 15.0, lens_position: float | None = None,
                 camera_num: int = 0, monotonic: Monotonic = time.monotonic):
        super().__init__(monotonic=monotonic)
        self._main = (width, height)
        self._lores = (lores_width, lores_height)
        self._fps = fps
        self._lens_position = lens_position
        self._camera_num = camera_num
        self._cam = None

    def open(self) -> None:
        self.close()
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraError(f"picamera2 is not importable ({exc}): apt install python3-picamera2 "
                              "and create the venv with --system-site-packages") from None
        except Exception as exc:  # installed but broken: apt's compiled helpers meet another numpy, say
            raise CameraError(f"event=picamera2_broken error={exc!r} action=picamera2 is installed but fails to "
                              "import, usually apt's picamera2 built for the system numpy meeting another numpy in "
                              "the venv: recreate the venv with scripts/bootstrap.sh (system site packages, the "
                              "numpy constraint of this OS release) or sudo apt reinstall python3-picamera2") from None
        try:
            if not Picamera2.global_camera_info():
                raise CameraError("picamera2 sees no camera: check the ribbon cable")
            cam = Picamera2(self._camera_num)
            controls: dict[str, object] = {"FrameRate": self._fps}
            if self._lens_position is not None:
                controls.update({"AfMode": 0, "LensPosition": self._lens_position})  # 0 = Manual
            config = cam.create_video_configuration(
                main={"size": self._main}, lores={"size": self._lores, "format": "YUV420"},
                buffer_count=4, controls=controls)
            cam.configure(config)
            cam.start()
        except CameraError:
            raise
        except Exception as exc:  # libcamera raises RuntimeError/OSError variants
            raise CameraError(f"cannot open the Pi camera ({exc}): check the cable and that no other "
                              "process holds it") from None
        self._cam = cam

    def read(self, timeout: float) -> Frame | None:
        if self._cam is None:
            raise CameraError("the Pi camera is closed: open() it first")
        try:
            yuv = self._cam.capture_array("lores", wait=timeout)
        except TimeoutError:
            self._flush()
            return None
        except Exception as exc:
            self._flush()
            raise CameraError(f"the Pi camera stopped giving frames ({exc})") from None
        captured = self._monotonic()
        return self._frame(yuv[: self._lores[1], : self._lores[0]], captured)

    def _flush(self) -> None:
        try:
            self._cam.cancel_all_and_flush()
        except Exception as exc:
            log.warning("event=flush_failed source=picamera2 error=%r", exc)

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is None:
            return
        for step in ("stop", "close"):
            try:
                getattr(cam, step)()
            except Exception as exc:
                log.warning("event=camera_%s_failed source=picamera2 error=%r", step, exc)
