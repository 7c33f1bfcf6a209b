"""Grey-image operations in numpy alone: the picamera2 path decodes without OpenCV (93 MB installed).

The scan path needs only a few small things from an image library: colour to grey, an area
downscale, a 2x bilinear upscale and a light Gaussian blur for the decoder's extra passes, the
region pass's busy-region search, smoothing-then-sharpening and padding, and reading raw grey
frames for replays. Each is a few lines of numpy, so a device on the Pi camera installs numpy and
zxing-cpp and nothing heavier. The conversions and the blur follow OpenCV's arithmetic
(fixed-point BT.601 weights, a 5-tap kernel for sigma 0.7, reflect-101 borders) so a frame decodes
the same with or without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: OpenCV's fixed-point BT.601 weights for B, G, R (sum 1 << 14)
_BGR_WEIGHTS = np.array([1868, 9617, 4899], dtype=np.uint32)


class GreyImageError(ValueError):
    """A file that is not a raw grey frame this module can read."""


def bgr_to_grey(image: np.ndarray) -> np.ndarray:
    """A 2-D uint8 grey image from a BGR or BGRA uint8 image (grey input is returned as is)."""
    if image.ndim == 2:
        return image
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected a grey, BGR or BGRA image, got shape {image.shape}")
    weighted = image[..., :3].astype(np.uint32) @ _BGR_WEIGHTS
    return ((weighted + (1 << 13)) >> 14).astype(np.uint8)


def area_downscale(image: np.ndarray, factor: float) -> np.ndarray:
    """Shrink a grey image by ``factor`` (0 < factor <= 1), each output pixel the mean of its source block."""
    if not 0 < factor <= 1:
        raise ValueError(f"downscale factor must be in (0, 1], got {factor}")
    height, width = image.shape
    out_h, out_w = max(1, round(height * factor)), max(1, round(width * factor))
    if (out_h, out_w) == (height, width):
        return image
    rows = (np.arange(out_h) * height) // out_h
    cols = (np.arange(out_w) * width) // out_w
    summed = np.add.reduceat(np.add.reduceat(image.astype(np.uint32), rows, axis=0), cols, axis=1)
    counts = np.outer(np.diff(np.append(rows, height)), np.diff(np.append(cols, width)))
    return ((summed + counts // 2) // counts).astype(np.uint8)


def upscale2x(image: np.ndarray) -> np.ndarray:
    """A grey image twice as wide and high, new pixels the rounded mean of their neighbours (bilinear).

    At 640x480 a pass QR's modules can be 2-3 pixels wide: too few for zxing-cpp's finder search,
    which reads most of them once each module spans 4-6 pixels, even though no detail is added.
    """
    height, width = image.shape
    rows = np.empty((height, 2 * width), np.uint8)
    rows[:, 0::2] = image
    rows[:, 1:-1:2] = _mean_up(image[:, :-1], image[:, 1:])
    rows[:, -1] = image[:, -1]
    out = np.empty((2 * height, 2 * width), np.uint8)
    out[0::2] = rows
    out[1:-1:2] = _mean_up(rows[:-1], rows[1:])
    out[-1] = rows[-1]
    return out


def _mean_up(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a + b + 1) // 2 without widening to 16 bits (half the memory traffic)."""
    return (a | b) - ((a ^ b) >> 1)


