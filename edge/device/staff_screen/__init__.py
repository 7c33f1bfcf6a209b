"""Staff screen: a local page on loopback that a kiosk browser shows full-screen.

It runs as its own process (``checkpoint screen``) and reads the status file the daemon replaces
every half second, so it fails safe: when the daemon stops writing (crashed, hung, stopped) the
page turns grey "KHÔNG HOẠT ĐỘNG / NOT WORKING" within about a second; the page itself also goes
grey when it cannot reach this server. It never says "ready" while the device is not enrolled,
has no lists or no picture: it lists what is wrong. ``view()`` is the whole decision, tested
without a browser; the page only paints what ``/screen.json`` says.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, tzinfo
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

from edge.device.staff_screen.palette import PALETTE, Colours
from edge.device.status import StatusFile, StatusSnapshot, VerdictSummary
from edge.passes.credential import PassKind
from edge.scan.light.signals import FAULTS, Fault
from edge.verdict import MESSAGES, Reason

log = logging.getLogger(__name__)

#: the daemon writes every 0.5 s; older than this and the screen calls it silent
SILENT_AFTER_S = 1.0
#: no picture for this long and the screen stops saying "ready" (the lamp fault follows later)
NO_PICTURE_AFTER_S = 3.0

TITLES = {
    "vi": {"PASS": "ĐƯỢC QUA", "REFUSE": "KHÔNG ĐƯỢC QUA", "CHECK": "KIỂM TRA THỦ CÔNG", "ready": "SẴN SÀNG",
           "not_ready": "CHƯA SẴN SÀNG", "not_working": "KHÔNG HOẠT ĐỘNG"},
    "en": {"PASS": "PASS", "REFUSE": "REFUSE", "CHECK": "CHECK BY HAND", "ready": "READY",
           "not_ready": "NOT READY", "not_working": "NOT WORKING"},
}
LABELS = {
    "vi": {"hint": "Đưa mã QR vào trước camera", "passed": "Được qua", "refused": "Không qua",
           "checked": "Kiểm tra", "today": "Hôm nay", "recent": "Gần đây",
           "silent": "Kiểm tra thủ công mọi người và báo kỹ thuật",
           "not_ready": "Kiểm tra thủ công mọi người cho đến khi sẵn sàng"},
    "en": {"hint": "Hold the QR code up to the camera", "passed": "Passed", "refused": "Refused",
           "checked": "Checked by hand", "today": "Today", "recent": "Recent",
           "silent": "Check everyone by hand and call the technician",
           "not_ready": "Check everyone by hand until it is ready"},
}
#: every pass kind the readers produce (``PassKind``), in Vietnamese and English
KINDS: dict[str, dict[str, str]] = {
    "vi": {PassKind.RESIDENT: "Cư dân", PassKind.TRAVEL_PERMIT: "Giấy đi đường",
           PassKind.CROSS_PROVINCE_WORKER: "Lao động liên tỉnh", PassKind.STUDENT: "Học sinh, sinh viên",
           PassKind.GOODS_DRIVER: "Lái xe chở hàng", PassKind.OFFICIAL: "Công vụ",
           PassKind.DCC_VACCINATION: "Chứng nhận EU: tiêm chủng", PassKind.DCC_TEST: "Chứng nhận EU: xét nghiệm",
           PassKind.DCC_RECOVERY: "Chứng nhận EU: khỏi bệnh"},
    "en": {PassKind.RESIDENT: "Resident", PassKind.TRAVEL_PERMIT: "Travel permit",
           PassKind.CROSS_PROVINCE_WORKER: "Cross-province worker", PassKind.STUDENT: "Student",
           PassKind.GOODS_DRIVER: "Goods driver", PassKind.OFFICIAL: "Official duty",
           PassKind.DCC_VACCINATION: "EU certificate: vaccination", PassKind.DCC_TEST: "EU certificate: test",
           PassKind.DCC_RECOVERY: "EU certificate: recovery"},
}
#: why the screen is not "ready": (Vietnamese, English)
PROBLEMS = {
    "starting": ("Phần mềm đang khởi động", "The software is starting"),
    "camera_lost": ("Mất camera hoặc đầu đọc: kiểm tra cáp", "Camera or scanner lost: check the cable"),
    "no_picture": ("Camera chưa gửi hình", "No picture from the camera"),
    "not_enrolled": ("Thiết bị chưa đăng ký với máy chủ", "Device not enrolled with the server"),
    "no_lists": ("Chưa có danh sách tin cậy và quy định", "No trust list or policy installed"),
    "no_risk_list": ("Chưa có danh sách nguy cơ", "No risk list installed"),
    "list_damaged": ("Danh sách trên thẻ nhớ bị hỏng hoặc bị sửa: chờ đồng bộ",
                     "A list on the card is damaged or edited: waiting for a sync"),
}


@dataclass(frozen=True)
class ScreenSettings:
    """What the screen takes from the configuration."""

    language: str = "vi"
    checkpoint_name: str = ""
    timezone: tzinfo = UTC
    #: a verdict stays up this long unless the next person comes first; 0 = until the next person
    hold_s: float = 15.0
    recent: int = 5

    @classmethod
    def from_config(cls, config) -> ScreenSettings:
        status = config.status
        return cls(language=status.language, checkpoint_name=status.checkpoint_name or config.device.checkpoint,
                   timezone=status.zone(), hold_s=status.screen_hold_s)


@dataclass(frozen=True)
class RecentRow:
    time: str
    verdict: str
    title: str
    reason: str
    kind: str
    colours: Colours


@dataclass(frozen=True)
class ScreenView:
    """Everything the page paints, already translated and coloured."""

    mode: str  # "not_working" | "not_ready" | "verdict" | "ready"
    verdict: str | None
    title: str
    subtitle: str
    message: str
    kind: str
    colours: Colours
    problems: tuple[str, ...] = ()
    faults: tuple[str, ...] = ()
    checkpoint: str = ""
    clock: str = ""
    date: str = ""
    counts: tuple[tuple[str, int], ...] = ()
    recent: tuple[RecentRow, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    language: str = "vi"

    def to_json(self) -> dict:
        return asdict(self)


def _lang(language: str) -> str:
    return "en" if language == "en" else "vi"


def reason_text(reason: str, lang: str, summary: VerdictSummary | None = None) -> str:
    """A reason code in words; a code this build does not know falls back to the daemon's message."""
    try:
        return MESSAGES[Reason(reason)][0 if lang == "vi" else 1]
    except ValueError:
        if summary is not None:
            return (summary.message_vi if lang == "vi" else summary.message_en) or reason
        return reason


