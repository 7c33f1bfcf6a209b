"""Camera-like grey frames with a QR code in them, deterministic from a seed.

Used by the demo, the tests and the benchmarks instead of a real camera: segno draws the code,
then OpenCV/numpy add what a fixed roadside camera sees when a pass is held up at arm's length:
a cluttered background, perspective tilt, defocus blur, sensor noise, glare and low contrast.

    >>> frame = render_scene("CP1:...", (640, 480), seed=7)            # one frame with a code
    >>> idle = render_idle((640, 480), seed=7)                          # the empty scene
    >>> frames = render_sequence(["CP1:a", "CP1:b"], (640, 480), seed=1)  # people walking past
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
import segno

Size = tuple[int, int]  # (width, height)


@dataclass(frozen=True)
class Distortion:
    """How one frame is degraded. ``camera_like(seed)`` draws a realistic mix."""

    #: code width (quiet zone included) as a fraction of the frame height
    code_fraction: float = 0.6
    #: centre offset as a fraction of the free space (-1..1 on each axis)
    offset: tuple[float, float] = (0.0, 0.0)
    #: in-plane rotation, degrees
    rotation: float = 0.0
    #: perspective: each corner moves up to this fraction of the code size
    tilt: float = 0.0
    #: Gaussian defocus blur sigma in pixels (0 = sharp)
    blur: float = 0.0
    #: Gaussian sensor noise sigma in grey levels
    noise: float = 0.0
    #: glare: peak brightness added by a soft bright spot on the code (0 = none)
    glare: float = 0.0
    #: contrast between dark modules and paper (1 = full, 0.2 = washed out)
    contrast: float = 1.0
    #: overall brightness of the paper (0..255)
    paper: float = 220.0
    #: light modules on a dark ground, as a phone in dark mode shows a pass
    inverted: bool = False


def camera_like(seed: int) -> Distortion:
    """A random but realistic distortion mix (the benchmark's generated set uses this)."""
    rng = np.random.default_rng(seed)
    return Distortion(
        code_fraction=float(rng.uniform(0.45, 0.85)),
        offset=(float(rng.uniform(-0.8, 0.8)), float(rng.uniform(-0.8, 0.8))),
        rotation=float(rng.uniform(-25, 25)),
        tilt=float(rng.uniform(0.0, 0.09)),
        blur=float(rng.choice([0.0, rng.uniform(0.4, 1.3)], p=[0.4, 0.6])),
        noise=float(rng.uniform(1.0, 10.0)),
        glare=float(rng.choice([0.0, rng.uniform(60, 170)], p=[0.65, 0.35])),
        contrast=float(rng.choice([1.0, rng.uniform(0.2, 0.6)], p=[0.6, 0.4])),
        paper=float(rng.uniform(150, 235)),
    )


def qr_modules(text: str, error: str = "m") -> np.ndarray:
    """The QR symbol as a uint8 array, 0 = dark module, 255 = light, with a 4-module quiet zone."""
    qr = segno.make_qr(text, error=error, boost_error=False)
    matrix = np.array([list(row) for row in qr.matrix_iter(scale=1, border=4)], dtype=np.uint8)
    return np.where(matrix > 0, 0, 255).astype(np.uint8)


def render_idle(size: Size, seed: int = 0) -> np.ndarray:
    """The empty scene: a lit background with some clutter and sensor noise, no code."""
    rng = np.random.default_rng(seed ^ 0x5EED)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 90 + 60 * (x / width) * float(rng.uniform(0.5, 1.0)) + 30 * (y / height)
    small = rng.uniform(-35, 35, size=(max(2, height // 60), max(2, width // 60))).astype(np.float32)
    image = base + cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(6):  # a few objects: a pole, a sign, a car's edge
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(width // 20, width // 4)), int(rng.integers(height // 20, height // 3))
        cv2.rectangle(image, (x0, y0), (x0 + w, y0 + h), float(rng.uniform(30, 200)), -1)
    image = cv2.GaussianBlur(image, (0, 0), 1.2)
    image += rng.normal(0, 2.0, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def render_scene(text: str, size: Size = (640, 480), seed: int = 0,
                 distortion: Distortion | None = None, *, error: str = "m") -> np.ndarray:
    """One grey camera frame (``size`` = (width, height)) showing ``text`` as a QR code.

    ``distortion`` defaults to :func:`camera_like` (``seed``); pass ``Distortion()`` for a clean,
    centred, sharp code. The same arguments always give the same pixels.
    """
    return render_card_scene(qr_modules(text, error), size, seed, distortion)


def render_card_scene(card_image: np.ndarray, size: Size = (640, 480), seed: int = 0,
                      distortion: Distortion | None = None) -> np.ndarray:
    """Like :func:`render_scene`, for a code already drawn: a grey image, dark code on white
    (e.g. an issuer's own QR picture), held up in a camera-like scene."""
    d = camera_like(seed) if distortion is None else distortion
    rng = np.random.default_rng(seed)
    width, height = size
    n = card_image.shape[0]
    side = max(21, round(d.code_fraction * height))
    scale = max(1, -(-side * 4 // n))  # draw ~4x oversampled, let the warp filter it down
    card = cv2.resize(card_image, (n * scale, n * scale),
                      interpolation=cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA).astype(np.float32)
    card = d.paper - (255.0 - card) / 255.0 * d.paper * d.contrast * 0.9
    if d.inverted:  # swap dark and light within the same range: a dark screen with light modules
        card = d.paper * (2 - d.contrast * 0.9) - card
    n = card.shape[0] // scale

    src = np.float32([[0, 0], [n * scale, 0], [n * scale, n * scale], [0, n * scale]])
    half = side / 2
    corners = np.float32([[-half, -half], [half, -half], [half, half], [-half, half]])
    corners += rng.uniform(-d.tilt, d.tilt, corners.shape).astype(np.float32) * side
    angle = np.deg2rad(d.rotation)
    rot = np.float32([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = corners @ rot.T
    span = np.abs(corners).max(axis=0)
    free = np.maximum(np.float32([width / 2, height / 2]) - span - 2, 0)
    centre = np.float32([width / 2, height / 2]) + np.float32(d.offset) * free
    dst = corners + centre
    matrix = cv2.getPerspectiveTransform(src, dst.astype(np.float32))

    image = render_idle(size, seed).astype(np.float32)
    warped = cv2.warpPerspective(card, matrix, size, flags=cv2.INTER_AREA if scale > 1 else cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones_like(card), matrix, size, flags=cv2.INTER_LINEAR)
    image = image * (1 - mask) + warped * mask
    if d.glare > 0:
        gx, gy = centre + rng.uniform(-0.35, 0.35, 2) * side
        radius = side * float(rng.uniform(0.12, 0.3))
        y, x = np.ogrid[0:height, 0:width]
        image += d.glare * np.exp(-((x - gx) ** 2 + (y - gy) ** 2) / (2 * radius**2))
    if d.blur > 0:
        image = cv2.GaussianBlur(image, (0, 0), d.blur)
    if d.noise > 0:
        image += rng.normal(0, d.noise, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def render_sequence(texts: Sequence[str], size: Size = (640, 480), seed: int = 0, *,
                    idle_frames: int = 5, hold_frames: int = 8,
                    distortion: Distortion | None = None) -> list[np.ndarray]:
    """Frames of people walking up one by one: idle frames, then each code held for ``hold_frames``.

    The code moves a little between held frames (a hand is never still). Ends with idle frames.
    """
    frames: list[np.ndarray] = []
    for i, text in enumerate(texts):
        frames.extend(render_idle(size, seed + i) for _ in range(idle_frames))
        base = distortion or camera_like(seed * 1000 + i)
        for k in range(hold_frames):
            jitter = replace(base, offset=(base.offset[0] + 0.02 * k, base.offset[1] - 0.015 * k))
            frames.append(render_scene(text, size, seed * 1000 + i * 50 + k, jitter))
    frames.extend(render_idle(size, seed + len(texts)) for _ in range(idle_frames))
    return frames