def _kernel(sigma: float) -> np.ndarray:
    radius = max(1, round(sigma * 3 * 2 + 1) // 2)  # OpenCV's size for 8-bit images: round(6 sigma + 1) | 1
    taps = np.exp(-(np.arange(-radius, radius + 1, dtype=np.float64) ** 2) / (2 * sigma * sigma))
    return (taps / taps.sum()).astype(np.float32)


def gaussian_blur(image: np.ndarray, sigma: float = 0.7) -> np.ndarray:
    """A separable Gaussian blur of a grey uint8 image (borders reflected without repeating the edge)."""
    kernel = _kernel(sigma)
    radius = len(kernel) // 2
    height, width = image.shape
    if height <= radius or width <= radius:
        return image
    padded = np.pad(image.astype(np.float32), radius, mode="reflect")
    vertical = sum(k * padded[i: i + height, :] for i, k in enumerate(kernel))
    smooth = sum(k * vertical[:, i: i + width] for i, k in enumerate(kernel))
    return np.clip(smooth + 0.5, 0, 255).astype(np.uint8)


def read_pgm(path: Path | str) -> np.ndarray:
    """A binary 8-bit PGM (P5) file as a 2-D uint8 array: the raw grey frames replays use without OpenCV."""
    data = Path(path).read_bytes()
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while pos < len(data) and data[pos: pos + 1].isspace():
            pos += 1
        if data[pos: pos + 1] == b"#":  # a comment runs to the end of the line
            pos = data.find(b"\n", pos) + 1 or len(data)
            continue
        start = pos
        while pos < len(data) and not data[pos: pos + 1].isspace():
            pos += 1
        if start == pos:
            raise GreyImageError(f"{path}: truncated PGM header")
        fields.append(data[start:pos])
    magic, width, height, maxval = fields
    if magic != b"P5" or not (width.isdigit() and height.isdigit() and maxval.isdigit()) or int(maxval) != 255:
        raise GreyImageError(f"{path}: not an 8-bit binary PGM (P5, maxval 255)")
    w, h = int(width), int(height)
    pixels = data[pos + 1: pos + 1 + w * h]
    if w == 0 or h == 0 or len(pixels) != w * h:
        raise GreyImageError(f"{path}: PGM holds {len(pixels)} pixel bytes, its header says {w}x{h}")
    return np.frombuffer(pixels, dtype=np.uint8).reshape(h, w)


def write_pgm(path: Path | str, grey: np.ndarray) -> None:
    """Write a 2-D uint8 array as a binary PGM (P5) file."""
    if grey.ndim != 2 or grey.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 grey image, got shape={grey.shape} dtype={grey.dtype}")
    height, width = grey.shape
    Path(path).write_bytes(b"P5\n%d %d\n255\n" % (width, height) + np.ascontiguousarray(grey).tobytes())


#: a busy block is 16x16 pixels, sampled every 4th pixel on each axis (16 samples)
_BLOCK, _STEP = 16, 4


def busy_region(image: np.ndarray, min_spread: int = 24) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` around the pixels of ``image`` that look like a code, or None.

    A QR code, whatever its module size, blur or tilt, is a compact patch where every 16x16 block
    holds both dark and light pixels; background clutter has edges, which a block straddles, but not
    solid patches of them. So: the spread (max - min) of each block, sampled every 4th pixel (tens
    of microseconds at 640x480); a block is busy when its spread exceeds ``min_spread`` grey levels
    and the frame's noise floor (the lower quartile of the spreads) by 12 (sensor noise of sigma 10
    spreads a flat block by about 35); kept when its 8 neighbours are busy too; the box is theirs,
    grown by two blocks on each side (a code's glare-washed corner is not busy).
    """
    sample = image[::_STEP, ::_STEP]
    side = _BLOCK // _STEP
    rows, cols = sample.shape[0] // side, sample.shape[1] // side
    if rows < 3 or cols < 3:
        return None
    sample = sample[: rows * side, : cols * side]
    high, low = sample[0::side], sample[0::side]
    for k in range(1, side):
        high, low = np.maximum(high, sample[k::side]), np.minimum(low, sample[k::side])
    block_high, block_low = high[:, 0::side], low[:, 0::side]
    for k in range(1, side):
        block_high, block_low = np.maximum(block_high, high[:, k::side]), np.minimum(block_low, low[:, k::side])
    spread = block_high - block_low
    floor = int(np.partition(spread, spread.size // 4, axis=None)[spread.size // 4])
    busy = spread > max(min_spread, floor + 12)
    solid = busy[1:-1, 1:-1].copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            solid &= busy[dy: dy + rows - 2, dx: dx + cols - 2]
    if not solid.any():
        return None
    ys, xs = np.nonzero(solid)  # solid[i, j] is block (i + 1, j + 1)
    height, width = image.shape
    return (max(0, (int(xs.min()) - 2) * _BLOCK), max(0, (int(ys.min()) - 2) * _BLOCK),
            min(width, (int(xs.max()) + 5) * _BLOCK), min(height, (int(ys.max()) + 5) * _BLOCK))


def smooth_sharpen(image: np.ndarray, amount: int = 1) -> np.ndarray:
    """A [1 2 1] binomial smoothing (takes the edge off sensor noise) followed by a Laplacian
    sharpening (``amount`` times the 4-neighbour Laplacian added back): module edges softened by
    defocus get their contrast back without the noise being sharpened with them. Borders kept."""
    wide = image.astype(np.int16)
    across = wide.copy()
    across[:, 1:-1] = (wide[:, :-2] + 2 * wide[:, 1:-1] + wide[:, 2:] + 2) >> 2
    smooth = across.copy()
    smooth[1:-1] = (across[:-2] + 2 * across[1:-1] + across[2:] + 2) >> 2
    centre = smooth[1:-1, 1:-1]
    laplacian = 4 * centre - smooth[:-2, 1:-1] - smooth[2:, 1:-1] - smooth[1:-1, :-2] - smooth[1:-1, 2:]
    out = smooth.copy()
    out[1:-1, 1:-1] += laplacian * amount if amount != 1 else laplacian
    return np.clip(out, 0, 255).astype(np.uint8)


def pad(image: np.ndarray, width: int, value: int) -> np.ndarray:
    """``image`` inside a border ``width`` pixels wide of grey ``value``."""
    out = np.full((image.shape[0] + 2 * width, image.shape[1] + 2 * width), value, np.uint8)
    out[width:-width, width:-width] = image
    return out