def kind_text(kind: str | None, lang: str) -> str:
    return KINDS[lang].get(kind, kind) if kind else ""


def fault_text(fault: str, lang: str) -> str:
    try:
        return FAULTS[Fault(fault)].means[0 if lang == "vi" else 1]
    except ValueError:
        return fault


def readiness_problems(snapshot: StatusSnapshot) -> list[str]:
    """Why the device must not say "ready" (problem keys of :data:`PROBLEMS`), most basic first."""
    problems = []
    if snapshot.state == "camera_lost" or Fault.CAMERA_LOST.value in snapshot.faults:
        problems.append("camera_lost")
    elif snapshot.state != "running":
        problems.append("starting")
    elif snapshot.last_frame_age_s is None or snapshot.last_frame_age_s > NO_PICTURE_AFTER_S:
        problems.append("no_picture")
    device = snapshot.device
    if device.enrolled is not True:
        problems.append("not_enrolled")
    if device.policy_version is None:
        problems.append("no_lists")
    if device.risk_version is None or device.risk_published_at is None:  # an empty store has no publication
        problems.append("no_risk_list")
    if Fault.LIST_DAMAGED.value in snapshot.faults:
        problems.append("list_damaged")
    return problems


def _local(iso: str, zone: tzinfo, fmt: str) -> str:
    try:
        at = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return ""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(zone).strftime(fmt)


def not_working_view(settings: ScreenSettings) -> ScreenView:
    """Grey, in both languages: the daemon is silent (or the status cannot be read)."""
    lang = _lang(settings.language)
    other = "en" if lang == "vi" else "vi"
    return ScreenView(mode="not_working", verdict=None, title=TITLES[lang]["not_working"],
                      subtitle=TITLES[other]["not_working"], message=LABELS[lang]["silent"], kind="",
                      colours=PALETTE["not_working"], checkpoint=settings.checkpoint_name,
                      labels=LABELS[lang], language=lang)


