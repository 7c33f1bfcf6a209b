"""QR decoding on the grey plane: zxing-cpp on every frame, the costlier passes on alternate frames.

Every frame gets zxing-cpp restricted to QR codes, without the rotate pass (a QR finder is
rotation-free), so an idle frame costs well under a millisecond at 640x480. Two kinds of code
need more, and each gets it on a share of the frames, so the median idle frame costs what the
plain pass does (``checkpoint bench decode`` prints the median and the mean):

- light-on-dark codes (phones in dark mode) need zxing-cpp's invert pass: every
  ``invert_every``-th frame. zxing-cpp inverts the binarised image it already has, so it costs
  little more than the plain pass;
- a pass QR is version 10-20 (HC1 payloads are long), so at 640x480 its modules are often 2-3
  pixels wide, where zxing-cpp rarely finds the finder patterns: every ``upscale_every``-th frame
  (offset from the invert frames) also decodes the frame upscaled 2x (bilinear, numpy), about five
  times the plain pass's cost, on frames no larger than ``upscale_max_side``;
- blurred codes of 2-3 pixel modules, and codes cut by the frame's edge, need more than a bilinear
  upscale: every ``region_every``-th frame (the third of the three) looks for a busy, code-like
  region (every 16x16 block of it holding dark and light pixels: ``greyimage.busy_region``, tens of
  microseconds) and, only if it finds one, decodes that region alone, smoothed then sharpened
  (noise down, module edges back), padded with its light level (a quiet zone for a code running
  off the frame) and upscaled 2x, with the invert pass. Idle frames find no region and skip it.

While a code read in the last ``STICKY_FRAMES`` frames is missing from the plain pass, the pass
that read it runs on every frame (after a plain read: the invert and upscaled passes), so a held
code is seen on consecutive frames and the debouncer decides it once. When zxing-cpp located a
symbol but could not read it (checksum/format error: sensor noise on a low-contrast code), a second
pass works on a crop around that symbol only: zxing-cpp on the crop denoised and on the crop
upscaled, then pyzbar on the same crop where libzbar is installed (import guarded: the device runs
without it). Texts are zxing-cpp's plain text mode: the payload as encoded, control characters
included (the human-readable mode would rewrite them as ``<SOH>``). Only numpy and zxing-cpp are
needed: the image steps are numpy (``edge.scan.greyimage``), not OpenCV.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import zxingcpp

from edge.config import DecoderConfig
from edge.scan.greyimage import area_downscale, busy_region, gaussian_blur, pad, smooth_sharpen, upscale2x

log = logging.getLogger(__name__)

_QR = zxingcpp.BarcodeFormat.QRCode
_PLAIN_TEXT = zxingcpp.TextMode.Plain


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
    upscale_frames: int = 0
    upscale_reads: int = 0
    region_frames: int = 0
    region_reads: int = 0
    texts: int = 0
    extra: dict[str, int] = field(default_factory=dict)


#: after a read, a frame the plain pass finds empty tries the pass that read it, for this many frames
STICKY_FRAMES = 8


#: the region pass pads the region by this many pixels (a code cut by the frame's edge gets a quiet zone)
REGION_PAD = 12
#: after this many region passes in a row that found a busy region and read nothing (a textured
#: background: foliage, tiles, print), the region pass runs on one region frame in REGION_BACKOFF
#: only, until a read or a frame without a busy region: the costlier passes stay under half the frames
REGION_PATIENCE, REGION_BACKOFF = 4, 4


@dataclass(frozen=True)
class _Pass:
    """One way of reading a frame: zxing-cpp on the frame as it is or upscaled 2x, with or without
    its invert pass, or on the busy region only, smoothed, sharpened, padded and upscaled 2x."""

    upscale: bool
    invert: bool
    region: bool = False


_PLAIN, _INVERT = _Pass(upscale=False, invert=False), _Pass(upscale=False, invert=True)
_UPSCALE, _UPSCALE_INVERT = _Pass(upscale=True, invert=False), _Pass(upscale=True, invert=True)
_REGION = _Pass(upscale=True, invert=True, region=True)


class Decoder:
    """Decode QR texts from a grey frame. ``decode(grey) -> list[str]`` never raises on bad pixels."""

    def __init__(self, config: DecoderConfig | None = None, *, pyzbar_fallback: bool | None = None,
                 second_pass: bool = True, invert_every: int | None = None, upscale_every: int | None = None,
                 region_every: int | None = None):
        config = config or DecoderConfig()
        self.roi = config.roi
        self.downscale = config.downscale
        self.invert_every = config.invert_every if invert_every is None else invert_every
        self.upscale_every = config.upscale_every if upscale_every is None else upscale_every
        self.upscale_max_side = config.upscale_max_side
        self.region_every = config.region_every if region_every is None else region_every
        self._frame = 0
        self._last_read = -STICKY_FRAMES - 1
        self._last_pass = _PLAIN
        self._region_misses = 0
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
        upscaled: np.ndarray | None = None
        texts: list[str] = []
        located: tuple[np.ndarray, list, bool] | None = None  # (image, unread results, invert)
        used: set[_Pass] = set()
        for step in self._passes(image):
            if step.region:
                region = self._region(image)
                if region is None:
                    self._region_misses = 0
                    continue
                self.stats.region_frames += 1
                self._region_misses += 1
                source = region
            elif step.upscale:
                if upscaled is None:
                    upscaled = upscale2x(image)
                    self.stats.upscale_frames += 1
                source = upscaled
            else:
                source = image
            used.add(step)
            results = self._read(source, step.invert)
            texts = [r.text for r in results if r.valid and r.text]
            if texts:
                self._last_pass = step
                self._region_misses = 0
                self.stats.upscale_reads += step.upscale and not step.region
                self.stats.region_reads += step.region
                break
            unread = [r for r in results if not r.valid]
            if unread and located is None:
                located = (source, unread, step.invert)
        self.stats.invert_frames += any(step.invert for step in used)
        if not texts and self.second_pass and located is not None:
            self.stats.located_unread += 1
            texts = self._second_pass(*located)
        texts = list(dict.fromkeys(texts))
        if texts:
            self._last_read = self._frame
        self.stats.texts += len(texts)
        return texts

    def _passes(self, image: np.ndarray):
        """The passes this frame tries, in order, until one reads a code (a generator: later ones are
        only made if needed)."""
        held = self._frame - self._last_read <= STICKY_FRAMES
        can_upscale = self.upscale_every > 0 and max(image.shape) <= self.upscale_max_side
        if held:  # a code was just read: the plain pass first (a held dark-on-light code costs nothing more)
            yield _PLAIN
            if self._last_pass is not _PLAIN:
                if can_upscale or not self._last_pass.upscale or self._last_pass.region:
                    yield self._last_pass
            elif self.invert_every > 0 or can_upscale:  # read plainly, now gone: the cheaper pass first
                if self.invert_every > 0:
                    yield _INVERT
                if can_upscale:
                    yield _UPSCALE
            return
        yield _INVERT if self._invert_now() else _PLAIN
        if can_upscale and self._upscale_now():
            yield _UPSCALE
        elif self._region_now():
            yield _REGION

    def _read(self, image: np.ndarray, invert: bool) -> list:
        # try_downscale stays on, on the upscaled frame too: its smaller scales read a few more codes
        return zxingcpp.read_barcodes(image, formats=_QR, try_rotate=False, try_invert=invert,
                                      text_mode=_PLAIN_TEXT, return_errors=self.second_pass)

    def _invert_now(self) -> bool:
        """Whether this frame also looks for light-on-dark codes (the held-code case aside)."""
        return self.invert_every > 0 and self._frame % self.invert_every == 0

    def _upscale_now(self) -> bool:
        """Whether this frame also decodes the frame upscaled: one frame after each invert frame."""
        return self.upscale_every > 0 and self._frame % self.upscale_every == 1 % self.upscale_every

    def _region_now(self) -> bool:
        """Whether this frame looks for a busy region to enhance: two frames after each invert frame
        (one such frame in ``REGION_BACKOFF`` once ``REGION_PATIENCE`` of them in a row read nothing)."""
        if self.region_every <= 0 or self._frame % self.region_every != 2 % self.region_every:
            return False
        return self._region_misses < REGION_PATIENCE or (self._frame // self.region_every) % REGION_BACKOFF == 0

    def _region(self, image: np.ndarray) -> np.ndarray | None:
        """The busy region of ``image``, smoothed and sharpened, padded, upscaled 2x; None when the
        frame has no busy region or it is longer than ``upscale_max_side``."""
        box = busy_region(image)
        if box is None:
            return None
        x0, y0, x1, y1 = box
        if max(x1 - x0, y1 - y0) > self.upscale_max_side:
            return None
        crop = smooth_sharpen(image[y0:y1, x0:x1])
        light = int(np.percentile(crop[::4, ::4], 95))
        return upscale2x(pad(crop, REGION_PAD, light))

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
        candidates = [smooth]
        if crop is not image and max(crop.shape) <= 2 * self.upscale_max_side:
            candidates.append(upscale2x(crop))  # modules of 2-3 pixels: the finder found, the grid not
        for candidate in candidates:
            texts = [r.text for r in zxingcpp.read_barcodes(candidate, formats=_QR, try_rotate=False,
                                                            try_invert=invert, text_mode=_PLAIN_TEXT) if r.text]
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
