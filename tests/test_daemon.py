"""The daemon loop end to end on replayed camera-like frames, with a real SQLite recorder."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

from edge.config import CameraConfig
from edge.device.daemon import EXIT_CAMERA_LOST, EXIT_OK, Daemon, DecisionEvent
from edge.device.notify import Notifier
from edge.device.status import DeviceStatus, StatusSnapshot
from edge.devtools.synth import Distortion, render_idle, render_sequence
from edge.scan.camera import CameraError, Frame, FrameSource
from edge.scan.camera.replay import ReplaySource
from edge.scan.clock import SystemClock
from edge.scan.debounce import Debouncer
from edge.scan.decode import Decoder
from edge.scan.light import Fault
from edge.scan.light.terminal import TerminalLight
from edge.verdict import Decision, Reason, Verdict

SIZE = (320, 240)
CLEAR = Distortion(code_fraction=0.8)


class PrefixVerifier:
    """Decides by prefix: CP1:OK -> PASS, CP1:F0 -> REFUSE, anything else -> CHECK."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def verify(self, text: str) -> Verdict:
        self.seen.append(text)
        if text.startswith("CP1:OK"):
            return Verdict(Decision.PASS, Reason.OK, format="CP1", kind="vaccination")
        if text.startswith("CP1:F0"):
            return Verdict(Decision.REFUSE, Reason.RISK_F0, format="CP1", kind="vaccination")
        if text.startswith("CRASH"):
            raise RuntimeError("verifier bug")
        return Verdict(Decision.CHECK, Reason.NOT_A_PASS)


class SqliteRecorder:
    """A durable scan record (WAL, synchronous=FULL) that also notes what the lamp showed then."""

    def __init__(self, path: Path, light) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS scan (verdict TEXT, reason TEXT, captured REAL, lamp TEXT)")
        self.light = light

    def __call__(self, verdict: Verdict, captured: float) -> None:
        lamp = self.light.decision.value if self.light.decision else None
        with self.db:
            self.db.execute("INSERT INTO scan VALUES (?, ?, ?, ?)",
                            (verdict.decision.value, verdict.reason.value, captured, lamp))

    def rows(self) -> list[tuple]:
        return self.db.execute("SELECT verdict, reason, lamp FROM scan ORDER BY rowid").fetchall()


def build(tmp_path: Path, source: FrameSource, *, camera: CameraConfig | None = None, **kw) -> tuple:
    out = io.StringIO()
    light = TerminalLight(out, color=False, hold_s=30.0)
    recorder = SqliteRecorder(tmp_path / "scan.sqlite", light)
    events: list[DecisionEvent] = []
    daemon = Daemon(source=source, decoder=Decoder(), debouncer=Debouncer(forget_after_s=0.5),
                    verifier=kw.pop("verifier", PrefixVerifier()), recorder=kw.pop("recorder", recorder),
                    light=light, clock=SystemClock(), camera=camera, on_decision=events.append,
                    notifier=kw.pop("notifier", Notifier("")), **kw)
    return daemon, recorder, events, out


def test_each_presented_code_is_decided_once_and_recorded_before_the_lamp(tmp_path):
    frames = render_sequence(["CP1:OK-1", "CP1:F0-2", "HELLO"], SIZE, seed=3, idle_frames=2, hold_frames=5,
                             distortion=CLEAR)
    source = ReplaySource(images=frames, fps=None)
    daemon, recorder, events, out = build(tmp_path, source)
    # forget_after_s=0.5 but frames fly by faster: give each person a real gap
    daemon.debouncer = Debouncer(forget_after_s=60)
    assert daemon.run() == EXIT_OK
    assert [e.shown for e in events] == [Decision.PASS, Decision.REFUSE, Decision.CHECK]
    assert [e.text for e in events] == ["CP1:OK-1", "CP1:F0-2", "HELLO"]
    assert all(e.recorded and 0 <= e.latency_ms < 5000 for e in events)
    # the record is committed while the lamp still shows the previous verdict
    assert recorder.rows() == [("PASS", "ok", None), ("REFUSE", "risk_f0", "PASS"),
                               ("CHECK", "not_a_pass", "REFUSE")]
    assert daemon.frames == len(frames)
    lines = out.getvalue().splitlines()
    assert lines[0] == "[  off   ] All lamps dark"  # start-up: no frame yet, so not "ready"
    assert lines[1] == "[ ready  ] Green blip every 4 s"  # frames flow: alive and ready
    verdicts = [line for line in lines if line.startswith(("[  PASS", "[ REFUSE", "[ CHECK"))]
    assert verdicts == ["[  PASS  ] Steady green, one short beep", "[ REFUSE ] Steady red, one long beep",
                        "[ CHECK  ] Steady amber, two short beeps"]
    assert lines[-1] == "[  off   ] All lamps dark"  # lamps off at shutdown


