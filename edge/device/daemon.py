"""The daemon loop: frame -> decode -> debounce -> verify -> record (durable) -> light.

Everything is injected (source, decoder, debouncer, verifier, recorder, light, clock, health
probes, status writer, notifier) so the same loop runs on the Pi, in the demo and in tests.

Fault handling, in the loop and nowhere else:
- no frame for ``camera.no_frame_timeout_s`` (or a camera error) -> camera-lost pattern, close
  and reopen with exponential backoff; after ``camera.max_reopen_attempts`` failed reopens in a
  row, ``run()`` returns EXIT_CAMERA_LOST so systemd restarts the service;
- an exception while processing one frame is logged and counted, the loop goes on;
- SIGTERM/SIGINT: the current record finishes, lamps go off, ``run()`` returns 0;
- the watchdog is pinged only when a frame arrives, so a hung capture gets us restarted.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from datetime import time as day_start
from typing import Protocol

from edge.config import CameraConfig
from edge.device.notify import Notifier
from edge.device.status import DayCounts, DeviceStatus, StatusSnapshot, VerdictSummary
from edge.scan.camera import CameraError, EndOfStream, Frame, FrameSource
from edge.scan.clock import Clock
from edge.scan.debounce import Debouncer
from edge.scan.light import Fault, Light
from edge.verdict import Decision, Reason, Verdict

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CAMERA_LOST = 3

Recorder = Callable[[Verdict, float], None]
HealthProbe = Callable[[], Iterable[Fault]]


class DecidesText(Protocol):
    """Anything that turns one QR text into a verdict (the real one is ``edge.scan.verifier.Verifier``)."""

    def verify(self, text: str) -> Verdict: ...


class QRDecoder(Protocol):
    def decode(self, grey) -> list[str]: ...


@dataclass(frozen=True)
class DecisionEvent:
    """One decision as it reached the lamp: for the demo, the status file and benchmarks."""

    seq: int
    text: str
    verdict: Verdict
    shown: Decision
    recorded: bool
    captured: float
    shown_at: float
    at: str

    @property
    def latency_ms(self) -> float:
        """Frame capture to lamp shown, in milliseconds."""
        return (self.shown_at - self.captured) * 1000.0

    def summary(self) -> VerdictSummary:
        """Privacy-safe (no holder hash, no pass id), for the status file and staff screen."""
        return VerdictSummary(at=self.at, verdict=self.shown.value, reason=self.verdict.reason.value,
                              format=self.verdict.format, kind=self.verdict.kind,
                              message_vi=self.verdict.message_vi, message_en=self.verdict.message_en,
                              recorded=self.recorded, latency_ms=round(self.latency_ms, 2))


class DayCounter:
    """Decisions per local calendar day, for the staff screen.

    ``seed(start_of_day)`` (the scan log's counts since local midnight) is asked once, on the first
    day the counter sees, so a restart at noon does not reset the day's figures to zero.
    """

    def __init__(self, timezone: tzinfo = UTC, seed: Callable[[datetime], Mapping[str, int]] | None = None):
        self.timezone, self._seed = timezone, seed
        self._counts = DayCounts()

    def counts(self, now: datetime) -> DayCounts:
        local = now.astimezone(self.timezone)
        day = local.date().isoformat()
        if self._counts.date != day:
            self._counts = DayCounts(day)
            seed, self._seed = self._seed, None
            if seed is not None:
                try:
                    found = seed(datetime.combine(local.date(), day_start(), self.timezone))
                    self._counts = DayCounts(day, found.get("PASS", 0), found.get("REFUSE", 0), found.get("CHECK", 0))
                except Exception as exc:
                    log.warning("event=day_counts_seed_failed error=%r action=counting from zero", exc)
        return self._counts

    def add(self, decision: Decision, now: datetime) -> None:
        self._counts = self.counts(now).add(decision.value)


class Daemon:
    """The checkpoint's main loop. Build one per process; ``run()`` returns the exit code."""

    def __init__(self, *, source: FrameSource, decoder: QRDecoder, debouncer: Debouncer,
                 verifier: DecidesText, recorder: Recorder, light: Light, clock: Clock,
                 camera: CameraConfig | None = None, health_probes: Iterable[HealthProbe] = (),
                 status_writer: Callable[[StatusSnapshot], None] | None = None,
                 status_extra: Callable[[], DeviceStatus] | None = None,
                 notifier: Notifier | None = None,
                 on_decision: Callable[[DecisionEvent], None] | None = None,
                 health_interval_s: float = 1.0, status_interval_s: float = 0.5,
                 read_timeout_s: float = 0.25, keep_last: int = 10, day_counter: DayCounter | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        self.source, self.decoder, self.debouncer = source, decoder, debouncer
        self.verifier, self.recorder, self.light, self.clock = verifier, recorder, light, clock
        self.camera = camera or CameraConfig()
        self.health_probes = list(health_probes)
        self.status_writer, self.status_extra = status_writer, status_extra
        self.notifier = notifier or Notifier()
        self.on_decision = on_decision
        self.health_interval_s = health_interval_s
        #: the staff screen calls the daemon silent when the status file is older than ~1 s
        self.status_interval_s = status_interval_s
        self.day_counter = day_counter or DayCounter()
        self._next_status = float("-inf")
        self._last_decision_at: float | None = None
        self.read_timeout_s = min(read_timeout_s, self.camera.capture_timeout_s)
        #: loop timing and frame-to-light latency use the same monotonic as the frame sources
        #: (``time.monotonic``), even when ``clock`` is a FixedClock; debouncing uses ``clock.monotonic``
        self.monotonic = monotonic
        self.stop_event = threading.Event()
        self.frames = 0
        self.errors = 0
        self.decisions = 0
        self.last_frame_at: float | None = None
        self.last_events: deque[DecisionEvent] = deque(maxlen=keep_last)
        self.faults: frozenset[Fault] = frozenset()
        self.camera_lost = False
        self.reopen_failures = 0
        self._backoff = self.camera.reopen_backoff_s
        self._opened_at = 0.0
        self._next_health = float("-inf")
        self._probe_faults: frozenset[Fault] = frozenset()
        self.state = "starting"

    # -- control -------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the loop to finish the current frame and exit 0 (thread- and signal-safe)."""
        self.stop_event.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT -> request_stop (call from the main thread)."""
        def handler(signum: int, _frame: object) -> None:
            log.info("event=signal signal=%s action=finishing current record then stopping",
                     signal.Signals(signum).name)
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # -- the loop ------------------------------------------------------------------------
    def run(self, *, max_frames: int | None = None, until: Callable[[], bool] | None = None) -> int:
        """Process frames until stopped, the source ends, ``max_frames`` or ``until()``; the exit code."""
        code = EXIT_OK
        try:
            if not self._open_first():
                return EXIT_CAMERA_LOST
            self.state = "running"
            self.notifier.ready(f"reading frames from {self.source.name}")
            log.info("event=daemon_started source=%s", self.source.name)
            while not self.stop_event.is_set():
                if (max_frames is not None and self.frames >= max_frames) or (until is not None and until()):
                    break
                self._between_frames()
                try:
                    frame = self.source.read(self.read_timeout_s)
                except EndOfStream:
                    log.info("event=source_ended frames=%d", self.frames)
                    break
                except CameraError as exc:
                    log.error("event=camera_error error=%s action=reopening", exc)
                    if not self._recover():
                        code = EXIT_CAMERA_LOST
                        break
                    continue
                if frame is not None:
                    self._on_frame(frame)
                elif self._no_frame_for() >= self.camera.no_frame_timeout_s:
                    log.error("event=no_frame seconds=%.1f action=reopening camera", self._no_frame_for())
                    if not self._recover():
                        code = EXIT_CAMERA_LOST
                        break
            return code
        finally:
            self._shutdown(code)

    def _open_first(self) -> bool:
        try:
            self.source.open()
        except CameraError as exc:
            log.error("event=camera_open_failed error=%s action=retrying with backoff", exc)
            return self._recover()
        except Exception as exc:  # a broken camera back-end: the same recovery, never a traceback
            log.error("event=camera_open_failed error=%r action=retrying with backoff", exc)
            return self._recover()
        self._opened_at = self.monotonic()
        return True

    def _no_frame_for(self) -> float:
        since = self.last_frame_at if self.last_frame_at is not None else self._opened_at
        return self.monotonic() - max(since, self._opened_at)

    def _recover(self) -> bool:
        """Close and reopen the camera with backoff; False after too many failures in a row."""
        self._set_camera_lost(True)
        while not self.stop_event.is_set():
            self.reopen_failures += 1
            if self.reopen_failures > self.camera.max_reopen_attempts:
                log.error("event=camera_gave_up attempts=%d action=exiting so systemd restarts the service; "
                          "check the camera cable and [camera] in the config, 'checkpoint doctor' tests one frame",
                          self.reopen_failures - 1)
                return False
            self.notifier.status(f"camera lost: reopen attempt {self.reopen_failures}")
            if self._wait_writing_status(self._backoff):
                break
            self._backoff = min(self._backoff * 2, self.camera.reopen_backoff_max_s)
            try:
                self.source.close()
                self.source.open()
            except CameraError as exc:
                log.error("event=camera_reopen_failed attempt=%d error=%s", self.reopen_failures, exc)
                continue
            except Exception as exc:  # a broken back-end must not kill the loop either
                log.error("event=camera_reopen_failed attempt=%d error=%r", self.reopen_failures, exc)
                continue
            self._opened_at = self.monotonic()
            log.info("event=camera_reopened attempt=%d action=waiting for frames", self.reopen_failures)
            return True
        return True  # stopping: not a camera failure

    def _wait_writing_status(self, seconds: float) -> bool:
        """Wait (True if asked to stop) while still ticking the lamp and writing the status file,
        so the staff screen says "camera lost" during a long backoff instead of "not working"."""
        end = self.monotonic() + seconds
        while True:
            self.light.tick()
            self._write_status()
            left = end - self.monotonic()
            if left <= 0:
                return self.stop_event.is_set()
            if self.stop_event.wait(min(left, self.status_interval_s)):
                return True

    def _set_camera_lost(self, lost: bool) -> None:
        if lost != self.camera_lost:
            self.camera_lost = lost
            self.state = "camera_lost" if lost else "running"
            if lost:
                self.light.set_alive(False)
            self._apply_faults()
            self._write_status()

    def _on_frame(self, frame: Frame) -> None:
        self.frames += 1
        self.last_frame_at = self.monotonic()
        if self.camera_lost or self.reopen_failures:
            log.info("event=camera_recovered after_attempts=%d", self.reopen_failures)
            self.reopen_failures, self._backoff = 0, self.camera.reopen_backoff_s
            self._set_camera_lost(False)
        if not self.light.alive:
            self.light.set_alive(True)  # frames flow: idle shows the ready blip, not a dark head
        self.notifier.watchdog()
        try:
            self._process(frame)
        except Exception as exc:
            self.errors += 1
            log.exception("event=frame_failed seq=%d error=%r action=skipped, loop continues", frame.seq, exc)

    def _process(self, frame: Frame) -> None:
        texts = frame.texts if frame.texts is not None else self.decoder.decode(frame.image)
        for text in self.debouncer.feed(texts, self.clock.monotonic()):
            self._decide(text, frame)

    def _decide(self, text: str, frame: Frame) -> None:
        verdict = self._verify(text)
        recorded = True
        try:
            self.recorder(verdict, frame.captured)
        except Exception as exc:
            recorded = False
            self.errors += 1
            log.error("event=record_failed error=%s action=showing CHECK; check disk space and the scan log", exc)
            self._poll_health()  # the disk fault shows on the lamps now, not at the next poll
        shown = verdict.decision if recorded else Decision.CHECK
        self.light.show(shown)
        shown_at = self.monotonic()
        self.decisions += 1
        self._last_decision_at = shown_at
        self.day_counter.add(shown, self.clock.now())
        event = DecisionEvent(frame.seq, text, verdict, shown, recorded, frame.captured, shown_at,
                              self.clock.now().isoformat(timespec="seconds"))
        self.last_events.append(event)
        log.info("event=decision verdict=%s reason=%s kind=%s recorded=%s latency_ms=%.1f", shown.value,
                 verdict.reason.value, verdict.kind, recorded, event.latency_ms)
        self._write_status()  # the staff screen shows the verdict now, not at the next status tick
        if self.on_decision is not None:
            try:
                self.on_decision(event)
            except Exception as exc:
                log.exception("event=on_decision_failed error=%r", exc)

    def _verify(self, text: str) -> Verdict:
        try:
            return self.verifier.verify(text)
        except Exception as exc:  # the verifier promises not to raise; if it does, staff check by hand
            log.exception("event=verify_crashed error=%r action=showing CHECK", exc)
            return Verdict(Decision.CHECK, Reason.INTERNAL_ERROR, detail=f"verifier crashed: {exc!r}")

    # -- between frames: health, lamps, status -------------------------------------------
    def _between_frames(self) -> None:
        now = self.monotonic()
        if now >= self._next_health:
            self._next_health = now + self.health_interval_s
            self._poll_health()
        if now >= self._next_status:
            self._write_status()
        self.light.tick()

    def _poll_health(self) -> None:
        found: set[Fault] = set()
        for probe in self.health_probes:
            try:
                found.update(probe())
            except Exception as exc:
                log.warning("event=health_probe_failed probe=%r error=%r", probe, exc)
        self._probe_faults = frozenset(found)
        self._apply_faults()

    def _apply_faults(self) -> None:
        faults = set(self._probe_faults)
        if self.camera_lost:
            faults.add(Fault.CAMERA_LOST)
        if faults != self.faults:
            log.warning("event=faults_changed faults=%s", ",".join(sorted(faults)) or "none")
        self.faults = frozenset(faults)
        self.light.set_faults(self.faults)

    def snapshot(self) -> StatusSnapshot:
        """What the daemon is doing now (the status file's content)."""
        now = self.monotonic()
        wall = self.clock.now()
        device = DeviceStatus()
        if self.status_extra is not None:
            try:
                device = self.status_extra()
            except Exception as exc:
                log.warning("event=status_extra_failed error=%r", exc)
        return StatusSnapshot(
            state=self.state,
            updated_at=wall.isoformat(timespec="seconds"),
            source=self.source.name,
            frames=self.frames,
            last_frame_age_s=None if self.last_frame_at is None else round(now - self.last_frame_at, 3),
            decisions=self.decisions,
            errors=self.errors,
            showing=self.light.decision.value if self.light.decision else None,
            last_verdicts=tuple(e.summary() for e in reversed(self.last_events)),
            faults=tuple(sorted(f.value for f in self.faults)),
            clock_trusted=self.clock.trusted(),
            reopen_failures=self.reopen_failures,
            device=device,
            last_decision_age_s=None if self._last_decision_at is None else round(now - self._last_decision_at, 3),
            today=self.day_counter.counts(wall),
        )

    def _write_status(self) -> None:
        self._next_status = self.monotonic() + self.status_interval_s
        if self.status_writer is None:
            return
        try:
            self.status_writer(self.snapshot())
        except Exception as exc:
            log.warning("event=status_write_failed error=%r action=check the status path", exc)

    def _shutdown(self, code: int) -> None:
        self.state = "stopped" if code == EXIT_OK else "failed"
        for step, action in (("light_off", self.light.off), ("source_close", self.source.close),
                             ("status", self._write_status), ("notify", self.notifier.stopping)):
            try:
                action()
            except Exception as exc:
                log.warning("event=shutdown_step_failed step=%s error=%r", step, exc)
        log.info("event=daemon_stopped code=%d frames=%d decisions=%d errors=%d", code, self.frames,
                 self.decisions, self.errors)

