"""The fleet dashboard, login and audit pages: server-rendered HTML, no JavaScript.

Every form that changes something carries the session's CSRF token as a hidden field."""

from __future__ import annotations

from datetime import datetime
from html import escape

from sync.server.security_store import AuditEntry, Revocation
from sync.server.storage import DeviceSummary

_STYLE = """<style>
body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .7em;text-align:right}}th{{background:#eee}}
td:first-child,td:nth-last-child(-n+3){{text-align:left}}h2{{margin-top:1.5em}}.gap{{background:#fdd}}.stale{{color:#a60}}
.revoked{{color:#999;text-decoration:line-through}}form.inline{{display:inline}}
</style>"""

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<title>Checkpoint fleet</title>""" + _STYLE + """</head><body>{who}<h1>Checkpoint fleet</h1><p>{summary}</p>
<table><thead><tr><th>Device</th><th>Last seen (UTC)</th><th>Records</th><th>Acked seq</th>
<th>PASS</th><th>REFUSE</th><th>CHECK</th><th>Gaps</th><th>Lost for good</th><th>Chain</th>{action_head}</tr></thead>
<tbody>{rows}</tbody></table>
{enroll}<h2>Published lists</h2><table><thead><tr><th>List</th><th>Version</th><th>Details</th></tr></thead>
<tbody>{published}</tbody></table>
<p><small>Rendered {now}. JSON: <a href="/admin/api/fleet">/admin/api/fleet</a></small></p></body></html>"""

LOGIN = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Checkpoint: log in</title>
""" + _STYLE + """</head><body><h1>Checkpoint central server</h1><p>{message}</p>
<form method="post" action="/login"><p><label>User <input name="username" autocomplete="username" required></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p>
<p><button>Log in</button></p></form></body></html>"""

AUDIT = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Checkpoint audit trail</title>
""" + _STYLE + """</head><body><p><a href="/">fleet</a></p><h1>Audit trail</h1>
<table><thead><tr><th>#</th><th>Time (UTC)</th><th>Who</th><th>Action</th><th>Target</th><th>Outcome</th>
<th>Client</th><th>Detail</th></tr></thead><tbody>{rows}</tbody></table></body></html>"""


def _form(action: str, csrf_token: str, label: str, extra: str = "") -> str:
    return (f"<form class=inline method=post action='{escape(action)}'>"
            f"<input type=hidden name=csrf_token value='{escape(csrf_token)}'>{extra}<button>{label}</button></form>")


TOKEN = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Checkpoint: enrollment token</title>
""" + _STYLE + """</head><body><p><a href="/">fleet</a></p><h1>Enrollment token for {device_id}</h1>
<p>Shown once, valid {days} days, single use:</p><pre>{token}</pre></body></html>"""


def render_token(device_id: str, token: str, ttl_s: int) -> str:
    return TOKEN.format(device_id=escape(device_id), token=escape(token), days=round(ttl_s / 86400, 1))


def render_login(message: str = "Log in to see the fleet.") -> str:
    return LOGIN.format(message=escape(message))


def render_audit(entries: list[AuditEntry]) -> str:
    rows = "".join(f"<tr><td>{e.id}</td><td>{escape(e.at)}</td><td>{escape(e.actor)}</td><td>{escape(e.action)}</td>"
                   f"<td>{escape(e.target)}</td><td>{escape(e.outcome)}</td><td>{escape(e.client)}</td>"
                   f"<td>{escape(e.detail)}</td></tr>" for e in entries)
    return AUDIT.format(rows=rows or "<tr><td colspan=8>nothing yet</td></tr>")


def chain_text(d: DeviceSummary) -> str:
    """The device's chain epochs: one line per fork, open ones with what the operator does."""
    if not d.forks:
        return "one chain"
    parts = []
    for f in d.forks:
        state = (f"resolved by {f.resolved_by}" if f.resolved_at else
                 f"OPEN: log went back (restored card?); review, then checkpoint server resolve-fork "
                 f"--device-id {d.device_id}")
        parts.append(f"epoch {f.epoch} from seq {f.base_seq + 1} ({f.started_at}): {state}")
    return "; ".join(parts)


