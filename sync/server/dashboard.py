"""The fleet dashboard: one server-rendered HTML page, no JavaScript."""

from __future__ import annotations

from datetime import datetime
from html import escape

from sync.server.storage import DeviceSummary

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<title>Checkpoint fleet</title><style>
body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .7em;text-align:right}}th{{background:#eee}}
td:first-child,td:last-child{{text-align:left}}h2{{margin-top:1.5em}}.gap{{background:#fdd}}.stale{{color:#a60}}
</style></head><body><h1>Checkpoint fleet</h1><p>{summary}</p>
<table><thead><tr><th>Device</th><th>Last seen (UTC)</th><th>Records</th><th>Acked seq</th>
<th>PASS</th><th>REFUSE</th><th>CHECK</th><th>Gaps</th></tr></thead><tbody>{rows}</tbody></table>
<h2>Published lists</h2><table><thead><tr><th>List</th><th>Version</th><th>Details</th></tr></thead>
<tbody>{published}</tbody></table>
<p><small>Rendered {now}. JSON: <a href="/v1/fleet">/v1/fleet</a></small></p></body></html>"""


def render_dashboard(devices: list[DeviceSummary], now: datetime,
                     published: dict[str, tuple[int | None, str]] | None = None) -> str:
    """HTML for the fleet: devices, last seen, records, verdict counts, gaps; and the published
    lists (``{name: (version or None, details)}``) the devices download."""
    rows = []
    for d in devices:
        gap = (f"missing from seq {d.acked_seq + 1}; {d.held_beyond_gap} held after it"
               if d.held_beyond_gap else "none")
        stale = ""
        if d.last_seen:
            age = (now - datetime.fromisoformat(d.last_seen.replace("Z", "+00:00"))).total_seconds()
            stale = " class='stale'" if age > 6 * 3600 else ""
        rows.append(
            f"<tr{' class=gap' if d.held_beyond_gap else ''}><td>{escape(d.device_id)}</td>"
            f"<td{stale}>{escape(d.last_seen or 'never')}</td><td>{d.records}</td><td>{d.acked_seq}</td>"
            + "".join(f"<td>{d.verdicts.get(k, 0)}</td>" for k in ("PASS", "REFUSE", "CHECK"))
            + f"<td>{escape(gap)}</td></tr>")
    total = sum(d.records for d in devices)
    gaps = sum(1 for d in devices if d.held_beyond_gap)
    summary = f"{len(devices)} devices, {total} records, {gaps} with gaps"
    lists = "".join(f"<tr><td>{escape(name)}</td><td>{'-' if version is None else version}</td>"
                    f"<td>{escape(details)}</td></tr>" for name, (version, details) in (published or {}).items())
    return PAGE.format(summary=escape(summary), rows="".join(rows) or "<tr><td colspan=8>no devices</td></tr>",
                       published=lists or "<tr><td colspan=3>nothing published</td></tr>",
                       now=escape(now.isoformat(timespec="seconds")))
