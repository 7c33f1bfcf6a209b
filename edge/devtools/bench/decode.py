"""``checkpoint bench decode``: decode cost and read rate on camera-like frames and real photos.

At 640x480 and 1280x720: ms per idle frame and per frame with a code (median, p95) for our
decoder (zxing-cpp; its invert pass, a 2x upscaled pass and a pass on a busy region, when there is
one, each on every third frame; the second pass), with the mean idle cost too (the costlier
passes run on a share of the frames only), read rate on the camera-like set (perspective, blur,
noise, glare, low contrast:
:func:`edge.devtools.synth.camera_like`) frame by frame and held (read within three frames of the
same view, as a code held up is), on the same scenes shown light-on-dark (a phone in dark mode;
held), and the same figures for the decoder without the invert, upscaled and region passes (``plain``),
pyzbar and OpenCV's QRCodeDetector, as ratios to ours (time: theirs / ours).

Real issuers' codes: the EU DCC test vectors hold 400-odd QR pictures made by some forty national
issuing systems (each with its expected text); they are read as they are and held up in
camera-like scenes (``issuer_*`` figures), which is what a camera at the roadside sees of them.

Real photos: ``--photos DIR`` (or ``$CHECKPOINT_QR_PHOTOS``) names a folder of photographs, each
``NAME.jpg``/``NAME.png`` beside ``NAME.txt`` holding the expected text: the layout of zxing's
public "blackbox" test sets (``core/src/test/resources/blackbox/qrcode-*`` in the zxing
repository, Apache-2.0); ``--fetch-photos`` fetches that public set at bench time into a cache
(:mod:`edge.devtools.qr_photos`). Texts are compared with line endings normalised (the sets' text
files do not keep the code's CR LF). ``mixed_read_rate_<size>`` pools the held camera-like,
light-on-dark, issuer-scene and photo frames.
"""

from __future__ import annotations

import os
import random
import string
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from edge.devtools.bench.report import median, percentile
from edge.devtools.dgc_testdata import dgc_testdata_dir
from edge.devtools.qr_photos import fetch_blackbox_photos
from edge.devtools.synth import camera_like, render_card_scene, render_idle, render_scene
from edge.scan.decode import Decoder

SIZES = {"640": (640, 480), "1280": (1280, 720)}
PHOTOS_ENV = "CHECKPOINT_QR_PHOTOS"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
#: share of light-on-dark codes in the mixed set (phones in dark mode)
INVERTED_SHARE = 0.25
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
    idle_ms, idle_cpu_ms = [], []
    for _ in range(idle_repeats):
        for image in idle:
            cpu = time.process_time()
            idle_ms.append(_timed(fn, image)[0])
            idle_cpu_ms.append((time.process_time() - cpu) * 1000)
    code_ms, hits = [], 0
    for text, image in coded:
        ms, texts = _timed(fn, image)
        code_ms.append(ms)
        hits += text in texts
    return {"idle_ms": median(idle_ms), "idle_ms_p95": percentile(idle_ms, 95),
            "idle_ms_mean": sum(idle_ms) / len(idle_ms),
            "idle_cpu_ms": median(idle_cpu_ms), "idle_cpu_ms_mean": sum(idle_cpu_ms) / len(idle_cpu_ms),
            "code_ms": median(code_ms), "code_ms_p95": percentile(code_ms, 95),
            "read_rate": hits / len(coded)}


