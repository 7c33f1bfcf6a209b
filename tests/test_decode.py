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
    first_only, with_second = Decoder(second_pass=False), Decoder()
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
    assert Decoder(invert_every=0).decode(image) == []  # what the decoder did before
    decoder = Decoder()
    reads = [decoder.decode(image) for _ in range(4)]
    assert reads == [[], [], [TEXT], [TEXT]]  # the third frame looks for it; then it is followed


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
