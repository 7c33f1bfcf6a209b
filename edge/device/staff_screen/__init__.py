"""Staff screen: a local page on loopback that a kiosk browser shows full-screen.

The verdict in large type and colour, its reason in Vietnamese (English by config), the pass kind
and the current faults. The page polls ``/screen.json`` twice a second; ``view()`` builds that JSON
from the daemon's snapshot, so the logic is tested without a browser.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

from edge.device.status import StatusSnapshot
from edge.passes.credential import PassKind

log = logging.getLogger(__name__)

COLOURS = {"PASS": "#0a8f2a", "REFUSE": "#c4161c", "CHECK": "#f0a500", None: "#2b2b2b"}
TITLES = {"vi": {"PASS": "ĐƯỢC QUA", "REFUSE": "KHÔNG ĐƯỢC QUA", "CHECK": "KIỂM TRA", None: "SẴN SÀNG"},
          "en": {"PASS": "PASS", "REFUSE": "REFUSE", "CHECK": "CHECK", None: "READY"}}
IDLE_HINT = {"vi": "Đưa mã QR vào trước camera", "en": "Hold the QR code up to the camera"}
#: Every pass kind the readers produce (``PassKind`` values), in Vietnamese and English.
KINDS: dict[str, dict[str, str]] = {
    "vi": {PassKind.RESIDENT: "Cư dân", PassKind.TRAVEL_PERMIT: "Giấy đi đường",
           PassKind.CROSS_PROVINCE_WORKER: "Lao động liên tỉnh", PassKind.STUDENT: "Học sinh, sinh viên",
           PassKind.GOODS_DRIVER: "Lái xe chở hàng", PassKind.OFFICIAL: "Công vụ",
           PassKind.DCC_VACCINATION: "Hộ chiếu vắc-xin: tiêm chủng", PassKind.DCC_TEST: "Hộ chiếu vắc-xin: xét nghiệm",
           PassKind.DCC_RECOVERY: "Hộ chiếu vắc-xin: khỏi bệnh"},
    "en": {PassKind.RESIDENT: "Resident", PassKind.TRAVEL_PERMIT: "Travel permit",
           PassKind.CROSS_PROVINCE_WORKER: "Cross-province worker", PassKind.STUDENT: "Student",
           PassKind.GOODS_DRIVER: "Goods driver", PassKind.OFFICIAL: "Official duty",
           PassKind.DCC_VACCINATION: "EU DCC: vaccination", PassKind.DCC_TEST: "EU DCC: test",
           PassKind.DCC_RECOVERY: "EU DCC: recovery"},
}
FAULTS = {
    "camera_lost": ("Mất camera: kiểm tra cáp", "Camera lost: check the cable"),
    "clock_untrusted": ("Đồng hồ chưa tin cậy", "Clock not trusted"),
    "list_damaged": ("Danh sách trên thẻ nhớ bị hỏng hoặc bị sửa: chờ đồng bộ",
                     "A list on the card is damaged or edited: waiting for a sync"),
    "risk_stale": ("Danh sách nguy cơ đã cũ", "Risk list is stale"),
    "disk_low": ("Bộ nhớ sắp đầy", "Storage nearly full"),
    "server_unreachable": ("Không kết nối được máy chủ", "Server unreachable"),
}


def view(snapshot: StatusSnapshot, language: str = "vi") -> dict:
    """What the screen shows now, from a daemon snapshot (language ``vi`` or ``en``)."""
    lang = "en" if language == "en" else "vi"
    showing = snapshot.showing
    last = snapshot.last_verdicts[0] if showing and snapshot.last_verdicts else None
    message = (last.message_en if lang == "en" else last.message_vi) if last else ""
    kind = last.kind if last else None
    return {
        "verdict": showing,
        "title": TITLES[lang].get(showing, showing),
        "colour": COLOURS.get(showing, COLOURS[None]),
        "message": message or ("" if showing else IDLE_HINT[lang]),
        "kind": KINDS[lang].get(kind, kind) if kind else "",
        "faults": [FAULTS.get(f, (f, f))[0 if lang == "vi" else 1] for f in snapshot.faults],
        "state": snapshot.state,
        "language": lang,
    }


class StaffScreen:
    """HTTP server in a daemon thread on ``host:port`` (loopback only by default)."""

    def __init__(self, snapshot: Callable[[], StatusSnapshot], *, port: int = 8080, language: str = "vi",
                 host: str = "127.0.0.1"):
        self.snapshot, self.language = snapshot, language
        self.host, self.port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> None:
        """Bind and serve in a background thread (port 0 picks a free port; see ``.port``)."""
        page = resources.files(__package__).joinpath("index.html").read_bytes()
        screen = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", page)
                elif self.path.split("?")[0] == "/screen.json":
                    try:
                        body = json.dumps(view(screen.snapshot(), screen.language), ensure_ascii=False)
                    except Exception as exc:
                        log.warning("event=staff_screen_view_failed error=%r", exc)
                        self._send(503, "application/json", b'{"error": "unavailable"}')
                        return
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
