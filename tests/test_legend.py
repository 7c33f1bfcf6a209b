"""The printed lamp legend: drawn from the signal table, both languages, one A4 page in Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from browser import chromium, needs_chromium
from click.testing import CliRunner

from edge.cli import main
from edge.scan.light.legend import INK, SPAN_S, rhythm_svg
from edge.scan.light.signals import FAULTS, READY, VERDICTS, Fault, legend_rows
from edge.verdict import Decision


def test_every_signal_is_on_the_legend_in_both_languages(tmp_path):
    out = tmp_path / "legend.html"
    result = CliRunner().invoke(main, ["legend", "-o", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    rows = legend_rows()
    assert {s.key for s in rows} >= {"ready", "off", *Decision, *Fault}
    for signal in rows:
        for text in (*signal.looks, *signal.means, *signal.action):
            assert text and text.replace("&", "&amp;").replace("'", "&#x27;") in html, (signal.key, text)
    text = CliRunner().invoke(main, ["legend", "--format", "text"]).output
    assert text.count("means:") == len(rows)


def _lit_widths(svg: str, colour: str) -> list[float]:
    return [float(w) for w in re.findall(rf'width="([\d.]+)" height="\d+" fill="{colour}"', svg)]


@pytest.mark.parametrize("signal", [READY, *FAULTS.values()], ids=lambda s: s.key)
def test_the_drawing_is_the_rhythm_to_scale(signal):
    svg = rhythm_svg(signal, width=400)
    scale = 400 / SPAN_S
    lit = signal.rhythm[0::2]
    flashes_in_span = sum(1 for i, _ in enumerate(lit) if sum(signal.rhythm[:2 * i]) < SPAN_S)
    widths = _lit_widths(svg, INK[signal.lamp])
    assert widths[:flashes_in_span] == pytest.approx([max(s * scale, 1.5) for s in lit[:flashes_in_span]], abs=0.2)


def test_steady_verdicts_fill_the_bar_and_beeps_are_marked():
    svg = rhythm_svg(VERDICTS[Decision.CHECK], width=400)
    assert 'width="399" height="18" fill="#f2a900"' in svg
    assert svg.count('fill="#000"') == 2  # two short beeps


@pytest.mark.chromium
@needs_chromium
def test_the_legend_prints_on_one_a4_page(tmp_path):
    page = tmp_path / "legend.html"
    CliRunner().invoke(main, ["legend", "-o", str(page)])
    pdf = tmp_path / "legend.pdf"
    result = chromium(page.as_uri(), tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF"), result.stderr[-2000:]
    assert len(re.findall(rb"/Type\s*/Page[^s]", data)) == 1
    if shutil.which("pdftoppm"):  # a picture of the page for a person to look at
        subprocess.run(["pdftoppm", "-r", "70", "-png", "-singlefile", str(pdf), "/tmp/checkpoint-lamp-legend"],
                       check=True, timeout=60)
        assert Path("/tmp/checkpoint-lamp-legend.png").stat().st_size > 10_000
