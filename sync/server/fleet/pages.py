"""The commanders' pages: the fleet at a glance and one checkpoint in detail, server-rendered.

No JavaScript and nothing fetched from elsewhere: charts are inline SVG, so the pages work on an
administration network without internet. Vietnamese by default (``?lang=en`` for English), times
in Vietnam's local time, checkpoints by name, district and zone. No page shows an identity: the
recent decisions of a checkpoint carry time, decision, reason and pass kind only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from urllib.parse import urlencode

from sync.server.fleet.activity import LOCAL, Activity, DayCounts
from sync.server.fleet.health import SEVERITY, CheckpointHealth, Health
from sync.server.fleet.sharing import SharingAlarm
from sync.wire.reasons import MESSAGES, Reason

LANGS = ("vi", "en")

TEXT: dict[str, dict[str, str]] = {
    "vi": {
        "title": "Các chốt kiểm soát", "fleet": "Toàn tỉnh", "checkpoints": "chốt", "devices": "thiết bị",
        "now": "Giờ địa phương", "switch": "English", "scans_today": "Lượt quét hôm nay",
        "refusals_today": "Không được qua hôm nay", "by_hour": "Lượt quét theo giờ (hôm nay)",
        "by_day": "Lượt quét 7 ngày qua", "reasons_today": "Lý do từ chối / kiểm tra (hôm nay)",
        "reasons_week": "Lý do từ chối / kiểm tra (7 ngày)", "name": "Chốt", "district": "Quận/huyện",
        "zone": "Vùng", "health": "Tình trạng", "last_seen": "Liên lạc lần cuối", "problems": "Vấn đề",
        "never": "chưa bao giờ", "filter": "Lọc", "all": "tất cả", "sort": "Sắp xếp", "none": "không có",
        "recent": "Quyết định gần đây (không có danh tính)", "time": "Giờ", "decision": "Kết quả",
        "reason": "Lý do", "kind": "Loại thẻ", "device": "Thiết bị", "state": "Trạng thái",
        "clock": "Đồng hồ", "trusted": "tin cậy", "untrusted": "CHƯA TIN CẬY", "lists": "Danh sách",
        "backlog": "Chưa đồng bộ", "disk": "Bộ nhớ trống", "temp": "Nhiệt độ CPU", "version": "Phần mềm",
        "uptime": "Thời gian chạy", "back": "← Toàn tỉnh", "no_data": "chưa có dữ liệu",
        "place": "Vị trí", "policy": "Quy định",
        "sharing": "Nghi dùng chung thẻ (cùng một thẻ ở hai chốt quá xa nhau trong 24 giờ qua)",
        "from": "Chốt trước", "to": "Chốt sau", "distance": "Khoảng cách", "speed": "Tốc độ cần có",
    },
    "en": {
        "title": "Checkpoints", "fleet": "Whole province", "checkpoints": "checkpoints", "devices": "devices",
        "now": "Local time", "switch": "Tiếng Việt", "scans_today": "Scans today",
        "refusals_today": "Refused today", "by_hour": "Scans per hour (today)", "by_day": "Scans, last 7 days",
        "reasons_today": "Refusals / checks by reason (today)", "reasons_week": "Refusals / checks by reason (7 days)",
        "name": "Checkpoint", "district": "District", "zone": "Zone", "health": "Health", "last_seen": "Last seen",
        "problems": "Problems", "never": "never", "filter": "Filter", "all": "all", "sort": "Sort",
        "none": "none", "recent": "Recent decisions (no identities)", "time": "Time", "decision": "Decision",
        "reason": "Reason", "kind": "Pass kind", "device": "Device", "state": "State", "clock": "Clock",
        "trusted": "trusted", "untrusted": "UNTRUSTED", "lists": "Lists", "backlog": "Not yet synced",
        "disk": "Disk free", "temp": "CPU temperature", "version": "Software", "uptime": "Uptime",
        "back": "← Whole province", "no_data": "no data yet", "place": "Place", "policy": "Policy",
        "sharing": "Possible pass sharing (one pass at two checkpoints too far apart, last 24 hours)",
        "from": "First checkpoint", "to": "Then", "distance": "Distance", "speed": "Speed it would need",
    },
}

HEALTH_TEXT: dict[str, dict[Health, str]] = {
    "vi": {Health.DOWN: "Mất liên lạc", Health.NEVER_SEEN: "Chưa từng liên lạc", Health.FAULTY: "Có lỗi",
           Health.STALE_LISTS: "Danh sách cũ", Health.CLOCK_UNTRUSTED: "Đồng hồ chưa tin cậy",
           Health.OK: "Hoạt động tốt"},
    "en": {Health.DOWN: "Down", Health.NEVER_SEEN: "Never seen", Health.FAULTY: "Faulty",
           Health.STALE_LISTS: "Stale lists", Health.CLOCK_UNTRUSTED: "Clock untrusted", Health.OK: "Working"},
}
#: badge colours with white text, each at least 4.5:1 contrast (WCAG AA)
HEALTH_COLOUR = {Health.DOWN: "#b3261e", Health.NEVER_SEEN: "#5f6368", Health.FAULTY: "#a4262c",
                 Health.STALE_LISTS: "#8a5300", Health.CLOCK_UNTRUSTED: "#7a4f01", Health.OK: "#1e7b34"}
DECISION_TEXT = {"vi": {"PASS": "ĐƯỢC QUA", "REFUSE": "KHÔNG ĐƯỢC QUA", "CHECK": "KIỂM TRA"},
                 "en": {"PASS": "PASS", "REFUSE": "REFUSE", "CHECK": "CHECK"}}
DECISION_COLOUR = {"PASS": "#1e7b34", "REFUSE": "#b3261e", "CHECK": "#8a5300"}
KIND_TEXT = {
    "vi": {"resident": "Cư dân", "travel_permit": "Giấy đi đường", "cross_province_worker": "Lao động liên tỉnh",
           "student": "Học sinh, sinh viên", "goods_driver": "Lái xe chở hàng", "official": "Công vụ",
           "dcc_vaccination": "Hộ chiếu vắc-xin: tiêm chủng", "dcc_test": "Hộ chiếu vắc-xin: xét nghiệm",
           "dcc_recovery": "Hộ chiếu vắc-xin: khỏi bệnh"},
    "en": {"resident": "Resident", "travel_permit": "Travel permit", "cross_province_worker": "Cross-province worker",
           "student": "Student", "goods_driver": "Goods driver", "official": "Official duty",
           "dcc_vaccination": "EU DCC: vaccination", "dcc_test": "EU DCC: test", "dcc_recovery": "EU DCC: recovery"},
}

STYLE = """
body{font-family:system-ui,"Noto Sans",sans-serif;margin:0;color:#1b1b1b;background:#f6f7f9}
header{background:#12355b;color:#fff;padding:.8em 1.5em;display:flex;gap:2em;align-items:baseline;flex-wrap:wrap}
header h1{margin:0;font-size:1.4em}header a{color:#fff}main{padding:1em 1.5em}
.tiles{display:flex;gap:.8em;flex-wrap:wrap;margin-bottom:1em}
.tile{background:#fff;border-radius:6px;padding:.6em 1em;min-width:8em;box-shadow:0 1px 2px #0002}
.tile b{display:block;font-size:1.8em}.charts{display:flex;gap:1em;flex-wrap:wrap}
.chart{background:#fff;border-radius:6px;padding:.6em 1em;box-shadow:0 1px 2px #0002}
.chart h2{font-size:1em;margin:.2em 0 .5em}table{border-collapse:collapse;background:#fff;margin-top:1em}
th,td{padding:.35em .7em;border-bottom:1px solid #ddd;text-align:left}th{background:#e8ecf1}
td.n{text-align:right}.badge{color:#fff;border-radius:4px;padding:.1em .5em;white-space:nowrap}
form{margin:1em 0}select,button{font:inherit}
"""


def t(lang: str, key: str) -> str:
    return TEXT[lang if lang in TEXT else "vi"][key]


def reason_text(code: str, lang: str) -> str:
    """The words staff read for a reason code (the code itself if this server does not know it)."""
    try:
        vi, en = MESSAGES[Reason(code)]
    except ValueError:
        return code
    return en if lang == "en" else vi


def local(dt: datetime | None, lang: str, *, with_date: bool = True) -> str:
    if dt is None:
        return t(lang, "never")
    at = dt.astimezone(LOCAL)
    return at.strftime("%d/%m %H:%M" if with_date else "%H:%M")


def badge(health: Health, lang: str) -> str:
    return (f'<span class="badge" style="background:{HEALTH_COLOUR[health]}">'
            f'{escape(HEALTH_TEXT[lang][health])}</span>')


def _page(title: str, lang: str, now: datetime, body: str, switch_url: str) -> str:
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="60"><title>{escape(title)}</title><style>{STYLE}</style></head>'
            f'<body><header><h1>{escape(title)}</h1><span>{t(lang, "now")}: {local(now, lang)} '
            f'(Asia/Ho_Chi_Minh)</span><a href="{escape(switch_url)}">{t(lang, "switch")}</a></header>'
            f"<main>{body}</main></body></html>")


def bar_chart(values: Iterable[tuple[str, int]], *, width: int = 520, height: int = 160,
              colour: str = "#12355b", label: str = "") -> str:
    """Vertical bars with their labels under them and the value over each non-zero bar (inline SVG)."""
    items = list(values)
    if not items:
        return ""
    top = max(v for _, v in items) or 1
    slot = width / len(items)
    bars = []
    for i, (name, value) in enumerate(items):
        h = round((height - 34) * value / top)
        x = round(i * slot + slot * 0.1, 1)
        bars.append(f'<rect x="{x}" y="{height - 18 - h}" width="{round(slot * 0.8, 1)}" height="{h}" '
                    f'fill="{colour}"><title>{escape(name)}: {value}</title></rect>'
                    f'<text x="{round(x + slot * 0.4, 1)}" y="{height - 4}" font-size="10" '
                    f'text-anchor="middle">{escape(name)}</text>')
        if value:
            bars.append(f'<text x="{round(x + slot * 0.4, 1)}" y="{height - 21 - h}" font-size="10" '
                        f'text-anchor="middle">{value}</text>')
    return (f'<svg role="img" aria-label="{escape(label)}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">{"".join(bars)}</svg>')


def reason_bars(reasons: Mapping[str, int], lang: str, *, width: int = 520) -> str:
    """Horizontal bars, one per reason, most frequent first."""
    if not reasons:
        return f"<p>{t(lang, 'none')}</p>"
    items = list(reasons.items())[:10]
    top = max(v for _, v in items) or 1
    rows = []
    for i, (code, value) in enumerate(items):
        w = round((width - 260) * value / top)
        y = i * 22
        rows.append(f'<text x="0" y="{y + 14}" font-size="12">{escape(reason_text(code, lang)[:40])}</text>'
                    f'<rect x="250" y="{y + 3}" width="{w}" height="15" fill="#b3261e"/>'
                    f'<text x="{254 + w}" y="{y + 15}" font-size="11">{value}</text>')
    return (f'<svg role="img" width="{width}" height="{len(items) * 22 + 4}" '
            f'viewBox="0 0 {width} {len(items) * 22 + 4}">{"".join(rows)}</svg>')


def charts(act: Activity, lang: str) -> str:
    hours = bar_chart(((f"{h}", n) for h, n in enumerate(act.by_hour)), label=t(lang, "by_hour"))
    days = bar_chart(((d.strftime("%d/%m"), n) for d, n in act.by_day), width=360, label=t(lang, "by_day"))
    return (f'<div class="charts"><div class="chart"><h2>{t(lang, "by_hour")}</h2>{hours}</div>'
            f'<div class="chart"><h2>{t(lang, "by_day")}</h2>{days}</div>'
            f'<div class="chart"><h2>{t(lang, "reasons_today")}</h2>{reason_bars(act.reasons_today, lang)}</div>'
            f'<div class="chart"><h2>{t(lang, "reasons_week")}</h2>{reason_bars(act.reasons_week, lang)}</div>'
            "</div>")


@dataclass(frozen=True)
class FleetFilter:
    """What the commander asked to see (from the query string; unknown values are ignored)."""

    district: str = ""
    zone: str = ""
    health: str = ""
    sort: str = "health"  # health | name | district | zone | last_seen | scans

    def keep(self, c: CheckpointHealth) -> bool:
        return ((not self.district or c.checkpoint.district == self.district)
                and (not self.zone or c.checkpoint.zone == self.zone)
                and (not self.health or c.health.value == self.health))


@dataclass(frozen=True)
class FleetPage:
    checkpoints: list[CheckpointHealth]
    activity: Activity
    per_checkpoint: dict[str, DayCounts]
    now: datetime
    lang: str = "vi"
    chosen: FleetFilter = field(default_factory=FleetFilter)
    sharing: list[SharingAlarm] = field(default_factory=list)


def sharing_table(page: FleetPage) -> str:
    """The pass-sharing alarms: places and times only, never the holder."""
    lang = page.lang
    if not page.sharing:
        return ""
    names = {c.checkpoint.checkpoint_id: c.checkpoint.name for c in page.checkpoints}
    rows = "".join(
        f"<tr><td>{escape(names.get(a.first_checkpoint, a.first_checkpoint))} · {local(a.first_at, lang)}</td>"
        f"<td>{escape(names.get(a.second_checkpoint, a.second_checkpoint))} · {local(a.second_at, lang)}</td>"
        f'<td class="n">{a.distance_km:,.0f} km</td><td class="n">{a.speed_kmh:,.0f} km/h</td></tr>'
        for a in page.sharing[:50])
    return (f'<h2>{t(lang, "sharing")}</h2><table><thead><tr><th>{t(lang, "from")}</th><th>{t(lang, "to")}</th>'
            f'<th>{t(lang, "distance")}</th><th>{t(lang, "speed")}</th></tr></thead><tbody>{rows}</tbody></table>')


def _sorted(rows: list[CheckpointHealth], page: FleetPage) -> list[CheckpointHealth]:
    key = page.chosen.sort
    scans = {cid: a.scans_today for cid, a in page.per_checkpoint.items()}
    if key == "name":
        return sorted(rows, key=lambda c: c.checkpoint.name.lower())
    if key in ("district", "zone"):
        return sorted(rows, key=lambda c: (getattr(c.checkpoint, key).lower(), c.checkpoint.name.lower()))
    if key == "last_seen":
        return sorted(rows, key=lambda c: c.last_seen.timestamp() if c.last_seen else 0.0)
    if key == "scans":
        return sorted(rows, key=lambda c: -scans.get(c.checkpoint.checkpoint_id, 0))
    return sorted(rows, key=lambda c: (SEVERITY[c.health], c.checkpoint.name.lower()))


def _select(name: str, label: str, options: Iterable[tuple[str, str]], chosen: str, lang: str) -> str:
    opts = [f'<option value="">{t(lang, "all")}</option>'] + [
        f'<option value="{escape(v)}"{" selected" if v == chosen else ""}>{escape(text)}</option>'
        for v, text in options]
    return f'<label>{escape(label)} <select name="{name}">{"".join(opts)}</select></label> '


def render_fleet(page: FleetPage) -> str:
    lang = page.lang
    counts = {h: sum(1 for c in page.checkpoints if c.health is h) for h in Health}
    tiles = [f'<div class="tile">{t(lang, "checkpoints").capitalize()}<b>{len(page.checkpoints)}</b></div>',
             f'<div class="tile">{t(lang, "scans_today")}<b>{page.activity.scans_today}</b></div>',
             f'<div class="tile">{t(lang, "refusals_today")}<b>{page.activity.refusals_today}</b></div>']
    tiles += [f'<div class="tile">{badge(h, lang)}<b>{counts[h]}</b></div>' for h in Health]
    districts = sorted({c.checkpoint.district for c in page.checkpoints if c.checkpoint.district})
    zones = sorted({c.checkpoint.zone for c in page.checkpoints if c.checkpoint.zone})
    chosen = page.chosen
    sort_names = {"health": t(lang, "health"), "name": t(lang, "name"), "district": t(lang, "district"),
                  "zone": t(lang, "zone"), "last_seen": t(lang, "last_seen"), "scans": t(lang, "scans_today")}
    form = (f'<form method="get"><input type="hidden" name="lang" value="{lang}">'
            + _select("district", t(lang, "district"), ((d, d) for d in districts), chosen.district, lang)
            + _select("zone", t(lang, "zone"), ((z, z) for z in zones), chosen.zone, lang)
            + _select("health", t(lang, "health"), ((h.value, HEALTH_TEXT[lang][h]) for h in Health),
                      chosen.health, lang)
            + f'<label>{t(lang, "sort")} <select name="sort">'
            + "".join(f'<option value="{k}"{" selected" if k == chosen.sort else ""}>{escape(v)}</option>'
                      for k, v in sort_names.items())
            + f'</select></label> <button>{t(lang, "filter")}</button></form>')
    rows = []
    for c in _sorted([c for c in page.checkpoints if chosen.keep(c)], page):
        cp = c.checkpoint
        act = page.per_checkpoint.get(cp.checkpoint_id)
        problems = ", ".join(HEALTH_TEXT[lang][p] for p in c.problems if p is not Health.OK) or t(lang, "none")
        rows.append(
            f'<tr><td><a href="/checkpoints/{escape(cp.checkpoint_id)}?lang={lang}">{escape(cp.name)}</a>'
            f'<br><small>{escape(cp.checkpoint_id)}</small></td><td>{escape(cp.district)}</td>'
            f"<td>{escape(cp.zone)}</td><td>{badge(c.health, lang)}</td><td>{local(c.last_seen, lang)}</td>"
            f'<td class="n">{act.scans_today if act else 0}</td><td class="n">{act.refusals_today if act else 0}</td>'
            f"<td>{escape(problems)}</td></tr>")
    table = (f'<table><thead><tr><th>{t(lang, "name")}</th><th>{t(lang, "district")}</th><th>{t(lang, "zone")}</th>'
             f'<th>{t(lang, "health")}</th><th>{t(lang, "last_seen")}</th><th>{t(lang, "scans_today")}</th>'
             f'<th>{t(lang, "refusals_today")}</th><th>{t(lang, "problems")}</th></tr></thead>'
             f'<tbody>{"".join(rows) or "<tr><td colspan=8>" + t(lang, "no_data") + "</td></tr>"}</tbody></table>')
    other = "en" if lang == "vi" else "vi"
    switch = "?" + urlencode({"lang": other, "district": chosen.district, "zone": chosen.zone,
                              "health": chosen.health, "sort": chosen.sort})
    body = ('<div class="tiles">' + "".join(tiles) + "</div>" + charts(page.activity, lang) + sharing_table(page)
            + form + table)
    return _page(f'{t(lang, "title")} — {t(lang, "fleet")}', lang, page.now, body, switch)


@dataclass(frozen=True)
class RecentDecision:
    """One recent decision as a commander may see it: no holder, no pass id."""

    at: datetime | None
    device_id: str
    decision: str
    reason: str
    kind: str | None


@dataclass(frozen=True)
class CheckpointPage:
    health: CheckpointHealth
    activity: Activity
    recent: list[RecentDecision]
    now: datetime
    lang: str = "vi"


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def render_checkpoint(page: CheckpointPage) -> str:
    lang, c = page.lang, page.health
    cp = c.checkpoint
    place = ", ".join(p for p in (cp.district, cp.province) if p)
    where = (f"{cp.latitude:.5f}, {cp.longitude:.5f}" if cp.latitude is not None and cp.longitude is not None
             else "—")
    facts = (f'<div class="tiles"><div class="tile">{t(lang, "health")}<b>{badge(c.health, lang)}</b></div>'
             f'<div class="tile">{t(lang, "place")}<b style="font-size:1em">{escape(place)}<br>{where}</b></div>'
             f'<div class="tile">{t(lang, "zone")}<b style="font-size:1em">{escape(cp.zone or "—")}</b></div>'
             f'<div class="tile">{t(lang, "policy")}<b style="font-size:1em">{escape(cp.policy or "—")}</b></div>'
             f'<div class="tile">{t(lang, "scans_today")}<b>{page.activity.scans_today}</b></div>'
             f'<div class="tile">{t(lang, "refusals_today")}<b>{page.activity.refusals_today}</b></div></div>')
    devices = []
    for d in c.devices:
        hb = d.heartbeat
        if hb is None:
            devices.append(f"<tr><td>{escape(d.device_id)}</td><td>{badge(d.health, lang)}</td>"
                           f'<td colspan="8">{t(lang, "never")}</td></tr>')
            continue
        lists = f"trust {hb.trust_version or '—'} · policy {hb.policy_version or '—'} · risk {hb.risk_version or '—'}"
        devices.append(
            f"<tr><td>{escape(d.device_id)}</td><td>{badge(d.health, lang)}</td><td>{local(d.last_seen, lang)}</td>"
            f"<td>{escape(hb.state)}{': ' + escape(', '.join(hb.faults)) if hb.faults else ''}</td>"
            f'<td>{t(lang, "trusted") if hb.clock_trusted else t(lang, "untrusted")}</td><td>{escape(lists)}</td>'
            f'<td class="n">{hb.backlog}</td>'
            f'<td class="n">{"—" if hb.disk_free_mb is None else f"{hb.disk_free_mb:,.0f} MB"}</td>'
            f'<td class="n">{"—" if hb.cpu_temp_c is None else f"{hb.cpu_temp_c:.0f} °C"}</td>'
            f"<td>{escape(hb.software_version)} · {_minutes(hb.uptime_s)}</td></tr>")
    device_table = (f'<table><thead><tr><th>{t(lang, "device")}</th><th>{t(lang, "health")}</th>'
                    f'<th>{t(lang, "last_seen")}</th><th>{t(lang, "state")}</th><th>{t(lang, "clock")}</th>'
                    f'<th>{t(lang, "lists")}</th><th>{t(lang, "backlog")}</th><th>{t(lang, "disk")}</th>'
                    f'<th>{t(lang, "temp")}</th><th>{t(lang, "version")} · {t(lang, "uptime")}</th></tr></thead>'
                    f'<tbody>{"".join(devices)}</tbody></table>')
    recent = "".join(
        f'<tr><td>{local(r.at, lang)}</td><td>{escape(r.device_id)}</td>'
        f'<td><span class="badge" style="background:{DECISION_COLOUR.get(r.decision, "#5f6368")}">'
        f'{escape(DECISION_TEXT[lang].get(r.decision, r.decision))}</span></td>'
        f"<td>{escape(reason_text(r.reason, lang))}</td>"
        f"<td>{escape(KIND_TEXT[lang].get(r.kind or '', r.kind or '—'))}</td></tr>" for r in page.recent)
    recent_table = (f'<h2>{t(lang, "recent")}</h2><table><thead><tr><th>{t(lang, "time")}</th>'
                    f'<th>{t(lang, "device")}</th><th>{t(lang, "decision")}</th><th>{t(lang, "reason")}</th>'
                    f'<th>{t(lang, "kind")}</th></tr></thead>'
                    f'<tbody>{recent or "<tr><td colspan=5>" + t(lang, "no_data") + "</td></tr>"}</tbody></table>')
    body = (f'<p><a href="/?lang={lang}">{t(lang, "back")}</a></p>{facts}{charts(page.activity, lang)}'
            f"{device_table}{recent_table}")
    other = "en" if lang == "vi" else "vi"
    return _page(f"{cp.name} — {cp.checkpoint_id}", lang, page.now, body, f"?lang={other}")
