"""Replay a folder of images or a video file at a given fps, looping or not (demo, tests, benches).

Raw grey frames (binary PGM, ``.npy``) are read with numpy alone, as a picamera2 device would see
them; PNG, JPEG and videos need OpenCV (the ``opencv`` extra), imported only when one is replayed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge.scan.camera.base import CameraError, EndOfStream, Frame, FrameSource, Monotonic
from edge.scan.greyimage import GreyImageError, read_pgm

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp", ".npy"}
OPENCV_ACTION = "install the opencv extra (pip install 'checkpoint-appliance[opencv]') or replay PGM frames"


def _cv2(what: object):
    try:
        import cv2
    except ImportError:
        raise CameraError(f"event=replay_needs_opencv file={what} action={OPENCV_ACTION}") from None
    return cv2


def read_grey_file(path: Path):
    """One image file as a 2-D uint8 grey array; PGM and .npy without OpenCV. None if unreadable."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".pgm":
            return read_pgm(path)
        if suffix == ".npy":
            image = np.load(path, allow_pickle=False)
            return image if image.ndim == 2 and image.dtype == np.uint8 else None
    except (GreyImageError, ValueError, OSError):
        if suffix == ".npy":
            return None
    cv2 = _cv2(path)  # a PGM that is not raw 8-bit grey (16-bit, ASCII) still reads through OpenCV
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


class ReplaySource(FrameSource):
    """Frames from images in memory, a folder of images (sorted by name) or a video file.

    ``fps`` paces frames in real time (``None`` = as fast as they are read); ``loop`` restarts at
    the end instead of raising EndOfStream.
    """

    name = "replay"

    def __init__(self, path: Path | str | None = None, *, images: Sequence[np.ndarray] | None = None,
                 fps: float | None = 15.0, loop: bool = False, monotonic: Monotonic = time.monotonic,
                 sleep=time.sleep):
        super().__init__(monotonic=monotonic)
        if (path is None) == (images is None):
            raise ValueError("give exactly one of path or images")
        self._path = Path(path) if path is not None else None
        self._given = list(images) if images is not None else None
        self._fps = fps
        self._loop = loop
        self._sleep = sleep
        self._files: list[Path] = []
        self._video = None
        self._index = 0
        self._next_at: float | None = None
        self._open = False

    def open(self) -> None:
        self._index, self._next_at = 0, None
        if self._given is not None:
            if not self._given:
                raise CameraError("the replay source has no images: give at least one frame")
        elif self._path is not None and self._path.is_dir():
            self._files = sorted(p for p in self._path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise CameraError(f"replay folder {self._path} holds no images: put images in it")
        elif self._path is not None and self._path.is_file():
            self._video = self._open_video()
        else:
            raise CameraError(f"replay path {self._path} does not exist: check camera.path")
        self._open = True

    def _open_video(self):
        cv2 = _cv2(self._path)
        video = cv2.VideoCapture(str(self._path))
        if not video.isOpened():
            raise CameraError(f"cannot read the video {self._path}: check the file")
        return video

    def _next_image(self) -> np.ndarray | None:
        if self._video is not None:
            ok, image = self._video.read()
            if ok:
                return image
            if not self._loop or self._index == 0:
                return None
            self._video.release()
            self._video, self._index = self._open_video(), 0
            ok, image = self._video.read()
            return image if ok else None
        items = self._given if self._given is not None else self._files
        if self._index >= len(items):
            if not self._loop:
                return None
            self._index = 0
        item = items[self._index]
        if isinstance(item, np.ndarray):
            return item
        image = read_grey_file(item)
        if image is None:
            raise CameraError(f"{item} is not an image: remove or replace it")
        return image

    def read(self, timeout: float) -> Frame | None:
        if not self._open:
            raise CameraError("the replay source is closed: open() it first")
        if self._fps:
            now = self._monotonic()
            if self._next_at is None:
                self._next_at = now
            wait = self._next_at - now
            if wait > timeout:
                self._sleep(timeout)
                return None
            if wait > 0:
                self._sleep(wait)
            self._next_at = max(self._next_at + 1.0 / self._fps, self._monotonic() - 1.0 / self._fps)
        image = self._next_image()
        if image is None:
            raise EndOfStream()
        self._index += 1
        return self._frame(image)

    def close(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None
        self._open = False
