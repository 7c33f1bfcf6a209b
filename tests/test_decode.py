"""Decoder on camera-like frames and the ``checkpoint decode`` command."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edge.cli import main
from edge.config import DecoderConfig
from edge.devtools.synth import Distortion, render_idle, render_scene
from edge.scan.debounce import Debouncer
from edge.scan.decode import Decoder

TEXT = "CP1:" + "NCFOXN%TSMAHN-HVUOEJPJ-SVOG8HPBF8VQM4CPBF46KX8SS8S8" * 3


def test_idle_frame_gives_nothing():
    decoder = Decoder()
    assert decoder.decode(render_idle((640, 480), 1)) == []
    assert decoder.stats.frames == 1 and decoder.stats.located_unread == 0


@pytest.mark.parametrize("size", [(640, 480), (1280, 720)])
def test_reads_a_clean_code(size):
    assert Decoder().decode(render_scene(TEXT, size, 5, Distortion(code_fraction=0.5))) == [TEXT]


def test_reads_most_camera_like_frames():
    decoder = Decoder()
    hits = sum(decoder.decode(render_scene(TEXT, (640, 480), seed)) == [TEXT] for seed in range(40))
    assert hits >= 36


def test_second_pass_reads_codes_zxing_located_but_could_not_read():
    """Noisy low-contrast frames that the first pass locates but fails on (found by scanning seeds)."""
    first_only = Decoder(second_pass=False, upscale_every=0, region_every=0)
    with_second = Decoder(upscale_every=0, region_every=0)
    rescued = 0
    for seed in range(400):
        image = render_scene(TEXT, (640, 480), seed,
                             Distortion(code_fraction=0.45, noise=9.0, contrast=0.3, paper=190, tilt=0.03))
        if first_only.decode(image) == [] and with_second.decode(image) == [TEXT]:
            rescued += 1
        if rescued >= 2:
            break
    assert rescued >= 2
    assert with_second.stats.located_unread >= 2
    assert with_second.stats.second_pass_reads + with_second.stats.pyzbar_reads >= 2


def test_roi_and_downscale():
    image = np.full((480, 640), 200, np.uint8)
    code = render_scene(TEXT, (320, 240), 1, Distortion(code_fraction=0.9))
    image[240:480, 320:640] = code
    assert Decoder(DecoderConfig(roi=(320, 240, 320, 240))).decode(image) == [TEXT]
    assert Decoder(DecoderConfig(roi=(0, 0, 320, 240))).decode(image) == []
    big = render_scene(TEXT, (1280, 720), 2, Distortion(code_fraction=0.8))
    assert Decoder(DecoderConfig(downscale=0.5)).decode(big) == [TEXT]
    with pytest.raises(ValueError, match="outside"):
        Decoder(DecoderConfig(roi=(700, 0, 10, 10))).decode(image)


def test_rejects_non_grey_input():
    with pytest.raises(ValueError, match="grey"):
        Decoder().decode(np.zeros((4, 4, 3), np.uint8))


def test_pyzbar_fallback_can_be_disabled():
    assert not Decoder(DecoderConfig(pyzbar_fallback=False)).has_pyzbar


def test_decode_cli_prints_one_json_line_per_file(tmp_path: Path):
    with_code, idle, junk = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    cv2.imwrite(str(with_code), render_scene(TEXT, (640, 480), 3, Distortion()))
    cv2.imwrite(str(idle), render_idle((640, 480), 3))
    junk.write_bytes(b"not an image")
    result = CliRunner().invoke(main, ["decode", str(with_code), str(idle), str(junk)])
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["file"] for line in lines] == [str(with_code), str(idle), str(junk)]
    assert lines[0]["texts"] == [TEXT] and lines[0]["ms"] >= 0
    assert lines[1]["texts"] == []
    assert "error" in lines[2]
    ok = CliRunner().invoke(main, ["decode", str(with_code)])
    assert ok.exit_code == 0, ok.output


# -- light-on-dark codes (phones in dark mode) ----------------------------------------------------
INVERTED = Distortion(code_fraction=0.6, rotation=8, tilt=0.03, blur=0.6, noise=4, inverted=True)


def test_an_inverted_code_is_read_within_three_frames_and_plain_zxing_never_reads_it():
    image = render_scene(TEXT, (640, 480), 11, INVERTED)
    assert Decoder(invert_every=0, region_every=0).decode(image) == []  # what the decoder did before
    decoder = Decoder(region_every=0)
    reads = [decoder.decode(image) for _ in range(4)]
    assert reads == [[], [], [TEXT], [TEXT]]  # the third frame looks for it; then it is followed
    decoder = Decoder()  # the region pass (second frame) looks for both kinds too
    assert [decoder.decode(image) for _ in range(3)] == [[], [TEXT], [TEXT]]
    assert decoder.stats.region_reads == 2  # read by it, then followed by it while held


def test_idle_frames_take_the_invert_pass_only_on_every_third_frame():
    decoder = Decoder()
    for seed in range(20):
        assert decoder.decode(render_idle((640, 480), seed)) == []
    assert decoder.stats.invert_frames == 6


@pytest.mark.parametrize("inverted", [False, True], ids=["dark-on-light", "light-on-dark"])
def test_a_held_code_is_decided_once_within_the_debounce_window(inverted):
    """15 fps: three idle frames, the code held for 2 s with a hand's jitter, then gone."""
    decoder, debouncer = Decoder(), Debouncer(forget_after_s=2.0)
    frames = [render_idle((640, 480), 3)] * 3 + [
        render_scene(TEXT, (640, 480), 40 + k, replace(INVERTED, inverted=inverted, offset=(0.02 * k, 0.0)))
        for k in range(30)] + [render_idle((640, 480), 4)] * 3
    decided = []
    for i, frame in enumerate(frames):
        for text in debouncer.feed(decoder.decode(frame), now=i / 15):
            decided.append((i, text))
    assert [t for _, t in decided] == [TEXT]  # once, never again while held
    assert decided[0][0] <= 3 + 2  # within the first three frames the code is in view (0.2 s at 15 fps)


