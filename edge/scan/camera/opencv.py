"""OpenCV frame source: a USB camera index, an RTSP/HTTP URL or a video file.

``cv2.VideoCapture.read`` can block for a long time on a hung camera or a dead RTSP stream, so a
grabber thread reads and the daemon waits on a one-slot queue with a timeout. Only the newest
frame is kept: a slow decoder never works on stale frames.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time

import numpy as np

from edge.scan.camera.base import CameraError, EndOfStream, Frame, FrameSource, Monotonic

log = logging.getLogger(__name__)
_END = object()


class OpenCVSource(FrameSource):
    """Frames from ``cv2.VideoCapture(target)``; ``target`` is an int index, a URL or a file path."""

    name = "opencv"

    def __init__(self, target: int | str, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None, monotonic: Monotonic = time.monotonic):
        super().__init__(monotonic=monotonic)
        self._target = target
        self._width, self._height, self._fps = width, height, fps
        self._capture = None
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: str | None = None

    def open(self) -> None:
        import cv2

        self.close()
        capture = cv2.VideoCapture(self._target)
        if not capture.isOpened():
            capture.release()
            raise CameraError(f"cannot open camera {self._target}: check the cable, the index or URL, "
                              "and that no other process holds it")
        if isinstance(self._target, int):
            if self._width and self._height:
                capture.set(cv2.CAP_PROP_FRAME_WIDTH, self._width)
                capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self._height)
            if self._fps:
                capture.set(cv2.CAP_PROP_FPS, self._fps)
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._capture, self._failed = capture, None
        self._queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._grab, name="opencv-grab", daemon=True)
        self._thread.start()

    def _grab(self) -> None:
        capture, stop = self._capture, self._stop
        is_file = isinstance(self._target, str) and "://" not in self._target
        period = 1.0 / self._fps if (is_file and self._fps) else 0.0
        while not stop.is_set():
            started = self._monotonic()
            try:
                ok, image = capture.read()
            except cv2_error() as exc:  # pragma: no cover - depends on the driver
                ok, image = False, None
                self._failed = str(exc)
            if not ok:
                if is_file:  # the end of a file must not replace its last frame: wait for the reader
                    while not stop.is_set():
                        with contextlib.suppress(queue.Full):
                            self._queue.put(_END, timeout=0.1)
                            return
                    return
                self._failed = self._failed or "read failed (camera unplugged or stream ended)"
                self._put(None)
                return
            if image.ndim == 3:  # OpenCV is here anyway: its SIMD conversion beats numpy's on a Pi
                image = cv2_grey(image)
            self._put((image, self._monotonic()))
            if period:
                stop.wait(max(0.0, period - (self._monotonic() - started)))

    def _put(self, item: object) -> None:
        slot = self._queue
        with contextlib.suppress(queue.Empty):
            slot.get_nowait()
        slot.put_nowait(item)

    def read(self, timeout: float) -> Frame | None:
        if self._capture is None:
            raise CameraError("the OpenCV camera is closed: open() it first")
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _END:
            raise EndOfStream()
        if item is None:
            raise CameraError(f"the OpenCV camera stopped giving frames ({self._failed})")
        image, captured = item
        return self._frame(np.asarray(image), captured)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            if self._thread.is_alive():
                log.warning("event=grabber_stuck source=opencv action=the process may need a restart")
            self._thread = None
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def cv2_grey(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY)


def cv2_error() -> type[BaseException]:
    import cv2

    return cv2.error