def lost_text(d: DeviceSummary) -> str:
    """Records the device pruned before the server held them (a server restored from a backup)."""
    return "; ".join(f"seq {r.first_seq}-{r.last_seq}: {r.missing} pruned on the device before upload"
                     for r in d.lost_ranges) or "none"


def render_dashboard(devices: list[DeviceSummary], now: datetime,
                     published: dict[str, tuple[int | None, str]] | None = None, *, user: str = "",
                     role: str = "", csrf_token: str = "", may_operate: bool = False, may_audit: bool = False,
                     revoked: dict[str, Revocation] | None = None) -> str:
    """HTML for the fleet: devices, last seen, records, verdict counts, gaps; and the published
    lists (``{name: (version or None, details)}``) the devices download. An operator also gets a
    revoke / re-admit button per device."""
    revoked = revoked or {}
    rows = []
    for d in devices:
        action = ""
        if may_operate:
            base = f"/devices/{d.device_id}"
            action = ("<td>" + (_form(f"{base}/readmit", csrf_token, "Re-admit") if d.device_id in revoked else
                                _form(f"{base}/revoke", csrf_token, "Revoke",
                                      "<input name=reason placeholder='reason' required> ")) + "</td>")
        gap = (f"missing from seq {d.acked_seq + 1}; {d.held_beyond_gap} held after it"
               if d.held_beyond_gap else "none")
        stale = ""
        if d.last_seen:
            age = (now - datetime.fromisoformat(d.last_seen.replace("Z", "+00:00"))).total_seconds()
            stale = " class='stale'" if age > 6 * 3600 else ""
        flagged = d.held_beyond_gap or d.lost_for_good or d.open_forks
        rows.append(
            f"<tr{' class=gap' if flagged else ''}>"
            f"<td{' class=revoked' if d.device_id in revoked else ''}>{escape(d.device_id)}</td>"
            f"<td{stale}>{escape(d.last_seen or 'never')}</td><td>{d.records}</td><td>{d.acked_seq}</td>"
            + "".join(f"<td>{d.verdicts.get(k, 0)}</td>" for k in ("PASS", "REFUSE", "CHECK"))
            + f"<td>{escape(gap)}</td><td>{escape(lost_text(d))}</td><td>{escape(chain_text(d))}</td>{action}</tr>")
    total = sum(d.records for d in devices)
    gaps = sum(1 for d in devices if d.held_beyond_gap)
    lost_total = sum(d.lost_for_good for d in devices)
    forked = sum(1 for d in devices if d.open_forks)
    summary = (f"{len(devices)} devices, {total} records, {gaps} with gaps, {lost_total} records lost for good, "
               f"{forked} with an open chain fork")
    lists = "".join(f"<tr><td>{escape(name)}</td><td>{'-' if version is None else version}</td>"
                    f"<td>{escape(details)}</td></tr>" for name, (version, details) in (published or {}).items())
    who = ""
    if user:
        who = (f"<p style='float:right'>{escape(user)} ({escape(role)}) "
               + ("<a href='/audit'>audit trail</a> " if may_audit else "")
               + _form("/logout", csrf_token, "Log out") + "</p>")
    enroll = ""
    if may_operate:
        enroll = ("<h2>Enroll a device</h2><p>A one-time token for a device id (for its "
                  "<code>/etc/checkpoint/enroll.token</code>; shown once): "
                  + _form("/tokens", csrf_token, "Make token",
                          "<input name=device_id placeholder='HN-CP-001' required> "
                          "<label><input type=checkbox name=replace_key value=1> may replace its key</label> ")
                  + "</p>")
    return PAGE.format(who=who, enroll=enroll, action_head="<th>Access</th>" if may_operate else "",
                       summary=escape(summary),
                       rows="".join(rows) or "<tr><td colspan=10>no devices</td></tr>",
                       published=lists or "<tr><td colspan=3>nothing published</td></tr>",
                       now=escape(now.isoformat(timespec="seconds")))