def test_upscale2x_is_bilinear_and_keeps_the_source_pixels():
    from edge.scan.greyimage import upscale2x

    image = np.random.default_rng(3).integers(0, 256, (5, 7)).astype(np.uint8)
    big = upscale2x(image)
    assert big.shape == (10, 14) and big.dtype == np.uint8
    assert (big[0::2, 0::2] == image).all()
    assert (big[0::2, 1:-1:2] == (image[:, :-1].astype(int) + image[:, 1:] + 1) // 2).all()
    assert (big[1:-1:2, 0::2] == (image[:-1].astype(int) + image[1:] + 1) // 2).all()
    assert (big[-1] == big[-2]).all() and (big[:, -1] == big[:, -2]).all()


#: an HC1-length code (version 11) at about 3 pixels a module in a 640x480 frame, washed out by glare
SMALL_MODULES = Distortion(code_fraction=0.46, offset=(0.65, 0.28), rotation=-2.4, tilt=0.058, blur=0.74,
                           noise=6.9, glare=157.0, contrast=0.35, paper=190.0)


def _small_code(seed: int = 10_208) -> tuple[str, np.ndarray]:
    from edge.devtools.bench.decode import sample_texts

    text = sample_texts(20)[8]
    return text, render_scene(text, (640, 480), seed, SMALL_MODULES)


def test_a_code_with_three_pixel_modules_is_read_by_the_upscaled_pass():
    text, image = _small_code()
    plain = Decoder(upscale_every=0, region_every=0, second_pass=False)
    assert [plain.decode(image) for _ in range(3)] == [[], [], []]  # the frame as it is, invert pass too
    decoder = Decoder(second_pass=False)
    reads = [decoder.decode(image) for _ in range(3)]
    assert reads[0] == [text]  # the first frame is an upscale frame (one after each invert frame)
    assert decoder.stats.upscale_reads >= 1
    assert any(reads[1:])  # and it is followed while held


def test_idle_frames_take_the_upscaled_pass_only_on_every_third_frame_and_not_at_1280():
    decoder = Decoder()
    for seed in range(12):
        assert decoder.decode(render_idle((640, 480), seed)) == []
    assert decoder.stats.upscale_frames == 4 and decoder.stats.invert_frames == 4
    wide = Decoder()
    for seed in range(6):
        wide.decode(render_idle((1280, 720), seed))
    assert wide.stats.upscale_frames == 0  # longer side over upscale_max_side: modules are wide enough


def test_a_held_small_code_is_decided_once():
    decoder, debouncer = Decoder(), Debouncer(forget_after_s=2.0)
    text = _small_code()[0]
    held = [_small_code(60 + k)[1] for k in range(20)]
    frames = [render_idle((640, 480), 5)] * 2 + held + [render_idle((640, 480), 6)]
    decided = []
    for i, frame in enumerate(frames):
        decided.extend((i, t) for t in debouncer.feed(decoder.decode(frame), now=i / 15))
    assert [t for _, t in decided] == [text]
    assert decided[0][0] < 2 + 6  # within six frames of coming into view (0.4 s at 15 fps)


# -- the region pass: a busy, code-like region alone, smoothed, sharpened, padded, upscaled -----------
def test_busy_region_finds_the_code_and_nothing_in_idle_scenes_even_noisy_ones():
    from edge.scan.greyimage import busy_region

    rng = np.random.default_rng(1)
    for seed in range(8):
        idle = render_idle((640, 480), seed)
        assert busy_region(idle) is None
        noisy = np.clip(idle + rng.normal(0, 10, idle.shape), 0, 255).astype(np.uint8)
        assert busy_region(noisy) is None  # sensor noise of sigma 10 is not a code
    image = render_scene(TEXT, (640, 480), 3, Distortion(code_fraction=0.5, offset=(0.5, 0.0)))
    x0, y0, x1, y1 = busy_region(image)
    side = 0.5 * 480  # the code, quiet zone included, is centred at x = 320 + 0.5 * (320 - 120 - 2)
    assert x0 <= 419 - side / 2 + 8 * 4 and x1 >= 419 + side / 2 - 8 * 4  # the quiet zone aside
    assert y0 <= 240 - side / 2 + 8 * 4 and y1 >= 240 + side / 2 - 8 * 4
    assert x1 - x0 < 400 and y1 - y0 < 400  # not the whole frame


def test_smooth_sharpen_keeps_flat_areas_and_steepens_an_edge():
    from edge.scan.greyimage import smooth_sharpen

    flat = np.full((9, 9), 120, np.uint8)
    assert (smooth_sharpen(flat) == flat).all()
    ramp = np.tile(np.array([50, 50, 50, 90, 130, 170, 170, 170], np.uint8), (6, 1))
    out = smooth_sharpen(ramp).astype(int)
    assert out[2, 2] < 50 and out[2, 5] > 170  # overshoot on both sides of the edge: module edges stand out


def test_a_blurred_small_code_is_read_by_the_region_pass():
    """A camera-like frame of the bench's set (HC1 length, blurred and noisy) that neither the frame as
    it is, its invert pass nor the whole frame upscaled reads, within three frames."""
    from edge.devtools.bench.decode import sample_texts

    text = sample_texts(20)[10]
    image = render_scene(text, (640, 480), 10_090)
    without = Decoder(region_every=0)
    assert [without.decode(image) for _ in range(3)] == [[], [], []]
    decoder = Decoder()
    assert [decoder.decode(image) for _ in range(3)] == [[], [text], [text]]
    assert decoder.stats.region_reads == 2  # read by it, then followed by it while held


def test_a_code_cut_by_the_frame_edge_is_read_with_the_region_padded():
    from edge.devtools.bench.decode import sample_texts

    text = sample_texts(1)[0]
    cut = Distortion(code_fraction=0.9, rotation=20, offset=(0.0, -0.4), noise=3, tilt=0.02)
    image = render_scene(text, (640, 480), 7, cut)
    assert (image[0, 200:440] < 100).any()  # dark modules on the frame's top row: the code runs off it
    without = Decoder(region_every=0)
    assert not any(without.decode(image) for _ in range(3))
    decoder = Decoder()
    assert any(decoder.decode(image) == [text] for _ in range(3)) and decoder.stats.region_reads == 1


def test_idle_frames_never_take_the_region_pass():
    decoder = Decoder()
    for seed in range(12):
        assert decoder.decode(render_idle((640, 480), seed)) == []
    assert decoder.stats.region_frames == 0 and decoder.stats.upscale_frames == 4


def test_a_textured_background_backs_the_region_pass_off():
    """A busy patch that is no code (a poster, a bush) would cost the region pass on every third frame;
    after REGION_PATIENCE fruitless ones it runs on one region frame in REGION_BACKOFF, until a frame
    shows no busy region."""
    from edge.scan.decode import REGION_BACKOFF, REGION_PATIENCE

    rng = np.random.default_rng(5)
    idle = render_idle((640, 480), 2)
    frame = idle.astype(np.int16)
    frame[60:360, 100:400] += np.kron(rng.integers(-60, 61, (75, 75)), np.ones((4, 4), np.int16)).astype(np.int16)
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    decoder = Decoder()
    for _ in range(60):  # frames 1-60: the region frames are 2, 5, ..., 59 (20 of them)
        assert decoder.decode(frame) == []
    backed_off = sum(1 for f in range(2, 61, 3)[REGION_PATIENCE:] if (f // 3) % REGION_BACKOFF == 0)
    assert decoder.stats.region_frames == REGION_PATIENCE + backed_off < 20
    decoder.decode(idle)  # frame 61: an upscale frame
    decoder.decode(idle)  # frame 62: a region frame without a busy region: patience restored
    before = decoder.stats.region_frames
    for _ in range(3 * REGION_PATIENCE):
        decoder.decode(frame)
    assert decoder.stats.region_frames - before == REGION_PATIENCE


def test_control_characters_come_through_as_they_are_encoded():
    text = "CP1:\x01\x10" + "A" * 40
    # the human-readable mode would give "CP1:<SOH><DLE>AAAA..."
    assert Decoder().decode(render_scene(text, (640, 480), 1, Distortion(code_fraction=0.6))) == [text]
