"""``checkpoint bench decode``: decode cost and read rate on generated camera-like frames.

At 640x480 and 1280x720: ms per idle frame and per frame with a code (median, p95) for our
decoder (zxing-cpp + second pass), read rate on the camera-like set (perspective, blur, noise,
glare, low contrast: :func:`edge.devtools.synth.camera_like`), and the same figures for pyzbar
and OpenCV's QRCodeDetector on the same frames, as ratios to ours (time: theirs / ours).
"""

from __future__ import annotations

import random
import string
import time
from collections.abc import Callable

import cv2
import numpy as np

from edge.devtools.bench.report import median, percentile
from edge.devtools.synth import render_idle, render_scene
from edge.scan.decode import Decoder

SIZES = {"640": (640, 480), "1280": (1280, 720)}
_ALPHABET = string.ascii_uppercase + string.digits + " $%*+-./:"


def sample_texts(count: int, seed: int = 1) -> list[str]:
    """Pass-like payloads: half HC1-length (base45, 300-560 chars), half CP1-length (120-220)."""
    rnd = random.Random(seed)
    texts = []
    for i in range(count):
        prefix, low, high = ("HC1:", 300, 560) if i % 2 == 0 else ("CP1:", 120, 220)
        texts.append(prefix + "".join(rnd.choice(_ALPHABET) for _ in range(rnd.randint(low, high))))
    return texts


def _timed(fn: Callable[[np.ndarray], list[str]], image: np.ndarray) -> tuple[float, list[str]]:
    start = time.perf_counter()
    texts = fn(image)
    return (time.perf_counter() - start) * 1000, texts


def _pyzbar() -> Callable[[np.ndarray], list[str]] | None:
    try:
        from pyzbar import pyzbar
    except (ImportError, OSError):
        return None
    return lambda image: [s.data.decode("utf-8", "replace")
                          for s in pyzbar.decode(image, symbols=[pyzbar.ZBarSymbol.QRCODE])]


def _opencv() -> Callable[[np.ndarray], list[str]]:
    detector = cv2.QRCodeDetector()

    def read(image: np.ndarray) -> list[str]:
        text, _, _ = detector.detectAndDecode(image)
        return [text] if text else []

    return read


def _measure(name: str, fn, idle: list[np.ndarray], coded: list[tuple[str, np.ndarray]],
             idle_repeats: int) -> dict[str, float]:
    idle_ms = [_timed(fn, image)[0] for _ in range(idle_repeats) for image in idle]
    code_ms, hits = [], 0
    for text, image in coded:
        ms, texts = _timed(fn, image)
        code_ms.append(ms)
        hits += text in texts
    return {"idle_ms": median(idle_ms), "idle_ms_p95": percentile(idle_ms, 95),
            "code_ms": median(code_ms), "code_ms_p95": percentile(code_ms, 95),
            "read_rate": hits / len(coded)}


def run(quick: bool = False, **_: object) -> dict[str, object]:
    """Decode figures per size for ours, zxing-cpp's first pass alone, pyzbar and OpenCV."""
    frames = 60 if quick else 300
    idle_repeats = 5 if quick else 20
    texts = sample_texts(20)
    ours = Decoder()
    peers = {"zxing_only": Decoder(second_pass=False).decode, "opencv": _opencv()}
    pyzbar = _pyzbar()
    if pyzbar is not None:
        peers["pyzbar"] = pyzbar
    figures: dict[str, object] = {"frames_per_size": frames, "pyzbar_available": pyzbar is not None}
    for label, size in SIZES.items():
        idle = [render_idle(size, seed) for seed in range(10)]
        coded = [(texts[i % len(texts)], render_scene(texts[i % len(texts)], size, 10_000 + i))
                 for i in range(frames)]
        for image in idle[:2]:  # warm-up
            ours.decode(image)
        mine = _measure("ours", ours.decode, idle, coded, idle_repeats)
        figures[f"idle_ms_{label}"] = round(mine["idle_ms"], 3)
        figures[f"idle_ms_p95_{label}"] = round(mine["idle_ms_p95"], 3)
        figures[f"code_ms_{label}"] = round(mine["code_ms"], 3)
        figures[f"code_ms_p95_{label}"] = round(mine["code_ms_p95"], 3)
        figures[f"read_rate_{label}"] = round(mine["read_rate"], 4)
        for peer, fn in peers.items():
            theirs = _measure(peer, fn, idle, coded, max(1, idle_repeats // 5))
            figures[f"{peer}_read_rate_{label}"] = round(theirs["read_rate"], 4)
            figures[f"{peer}_idle_ms_{label}"] = round(theirs["idle_ms"], 3)
            figures[f"{peer}_code_ms_{label}"] = round(theirs["code_ms"], 3)
            if peer != "zxing_only":
                figures[f"{peer}_idle_time_ratio_{label}"] = round(theirs["idle_ms"] / mine["idle_ms"], 2)
                figures[f"{peer}_code_time_ratio_{label}"] = round(theirs["code_ms"] / mine["code_ms"], 2)
                figures[f"{peer}_read_rate_ratio_{label}"] = round(theirs["read_rate"] / mine["read_rate"], 3)
    figures["read_rate"] = figures["read_rate_640"]
    return figures