def test_a_crash_in_one_frame_never_stops_the_loop(tmp_path):
    frames = [render_idle(SIZE, 1), np.zeros((2, 2, 3), np.uint8)] * 3 + \
        render_sequence(["CP1:OK-9"], SIZE, seed=1, idle_frames=1, hold_frames=2, distortion=CLEAR)
    daemon, _, events, _ = build(tmp_path, ReplaySource(images=frames, fps=None))
    daemon.source = _Raw(frames)  # hand the decoder a colour frame it rejects
    assert daemon.run() == EXIT_OK
    assert daemon.errors == 3
    assert [e.shown for e in events] == [Decision.PASS]


class _Raw(FrameSource):
    """A finite in-memory source that does not convert frames (to inject malformed ones)."""

    name = "raw"

    def __init__(self, images, *, stall_after: int | None = None, opens_to_recover: int | None = None,
                 fail_opens: int = 0) -> None:
        super().__init__()
        self.images, self.i = list(images), 0
        self.stall_after, self.opens_to_recover = stall_after, opens_to_recover
        self.fail_opens, self.opens, self.closes = fail_opens, 0, 0

    def open(self) -> None:
        self.opens += 1
        if self.opens <= self.fail_opens:
            raise CameraError("cannot open the test camera")

    def read(self, timeout: float) -> Frame | None:
        stalled = self.stall_after is not None and self.i >= self.stall_after
        if stalled and (self.opens_to_recover is None or self.opens < self.opens_to_recover):
            time.sleep(min(timeout, 0.01))
            return None
        if self.i >= len(self.images):
            from edge.scan.camera import EndOfStream

            raise EndOfStream()
        self.i += 1
        self._seq += 1
        return Frame(self.images[self.i - 1], time.monotonic(), self._seq)

    def close(self) -> None:
        self.closes += 1


def test_verifier_crash_and_record_failure_show_check(tmp_path):
    frames = render_sequence(["CRASH-1", "CP1:OK-2"], SIZE, seed=2, idle_frames=1, hold_frames=2,
                             distortion=CLEAR)

    def broken_recorder(verdict, captured):
        raise sqlite3.OperationalError("disk I/O error")

    daemon, _, events, _ = build(tmp_path, ReplaySource(images=frames, fps=None), recorder=broken_recorder)
    daemon.debouncer = Debouncer(forget_after_s=60)
    assert daemon.run() == EXIT_OK
    assert [(e.verdict.reason, e.shown, e.recorded) for e in events] == [
        (Reason.INTERNAL_ERROR, Decision.CHECK, False), (Reason.OK, Decision.CHECK, False)]


def fast_camera(**kw) -> CameraConfig:
    base = {"no_frame_timeout_s": 0.15, "max_reopen_attempts": 2, "reopen_backoff_s": 0.01,
            "reopen_backoff_max_s": 0.02, "capture_timeout_s": 0.05}
    return CameraConfig(**{**base, **kw})


def test_camera_lost_reopens_with_backoff_then_exits_non_zero(tmp_path, caplog):
    idle = [render_idle(SIZE, i) for i in range(3)]
    source = _Raw(idle, stall_after=3)
    statuses: list[StatusSnapshot] = []
    daemon, _, _, out = build(tmp_path, source, camera=fast_camera(), status_writer=statuses.append)
    assert daemon.run() == EXIT_CAMERA_LOST
    assert source.opens == 1 + 2 and daemon.frames == 3
    assert "[ fault  ] camera_lost: Amber fast blink" in out.getvalue()
    assert any(s.faults == ("camera_lost",) and s.state == "camera_lost" for s in statuses)
    assert statuses[-1].state == "failed"
    assert "camera_gave_up" in caplog.text


def test_camera_recovers_after_reopen(tmp_path):
    frames = [render_idle(SIZE, i) for i in range(2)] + \
        render_sequence(["CP1:OK-3"], SIZE, seed=4, idle_frames=1, hold_frames=2, distortion=CLEAR)
    source = _Raw(frames, stall_after=2, opens_to_recover=2)
    daemon, _, events, out = build(tmp_path, source, camera=fast_camera(max_reopen_attempts=3))
    assert daemon.run() == EXIT_OK
    assert source.opens == 2 and not daemon.camera_lost and daemon.reopen_failures == 0
    assert [e.shown for e in events] == [Decision.PASS]
    assert Fault.CAMERA_LOST not in daemon.faults
    assert "camera_lost" in out.getvalue()


def test_camera_that_never_opens_exits_non_zero(tmp_path):
    source = _Raw([], fail_opens=99)
    daemon, *_ = build(tmp_path, source, camera=fast_camera(max_reopen_attempts=3))
    assert daemon.run() == EXIT_CAMERA_LOST
    assert source.opens == 1 + 3


