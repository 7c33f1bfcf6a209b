"""QR decoding on the grey plane: zxing-cpp first, a second pass only where it located a code.

The first pass is zxing-cpp restricted to QR codes, without the rotate pass (a QR finder is
rotation-free), so an idle frame costs well under a millisecond at 640x480. Light-on-dark codes
(phones in dark mode) need zxing-cpp's invert pass; it runs on every ``invert_every``-th frame,
and, while a code read in the last few frames has gone missing for the plain pass, on every frame,
so a held inverted code is seen on consecutive frames and the debouncer decides it once (a held
dark-on-light code costs nothing extra). zxing-cpp inverts the binarised image it
already has, so the idle frames that take the invert pass cost no measurable extra
(``checkpoint bench decode`` prints both). When zxing-cpp located a symbol but could not
read it (checksum/format error, typically sensor noise on a low-contrast code), the second pass
works on a crop around that symbol only: zxing-cpp again on a denoised crop, then pyzbar on the
same crop where libzbar is installed (import guarded: the device runs without it). Only numpy and
zxing-cpp are needed: the image steps are numpy (``edge.scan.greyimage``), not OpenCV.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import zxingcpp

from edge.config import DecoderConfig
from edge.scan.greyimage import area_downscale, gaussian_blur

log = logging.getLogger(__name__)

_QR = zxingcpp.BarcodeFormat.QRCode


def _load_pyzbar():
    try:
        from pyzbar import pyzbar
    except (ImportError, OSError) as exc:  # OSError/ImportError: libzbar.so missing
        log.info("event=pyzbar_unavailable error=%r effect=no pyzbar fallback", exc)
        return None
    return pyzbar


@dataclass
class DecodeStats:
    """Counters since the decoder was made (for status and benchmarks)."""

    frames: int = 0
    located_unread: int = 0
    second_pass_reads: int = 0
    pyzbar_reads: int = 0
    invert_frames: int = 0
    texts: int = 0
    extra: dict[str, int] = field(default_factory=dict)


#: after a read, a frame the plain pass finds empty tries the invert pass too, for this many frames
STICKY_FRAMES = 8


class Decoder:
    """Decode QR texts from a grey frame. ``decode(grey) -> list[str]`` never raises on bad pixels."""

    def __init__(self, config: DecoderConfig | None = None, *, pyzbar_fallback: bool | None = None,
                 second_pass: bool = True, invert_every: int | None = None):
        config = config or DecoderConfig()
        self.roi = config.roi
        self.downscale = config.downscale
        self.invert_every = config.invert_every if invert_every is None else invert_every
        self._frame = 0
        self._last_read = -STICKY_FRAMES - 1
        want_pyzbar = config.pyzbar_fallback if pyzbar_fallback is None else pyzbar_fallback
        self._pyzbar = _load_pyzbar() if want_pyzbar else None
        self.second_pass = second_pass
        self.stats = DecodeStats()

    @property
    def has_pyzbar(self) -> bool:
        """True when the pyzbar fallback is enabled and libzbar is loadable."""
        return self._pyzbar is not None

    def decode(self, grey: np.ndarray) -> list[str]:
        """Distinct QR texts in the frame, in reading order. Empty for an idle frame."""
        if grey.ndim != 2 or grey.dtype != np.uint8:
            raise ValueError(f"expected a 2-D uint8 grey image, got shape={grey.shape} dtype={grey.dtype}")
        self.stats.frames += 1
        self._frame += 1
        image = self._prepare(grey)
        held = self.invert_every > 0 and self._frame - self._last_read <= STICKY_FRAMES
        invert = not held and self._invert_now()
        results = self._read(image, invert)
        texts = [r.text for r in results if r.valid and r.text]
        unread = [r for r in results if not r.valid]
        if held and not texts and not unread:  # a code was just read and is gone for the plain pass:
            invert = True                      # it is probably light-on-dark, held on
            results = self._read(image, invert)
            texts = [r.text for r in results if r.valid and r.text]
            unread = [r for r in results if not r.valid]
        self.stats.invert_frames += invert
        if not texts and self.second_pass and unread:
            self.stats.located_unread += 1
            texts = self._second_pass(image, unread, invert)
        texts = list(dict.fromkeys(texts))
        if texts:
            self._last_read = self._frame
        self.stats.texts += len(texts)
        return texts

    def _read(self, image: np.ndarray, invert: bool) -> list:
        return zxingcpp.read_barcodes(image, formats=_QR, try_rotate=False, try_invert=invert,
                                      return_errors=self.second_pass)

    def _invert_now(self) -> bool:
        """Whether this frame also looks for light-on-dark codes (the held-code case aside)."""
        return self.invert_every > 0 and self._frame % self.invert_every == 0

    def _prepare(self, grey: np.ndarray) -> np.ndarray:
        image = grey
        if self.roi is not None:
            x, y, w, h = self.roi
            image = image[max(0, y): y + h, max(0, x): x + w]
            if image.size == 0:
                raise ValueError(f"decoder.roi {self.roi} lies outside the {grey.shape[1]}x{grey.shape[0]} frame")
        if self.downscale < 1.0:
            image = area_downscale(image, self.downscale)
        return np.ascontiguousarray(image)

    def _second_pass(self, image: np.ndarray, unread: list, invert: bool) -> list[str]:
        crop = _crop_around(image, unread)
        smooth = gaussian_blur(crop, 0.7)
        texts = [r.text for r in zxingcpp.read_barcodes(smooth, formats=_QR, try_rotate=False,
                                                        try_invert=invert) if r.text]
        if texts:
            self.stats.second_pass_reads += 1
            return texts
        if self._pyzbar is not None:
            candidates = [smooth, crop]
            if invert:  # libzbar reads dark-on-light only
                candidates.append(np.bitwise_not(smooth))
            for candidate in candidates:
                texts = self._read_pyzbar(candidate)
                if texts:
                    self.stats.pyzbar_reads += 1
                    return texts
        return []

    def _read_pyzbar(self, image: np.ndarray) -> list[str]:
        try:
            found = self._pyzbar.decode(image, symbols=[self._pyzbar.ZBarSymbol.QRCODE])
        except Exception as exc:  # libzbar quirks must never reach the daemon loop
            log.warning("event=pyzbar_failed error=%r effect=frame skipped", exc)
            return []
        texts = []
        for symbol in found:
            try:
                texts.append(symbol.data.decode("utf-8"))
            except UnicodeDecodeError:
                texts.append(symbol.data.decode("latin-1"))
        return texts


def _crop_around(image: np.ndarray, results: list, margin: float = 0.2) -> np.ndarray:
    """The bounding box of the located symbols plus a margin; the whole image if none is usable."""
    points = [(p.x, p.y) for r in results
              for p in (r.position.top_left, r.position.top_right, r.position.bottom_right,
                        r.position.bottom_left)]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    pad = int(max(x1 - x0, y1 - y0) * margin)
    height, width = image.shape
    x0, y0 = max(0, x0 - pad), max(0, y0 - pad)
    x1, y1 = min(width, x1 + pad), min(height, y1 + pad)
    if x1 - x0 < 21 or y1 - y0 < 21:
        return image
    return np.ascontiguousarray(image[y0:y1, x0:x1])


def decode_file(decoder: Decoder, path: str) -> dict:
    """``{file, texts, ms}`` for one image file, or ``{file, error}`` when it cannot be read."""
    import cv2  # reading PNG / JPEG files is a tool's job (the opencv extra), not the device's

    grey = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if grey is None:
        return {"file": path, "texts": [], "ms": None, "error": "not a readable image"}
    started = time.perf_counter()
    texts = decoder.decode(grey)
    return {"file": path, "texts": texts, "ms": round((time.perf_counter() - started) * 1000, 3)}
