"""The frame-source seam: one grey frame at a time, always with a timeout.

Every back-end (replay, OpenCV, picamera2) yields :class:`Frame` objects through the same
:class:`FrameSource` interface, so the daemon never knows which camera it is reading.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from edge.scan.greyimage import bgr_to_grey
from sync.wire.errors import CheckpointError

Monotonic = Callable[[], float]


class CameraError(CheckpointError, RuntimeError):
    """The camera could not be opened or stopped delivering frames (cable pulled, busy, hung)."""


class EndOfStream(CheckpointError):
    """A finite source (a replay without loop) has no more frames."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One grey frame: ``image`` is a 2-D uint8 array, ``captured`` the monotonic capture time.

    A source that reads codes itself (a 2D scanner) sets ``texts`` (possibly empty: "alive, nothing
    read") and an empty image; the daemon then skips the decoder.
    """

    image: np.ndarray
    captured: float
    seq: int
    texts: tuple[str, ...] | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])


def to_grey(image: np.ndarray) -> np.ndarray:
    """A contiguous 2-D uint8 grey view/copy of a grey, BGR or BGRA image (numpy only: no OpenCV needed)."""
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(bgr_to_grey(image))


class FrameSource(ABC):
    """Open, read frames with a timeout, close. Reusable: close() then open() reopens the camera."""

    name = "source"

    def __init__(self, *, monotonic: Monotonic = time.monotonic):
        self._monotonic = monotonic
        self._seq = 0

    @abstractmethod
    def open(self) -> None:
        """Acquire the camera; raise CameraError with a clear message if it cannot be opened."""

    @abstractmethod
    def read(self, timeout: float) -> Frame | None:
        """The next frame, or None when none arrived within ``timeout`` seconds.

        Raises CameraError when the camera failed, EndOfStream when a finite source is done.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the camera. Safe to call twice or after a failed open."""

    def frames(self, timeout: float = 2.0) -> Iterator[Frame]:
        """Frames until the source ends; a timeout raises CameraError (for scripts, not the daemon)."""
        while True:
            try:
                frame = self.read(timeout)
            except EndOfStream:
                return
            if frame is None:
                raise CameraError(f"no frame from {self.name} within {timeout} s")
            yield frame

    def _frame(self, image: np.ndarray, captured: float | None = None) -> Frame:
        self._seq += 1
        return Frame(to_grey(image), self._monotonic() if captured is None else captured, self._seq)

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