def view(snapshot: StatusSnapshot | None, silent_for_s: float | None, settings: ScreenSettings) -> ScreenView:
    """What the screen shows now, from the daemon's last snapshot and how long it has been silent."""
    if snapshot is None or silent_for_s is None or silent_for_s > SILENT_AFTER_S \
            or snapshot.state in ("stopped", "failed"):
        return not_working_view(settings)
    lang = _lang(settings.language)
    i = 0 if lang == "vi" else 1
    zone = settings.timezone
    last = snapshot.last_verdicts[0] if snapshot.last_verdicts else None
    age = snapshot.last_decision_age_s
    held = last is not None and age is not None and (settings.hold_s == 0 or age <= settings.hold_s)
    problems = readiness_problems(snapshot)
    common = {
        "problems": tuple(PROBLEMS[p][i] for p in problems),
        "faults": tuple(fault_text(f, lang) for f in snapshot.faults),
        "checkpoint": settings.checkpoint_name, "clock": _local(snapshot.updated_at, zone, "%H:%M"),
        "date": _local(snapshot.updated_at, zone, "%d/%m/%Y"),
        "counts": (("passed", snapshot.today.passed), ("refused", snapshot.today.refused),
                   ("checked", snapshot.today.checked)),
        "recent": tuple(RecentRow(_local(v.at, zone, "%H:%M:%S"), v.verdict, TITLES[lang].get(v.verdict, v.verdict),
                                  reason_text(v.reason, lang, v), kind_text(v.kind, lang),
                                  PALETTE.get(v.verdict, PALETTE["not_ready"]))
                        for v in snapshot.last_verdicts[:settings.recent]),
        "labels": LABELS[lang], "language": lang,
    }
    if held:
        return ScreenView(mode="verdict", verdict=last.verdict, title=TITLES[lang].get(last.verdict, last.verdict),
                          subtitle="", message=reason_text(last.reason, lang, last), kind=kind_text(last.kind, lang),
                          colours=PALETTE.get(last.verdict, PALETTE["CHECK"]), **common)
    if problems:
        return ScreenView(mode="not_ready", verdict=None, title=TITLES[lang]["not_ready"], subtitle="",
                          message=LABELS[lang]["not_ready"], kind="", colours=PALETTE["not_ready"], **common)
    return ScreenView(mode="ready", verdict=None, title=TITLES[lang]["ready"], subtitle="",
                      message=LABELS[lang]["hint"], kind="", colours=PALETTE["ready"], **common)


class StatusWatch:
    """Reads the status file and measures how long the daemon has been silent, on the monotonic clock.

    A new write is a new file (atomic rename: new inode), so "changed" needs no wall clock; a wall
    clock stepped backwards cannot make a dead daemon look alive.
    """

    def __init__(self, status: StatusFile, *, monotonic: Callable[[], float] = time.monotonic):
        self.status, self._monotonic = status, monotonic
        self._seen: tuple[int, int] | None = None
        self._changed_at = 0.0

    def read(self) -> tuple[StatusSnapshot | None, float | None]:
        """(snapshot, seconds since the daemon last wrote it); (None, None) when there is none."""
        try:
            st = os.stat(self.status.path)
            snapshot = self.status.read()
        except (OSError, ValueError) as exc:
            log.debug("event=staff_screen_no_status error=%r", exc)
            return None, None
        now = self._monotonic()
        key = (st.st_ino, st.st_mtime_ns)
        if key != self._seen:
            first = self._seen is None
            self._seen = key
            # the first time, trust the file's age (bounded at 0); afterwards only our own clock
            self._changed_at = now - max(0.0, time.time() - st.st_mtime) if first else now
        return snapshot, now - self._changed_at


class StaffScreen:
    """HTTP server in a background thread on ``host:port`` (loopback only by default)."""

    def __init__(self, status: StatusFile, settings: ScreenSettings | None = None, *, port: int = 8088,
                 host: str = "127.0.0.1", monotonic: Callable[[], float] = time.monotonic):
        self.watch = StatusWatch(status, monotonic=monotonic)
        self.settings = settings or ScreenSettings()
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def current(self) -> ScreenView:
        """The view for this instant (never raises: a broken status is NOT WORKING)."""
        try:
            with self._lock:
                snapshot, silent = self.watch.read()
            return view(snapshot, silent, self.settings)
        except Exception as exc:
            log.warning("event=staff_screen_view_failed error=%r action=showing NOT WORKING", exc)
            return not_working_view(self.settings)

    def start(self) -> None:
        """Bind and serve in a background thread (port 0 picks a free port; see ``.port``)."""
        page = resources.files(__package__).joinpath("index.html").read_bytes()
        screen = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", page)
                elif self.path.split("?")[0] == "/screen.json":
                    body = json.dumps(screen.current().to_json(), ensure_ascii=False)
                    self._send(200, "application/json; charset=utf-8", body.encode("utf-8"))
                else:
                    self._send(404, "text/plain", b"not found")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # no access log per poll
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="staff-screen", daemon=True)
        self._thread.start()
        log.info("event=staff_screen_started url=%s", self.url)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