def load_photos(folder: Path) -> list[tuple[str, str, np.ndarray]]:
    """``(name, expected text, grey image)`` for each photo with a readable ``NAME.txt`` beside it."""
    photos = []
    for image_path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        truth = image_path.with_suffix(".txt")
        if not truth.is_file():
            continue
        grey = cv2.imread(str(image_path), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            continue
        photos.append((str(image_path.relative_to(folder)), truth.read_text(encoding="utf-8").strip("\n"), grey))
    return photos


def interleaved_idle_ms(first: Decoder, second: Decoder, idle: list[np.ndarray],
                       repeats: int) -> tuple[float, float]:
    """Median idle ms of two decoders timed frame by frame in alternating order (no cache or load bias)."""
    times: tuple[list[float], list[float]] = ([], [])
    for rep in range(repeats):
        for k, image in enumerate(idle):
            order = (0, 1) if (rep + k) % 2 else (1, 0)
            for which in order:
                times[which].append(_timed((first, second)[which].decode, image)[0])
    return median(times[0]), median(times[1])


def load_issuer_codes(folder: Path | None = None) -> list[tuple[str, np.ndarray]]:
    """``(expected text, grey picture)`` for each EU DCC test vector whose picture should decode."""
    import base64
    import json

    folder = folder or dgc_testdata_dir()
    codes = []
    for path in sorted(folder.glob("**/*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except (ValueError, OSError):
            continue
        if not isinstance(data, dict) or not data.get("2DCODE") or not data.get("PREFIX"):
            continue
        if (data.get("EXPECTEDRESULTS") or {}).get("EXPECTEDPICTUREDECODE") is False:
            continue
        try:
            raw = np.frombuffer(base64.b64decode(data["2DCODE"]), np.uint8)
        except ValueError:
            continue
        grey = cv2.imdecode(raw, cv2.IMREAD_GRAYSCALE)
        if grey is not None:
            side = max(grey.shape)
            square = np.full((side, side), 255, np.uint8)
            square[:grey.shape[0], :grey.shape[1]] = grey
            codes.append((data["PREFIX"], square))
    return codes


def _line_text(text: str) -> str:
    return text.replace("\r\n", "\n").rstrip("\n")


def same_text(expected: str, texts: list[str]) -> bool:
    """Whether ``expected`` is among ``texts``, line endings aside: CR LF and LF taken as one, and
    line endings at the very end ignored. The photo sets' text files lose both (``load_photos``
    strips the file's final newline; a code's payload may end with CR LF: twelve of zxing's
    photos were read right and counted as misses before)."""
    return _line_text(expected) in {_line_text(t) for t in texts}


def held_read(decoder: Decoder, text: str, image: np.ndarray, frames: int = 3) -> bool:
    """Whether ``text`` is read within ``frames`` frames of the same view (a code held up)."""
    return any(same_text(text, decoder.decode(image)) for _ in range(frames))


def plain_decoder() -> Decoder:
    """The decoder without its invert, upscaled and region passes (the first pass and the second pass only)."""
    return Decoder(invert_every=0, upscale_every=0, region_every=0)


def photo_figures(photos: list[tuple[str, str, np.ndarray]]) -> dict[str, object]:
    """Read rate on real photos for ours, the plain decoder and zxing-cpp with its defaults."""
    import zxingcpp

    def defaults(image: np.ndarray) -> list[str]:
        return [r.text for r in zxingcpp.read_barcodes(image)]

    figures: dict[str, object] = {"photos": len(photos)}
    if not photos:
        return figures
    for label, read in (("", lambda t, im: held_read(Decoder(), t, im)),
                        ("plain_", lambda t, im: held_read(plain_decoder(), t, im)),
                        ("zxing_defaults_", lambda t, im: same_text(t, defaults(im)))):
        figures[f"{label}photo_read_rate"] = round(sum(read(t, im) for _, t, im in photos) / len(photos), 4)
    return figures


def run(quick: bool = False, photos: str | None = None, fetch_photos: bool = False,
        **_: object) -> dict[str, object]:
    """Decode figures per size for ours, the plain decoder, zxing-cpp's first pass alone, pyzbar and OpenCV."""
    frames = 60 if quick else 300
    idle_repeats = 5 if quick else 20
    texts = sample_texts(20)
    ours = Decoder()
    peers = {"plain": plain_decoder().decode,
             "zxing_only": Decoder(second_pass=False, invert_every=0, upscale_every=0, region_every=0).decode,
             "opencv": _opencv()}
    pyzbar = _pyzbar()
    if pyzbar is not None:
        peers["pyzbar"] = pyzbar
    figures: dict[str, object] = {"frames_per_size": frames, "pyzbar_available": pyzbar is not None}
    issuers = load_issuer_codes()
    figures["issuer_codes"] = len(issuers)
    if issuers:
        figures["issuer_png_read_rate"] = round(sum(held_read(Decoder(), t, im) for t, im in issuers) / len(issuers), 4)
    mixed: dict[str, list[int]] = {}
    for label, size in SIZES.items():
        idle = [render_idle(size, seed) for seed in range(10)]
        coded = [(texts[i % len(texts)], render_scene(texts[i % len(texts)], size, 10_000 + i))
                 for i in range(frames)]
        inverted_count = max(1, int(frames * INVERTED_SHARE))
        inverted = [(texts[i % len(texts)], render_scene(texts[i % len(texts)], size, 20_000 + i,
                                                         replace(camera_like(20_000 + i), inverted=True)))
                    for i in range(inverted_count)]
        for image in idle[:2]:  # warm-up
            ours.decode(image)
        mine = _measure("ours", ours.decode, idle, coded, idle_repeats)
        figures[f"idle_ms_{label}"] = round(mine["idle_ms"], 3)
        figures[f"idle_ms_p95_{label}"] = round(mine["idle_ms_p95"], 3)
        figures[f"idle_ms_mean_{label}"] = round(mine["idle_ms_mean"], 3)
        # CPU time: what the frame costs the core, unmoved by other processes on a shared machine
        figures[f"idle_cpu_ms_{label}"] = round(mine["idle_cpu_ms"], 3)
        figures[f"idle_cpu_ms_mean_{label}"] = round(mine["idle_cpu_ms_mean"], 3)
        figures[f"code_ms_{label}"] = round(mine["code_ms"], 3)
        figures[f"code_ms_p95_{label}"] = round(mine["code_ms_p95"], 3)
        figures[f"read_rate_{label}"] = round(mine["read_rate"], 4)
        held_hits = sum(held_read(Decoder(), t, im) for t, im in coded)
        figures[f"held_read_rate_{label}"] = round(held_hits / len(coded), 4)
        with_invert, without = interleaved_idle_ms(Decoder(), plain_decoder(), idle, idle_repeats * 2)
        figures[f"idle_ms_interleaved_{label}"] = round(with_invert, 3)
        figures[f"plain_idle_ms_interleaved_{label}"] = round(without, 3)
        inverted_hits = sum(held_read(Decoder(), t, im) for t, im in inverted)
        figures[f"inverted_read_rate_{label}"] = round(inverted_hits / len(inverted), 4)
        figures[f"plain_inverted_read_rate_{label}"] = round(
            sum(held_read(plain_decoder(), t, im) for t, im in inverted) / len(inverted), 4)
        mixed[label] = [held_hits + inverted_hits, len(coded) + len(inverted)]
        if issuers:
            scenes = [(text, render_card_scene(card, size, 30_000 + i)) for i, (text, card) in enumerate(issuers)]
            scene_hits = sum(held_read(Decoder(), t, im) for t, im in scenes)
            figures[f"issuer_scene_read_rate_{label}"] = round(scene_hits / len(scenes), 4)
            figures[f"plain_issuer_scene_read_rate_{label}"] = round(
                sum(held_read(plain_decoder(), t, im) for t, im in scenes) / len(scenes), 4)
            mixed[label][0] += scene_hits
            mixed[label][1] += len(scenes)
        for peer, fn in peers.items():
            theirs = _measure(peer, fn, idle, coded, idle_repeats if peer == "plain" else max(1, idle_repeats // 5))
            figures[f"{peer}_read_rate_{label}"] = round(theirs["read_rate"], 4)
            figures[f"{peer}_idle_ms_{label}"] = round(theirs["idle_ms"], 3)
            figures[f"{peer}_code_ms_{label}"] = round(theirs["code_ms"], 3)
            if peer not in ("zxing_only", "plain"):
                figures[f"{peer}_idle_time_ratio_{label}"] = round(theirs["idle_ms"] / mine["idle_ms"], 2)
                figures[f"{peer}_code_time_ratio_{label}"] = round(theirs["code_ms"] / mine["code_ms"], 2)
                figures[f"{peer}_read_rate_ratio_{label}"] = round(theirs["read_rate"] / mine["read_rate"], 3)
    figures["read_rate"] = figures["read_rate_640"]
    folder = str(fetch_blackbox_photos()) if fetch_photos else photos or os.environ.get(PHOTOS_ENV)
    if folder:
        found = load_photos(Path(folder))
        figures.update(photo_figures(found))
        for pool in mixed.values():  # photos are stills of their own size: the same in both pools
            pool[0] += round(float(figures.get("photo_read_rate", 0.0)) * len(found))
            pool[1] += len(found)
    else:
        figures["photos"] = f"none (--fetch-photos, --photos DIR or ${PHOTOS_ENV})"
    for label, (hits, total) in mixed.items():
        figures[f"mixed_frames_{label}"] = total
        figures[f"mixed_read_rate_{label}"] = round(hits / total, 4)
    return figures