def test_watchdog_only_while_frames_flow_and_health_probes(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    calls = {"n": 0}

    def probe():
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("statvfs failed")
        return {Fault.RISK_STALE}

    source = _Raw([render_idle(SIZE, i) for i in range(5)], stall_after=5)
    daemon, *_ = build(tmp_path, source, camera=fast_camera(max_reopen_attempts=1),
                       notifier=Notifier(str(path), min_watchdog_interval_s=0), health_probes=[probe],
                       health_interval_s=0.02)
    assert daemon.run() == EXIT_CAMERA_LOST
    messages = []
    while True:
        try:
            messages.append(sock.recv(1024).decode())
        except TimeoutError:
            break
    sock.close()
    assert messages[0].startswith("READY=1")
    assert messages.count("WATCHDOG=1") == 5  # one per frame, none while stalled
    last_watchdog = max(i for i, m in enumerate(messages) if m == "WATCHDOG=1")
    assert any(m.startswith("STATUS=camera lost") for m in messages[last_watchdog:])
    assert messages[-1] == "STOPPING=1"
    assert calls["n"] >= 3 and Fault.RISK_STALE in daemon.faults


def test_stop_hooks(tmp_path):
    frames = [render_idle(SIZE, 0)]
    daemon, *_ = build(tmp_path, ReplaySource(images=frames, fps=None, loop=True))
    assert daemon.run(max_frames=7) == EXIT_OK and daemon.frames == 7
    daemon2, *_ = build(tmp_path, ReplaySource(images=frames, fps=None, loop=True))
    assert daemon2.run(until=lambda: daemon2.frames >= 3) == EXIT_OK and daemon2.frames == 3


SIGTERM_SCRIPT = textwrap.dedent("""
    import sqlite3, sys, time
    from edge.scan.camera.replay import ReplaySource
    from edge.devtools.synth import Distortion, render_sequence
    from edge.scan.clock import SystemClock
    from edge.device.daemon import Daemon
    from edge.scan.debounce import Debouncer
    from edge.scan.decode import Decoder
    from edge.scan.light.terminal import TerminalLight
    from edge.verdict import Decision, Reason, Verdict

    class V:
        def verify(self, text):
            return Verdict(Decision.PASS, Reason.OK)

    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    db.execute("CREATE TABLE scan (t REAL)")
    def record(verdict, captured):
        with db:
            db.execute("INSERT INTO scan VALUES (?)", (captured,))
        print("recorded", flush=True)
    frames = render_sequence(["CP1:A"], (320, 240), 1, idle_frames=1, hold_frames=1,
                             distortion=Distortion(code_fraction=0.8))
    daemon = Daemon(source=ReplaySource(images=frames, fps=30, loop=True), decoder=Decoder(),
                    debouncer=Debouncer(forget_after_s=0), verifier=V(), recorder=record,
                    light=TerminalLight(sys.stdout, color=False), clock=SystemClock())
    daemon.install_signal_handlers()
    sys.exit(daemon.run())
""")


def test_sigterm_finishes_the_record_turns_lamps_off_and_exits_zero(tmp_path):
    db = tmp_path / "scan.sqlite"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err_file:
        proc = subprocess.Popen([sys.executable, "-c", SIGTERM_SCRIPT, str(db)], stdout=subprocess.PIPE,
                                stderr=err_file, text=True, env=env)
        try:
            first = [proc.stdout.readline().strip() for _ in range(3)]
            assert first == ["[  off   ] All lamps dark", "[ ready  ] Green blip every 4 s", "recorded"]
            proc.send_signal(signal.SIGTERM)
            out = proc.stdout.read()  # the same buffered reader: no line is lost
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
    err = err_path.read_text()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[-1] == "[  off   ] All lamps dark"
    recorded = 1 + lines.count("recorded")
    assert lines.count("[  PASS  ] Steady green, one short beep") == recorded  # lamp only after a record
    count = sqlite3.connect(db).execute("SELECT count(*) FROM scan").fetchone()[0]
    assert count == recorded  # every decision that was started was committed


def test_snapshot_is_privacy_safe(tmp_path):
    frames = render_sequence(["CP1:OK-7"], SIZE, seed=5, idle_frames=1, hold_frames=1, distortion=CLEAR)
    daemon, *_ = build(tmp_path, ReplaySource(images=frames, fps=None),
                       status_extra=lambda: DeviceStatus(risk_version=42))
    daemon.run()
    snap = daemon.snapshot()
    assert snap.decisions == 1 and snap.device.risk_version == 42
    assert snap.last_verdicts[0].verdict == "PASS"
    written = json.dumps(snap.to_json())
    assert "holder_hash" not in written and "pass_id" not in written
    assert snap.clock_trusted in (True, False) and snap.state == "stopped"


def test_stop_requested_during_reopen_exits_zero(tmp_path):
    source = _Raw([render_idle(SIZE, 0)], stall_after=1)
    daemon, *_ = build(tmp_path, source, camera=fast_camera(reopen_backoff_s=5, reopen_backoff_max_s=5))
    threading.Timer(0.4, daemon.request_stop).start()
    started = time.monotonic()
    assert daemon.run() == EXIT_OK
    assert time.monotonic() - started < 3
