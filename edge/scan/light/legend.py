"""The printable lamp legend (one A4 page, Vietnamese and English), drawn from the signal table.

Nothing here describes a signal by hand: each row is a :class:`Signal` from
:mod:`edge.scan.light.signals`, its rhythm drawn to scale, so the paper at the checkpoint cannot
drift from what the lamps do.
"""

from __future__ import annotations

from html import escape

from edge.scan.light.signals import Signal, legend_rows

#: how the lamp colours are drawn on paper
INK = {"green": "#0b8a2e", "red": "#c4161c", "amber": "#f2a900"}
#: seconds of rhythm shown per row (the longest cycle is 4 s)
SPAN_S = 4.0


def rhythm_svg(signal: Signal, width: int = 200, height: int = 26) -> str:
    """The signal's lit/dark rhythm over ``SPAN_S`` seconds, with its beeps as marks underneath."""
    bar = height - 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(signal.looks[1])}">',
             f'<rect x="0.5" y="0.5" width="{width - 1}" height="{bar}" fill="#ffffff" stroke="#888"/>']
    scale = width / SPAN_S
    if signal.lamp is not None:
        colour = INK[signal.lamp]
        if signal.steady:
            parts.append(f'<rect x="0.5" y="0.5" width="{width - 1}" height="{bar}" fill="{colour}"/>')
        else:
            t = 0.0
            while t < SPAN_S:
                for lit, seconds in signal.segments():
                    if lit is not None and t < SPAN_S:
                        w = min(seconds, SPAN_S - t) * scale
                        parts.append(f'<rect x="{t * scale:.1f}" y="0.5" width="{max(w, 1.5):.1f}" '
                                     f'height="{bar}" fill="{colour}"/>')
                    t += seconds
    if signal.beep is not None:
        t = 0.0
        for _ in range(signal.beep.count):
            parts.append(f'<rect x="{t * scale:.1f}" y="{bar + 3}" width="{max(signal.beep.on_s * scale, 2):.1f}" '
                         f'height="4" fill="#000"/>')
            t += signal.beep.on_s + signal.beep.off_s
    parts.append("</svg>")
    return "".join(parts)


def _both(pair: tuple[str, str]) -> str:
    return f'<b>{escape(pair[0])}</b><br><i>{escape(pair[1])}</i>'


def legend_html() -> str:
    """The whole legend as one self-contained HTML page (print it: it fits one A4 sheet)."""
    rows = "\n".join(
        f"<tr><td class=draw>{rhythm_svg(s)}<div class=looks>{_both(s.looks)}</div></td>"
        f"<td>{_both(s.means)}</td><td>{_both(s.action)}</td></tr>"
        for s in legend_rows())
    return f"""<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><title>Đèn báo / Lamp legend</title>
<style>
  @page {{ size: A4 portrait; margin: 10mm; }}
  body {{ font-family: "DejaVu Sans", "Noto Sans", sans-serif; font-size: 8.6pt; color: #000; margin: 0; }}
  h1 {{ font-size: 14pt; margin: 0 0 1mm; }}
  p.note {{ margin: 0 0 2mm; }}
  table {{ border-collapse: collapse; width: 100%; }}
  th, td {{ border: 0.6pt solid #666; padding: 1.2mm 1.6mm; vertical-align: top; text-align: left; }}
  th {{ background: #eee; }}
  td.draw {{ width: 56mm; }}
  .looks {{ margin-top: 0.8mm; }}
  i {{ color: #333; }}
</style></head><body>
<h1>Đèn và còi báo của chốt kiểm soát / Checkpoint lamps and buzzer</h1>
<p class=note><b>Thanh màu: đèn sáng trong 4 giây; vạch đen: tiếng bíp.</b>
<i>Coloured bar: the lamp over 4 seconds; black marks: beeps.</i>
<b>Xanh lá chỉ có nghĩa là được qua; đỏ chỉ có nghĩa là không được qua; vàng: kiểm tra thủ công.</b>
<i>Green only ever means pass; red only ever means refuse; amber means check by hand.</i></p>
<table><thead><tr><th>Đèn / Lamp</th><th>Nghĩa là / Meaning</th><th>Nhân viên làm gì / What to do</th></tr></thead>
<tbody>
{rows}
</tbody></table>
</body></html>
"""


def legend_text() -> str:
    """The legend as plain text (for a terminal or a log)."""
    lines = []
    for s in legend_rows():
        lines.append(f"{s.looks[1]}  /  {s.looks[0]}")
        lines.append(f"    means: {s.means[1]}  /  {s.means[0]}")
        lines.append(f"    do:    {s.action[1]}  /  {s.action[0]}")
    return "\n".join(lines) + "\n"
