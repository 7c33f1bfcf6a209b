"""``checkpoint doctor``: check the whole device once and say, for every failure, what to do.

Each check is a small function of the configuration returning a :class:`Check`; the command prints
them as a table and exits non-zero when one failed. While the daemon runs it holds the camera and
the GPIO pins (only one process can), so those two checks then read the daemon's fresh status file
instead of opening the hardware a second time.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from edge.config import Config
from edge.device.status import StatusFile, StatusSnapshot

#: a status file younger than this means the daemon is running (it rewrites it about once a second)
DAEMON_FRESH_S = 10.0
#: how long each verdict colour stays lit in the lamp test pattern
LAMP_STEP_S = 0.4


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table: what was checked, how it went, what was seen and what to do."""

    name: str
    outcome: Outcome
    detail: str
    action: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAIL


def _running_daemon(config: Config) -> StatusSnapshot | None:
    """The daemon's own status when it wrote one recently and is reading frames; else None."""
    status = StatusFile(config.resolve(config.status.path))
    try:
        if status.age_s() > DAEMON_FRESH_S:
            return None
        snapshot = status.read()
    except (OSError, ValueError):
        return None
    return snapshot if snapshot.state in ("running", "camera_lost") else None


def check_camera(config: Config, *, timeout_s: float | None = None) -> Check:
    """One frame from the configured camera (or the running daemon's word that frames flow)."""
    from edge.scan.camera import CameraError, make_source

    daemon = _running_daemon(config)
    if daemon is not None:
        age = daemon.last_frame_age_s
        if daemon.state == "running" and age is not None and age < config.camera.no_frame_timeout_s:
            return Check("camera", Outcome.PASS, f"the running daemon reads frames from {daemon.source} "
                                                 f"(last {age:.1f} s ago)")
        return Check("camera", Outcome.FAIL, f"the running daemon gets no frames from {daemon.source}",
                     "check the camera cable; 'journalctl -u checkpoint' has the camera error")
    wait = timeout_s if timeout_s is not None else max(config.camera.capture_timeout_s, 2.0)
    try:
        source = make_source(config)
        source.open()
    except CameraError as exc:
        return Check("camera", Outcome.FAIL, str(exc), "check [camera] in the config, the cable and that no other "
                                                      "process holds the camera")
    except Exception as exc:  # a broken camera library raises anything
        return Check("camera", Outcome.FAIL, f"{type(exc).__name__}: {exc}", "check the camera library install")
    try:
        deadline = time.monotonic() + wait
        frame = None
        while frame is None and time.monotonic() < deadline:
            frame = source.read(min(0.5, wait))
    except Exception as exc:
        return Check("camera", Outcome.FAIL, f"{type(exc).__name__}: {exc}", "check the cable and the camera")
    finally:
        source.close()
    if frame is None:
        return Check("camera", Outcome.FAIL, f"no frame within {wait:.1f} s from {source.name}",
                     "check the cable; a Pi camera needs camera_auto_detect=1 in config.txt")
    width, height = frame.size
    return Check("camera", Outcome.PASS, f"one {width}x{height} frame from {source.name}")


def check_lamps(config: Config, *, step_s: float = LAMP_STEP_S, stream=None) -> Check:
    """A short test pattern: green, red, amber, then off (watch the lamps while it runs)."""
    from edge.device.startup import StartupError, open_light
    from edge.verdict import Decision

    if config.light.backend == "none":
        return Check("lamps", Outcome.SKIP, "light.backend = \"none\": no lamps configured")
    daemon = _running_daemon(config)
    if daemon is not None:
        return Check("lamps", Outcome.SKIP, "held by the running daemon (stop it to run the test pattern); "
                                            f"it shows faults: {', '.join(daemon.faults) or 'none'}")
    try:
        light = open_light(config, stream=stream)
    except StartupError as exc:
        return Check("lamps", Outcome.FAIL, exc.problem, exc.action)
    try:
        for decision in (Decision.PASS, Decision.REFUSE, Decision.CHECK):
            light.show(decision)
            time.sleep(step_s)
    finally:
        light.close()
    return Check("lamps", Outcome.PASS, "test pattern shown: green, red, amber, off (did every lamp light?)")


def check_clock(config: Config) -> Check:
    """Wall time is trusted (NTP synchronised, or the running daemon holds a signed server time)."""
    from edge.scan.clock import BUILD_FLOOR, SystemClock

    if config.clock.backend == "fixed":
        return Check("clock", Outcome.SKIP, f"fixed clock at {config.clock.fixed_at} (replays and tests only)")
    now = datetime.now(UTC)
    if now < BUILD_FLOOR:
        return Check("clock", Outcome.FAIL, f"system time {now:%Y-%m-%d %H:%M} is before this software was built",
                     "connect the network (NTP) or fit an RTC; until then every verdict is amber")
    if SystemClock().trusted():
        return Check("clock", Outcome.PASS, f"synchronised (NTP), {now:%Y-%m-%d %H:%M:%S} UTC")
    daemon = _running_daemon(config)
    if daemon is not None and daemon.clock_trusted:
        return Check("clock", Outcome.PASS, "trusted by the running daemon (signed server time)")
    return Check("clock", Outcome.FAIL, "not synchronised: no NTP sync and no signed server time yet",
                 "connect the network (systemd-timesyncd) or let the device sync once; passes are amber until then")


def check_lists(config: Config) -> Check:
    """Trust list, policy and risk list installed, signed by the pinned publisher, the risk list fresh."""
    from edge.device.appliance import checkpoint_identity, open_floor, open_risk_store
    from edge.lists.policy import PolicyError, load_policy_file
    from edge.lists.version_floor import RollbackError
    from edge.passes.trust import TrustError, load_trust_file
    from sync.wire.keyfiles import KeyFileError, load_ed25519_public

    fix = "let the device sync with the server (sync.server_url, network) or copy the signed lists"
    try:
        keys = [load_ed25519_public(config.resolve(config.keys.publisher_public_key))]
    except KeyFileError as exc:
        return Check("lists", Outcome.FAIL, str(exc), "provision the device (the pinned publisher key)")
    floor = open_floor(config)  # only read here: the doctor never raises the anti-rollback floor
    try:
        trust = load_trust_file(config.resolve(config.trust.path), keys)
        floor.check("trust", trust.version, "trust list")
        policy = load_policy_file(config.resolve(config.policy.path), keys, checkpoint_identity(config))
        floor.check("policy", policy.version, "policy")
    except (TrustError, PolicyError, RollbackError, OSError) as exc:
        return Check("lists", Outcome.FAIL, str(exc), fix)
    risk = open_risk_store(config, keys, floor)
    if risk is None or risk.published_at is None:
        return Check("lists", Outcome.FAIL, f"trust v{trust.version}, policy v{policy.version}, no risk list", fix)
    age = datetime.now(UTC) - risk.published_at
    limit = timedelta(hours=policy.max_risk_list_age_hours)
    detail = (f"trust v{trust.version}, policy v{policy.version}, risk v{risk.version} published "
              f"{age.total_seconds() / 3600:.1f} h ago (limit {policy.max_risk_list_age_hours:g} h)")
    if age > limit:
        return Check("lists", Outcome.FAIL, detail, "the risk list is stale (passes are amber): " + fix)
    return Check("lists", Outcome.PASS, detail)


def check_disk(config: Config) -> Check:
    """Free space where the scan log lives, against ``scanlog.min_free_mb``."""
    folder = config.resolve(config.scanlog.path).parent
    probe = folder if folder.exists() else config.device.data_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free_mb = shutil.disk_usage(probe).free / 1e6
    detail = f"{free_mb:,.0f} MB free at {probe} (floor {config.scanlog.min_free_mb} MB)"
    if free_mb < config.scanlog.min_free_mb:
        return Check("disk", Outcome.FAIL, detail, "free space on the SD card (old journals, copied files) or "
                                                   "sync so acknowledged records can be pruned")
    return Check("disk", Outcome.PASS, detail)


def check_keys(config: Config) -> Check:
    """The device's own key and the two pinned server keys load as the right kinds."""
    from sync.wire.keyfiles import KeyFileError, load_ed25519_private, load_ed25519_public, load_x25519_public

    problems = []
    for label, path, loader in (
            ("publisher key", config.keys.publisher_public_key, load_ed25519_public),
            ("server encryption key", config.keys.server_encryption_key, load_x25519_public),
            ("device key", config.keys.device_key, load_ed25519_private)):
        try:
            loader(config.resolve(path))
        except (KeyFileError, ValueError, OSError) as exc:
            problems.append(f"{label}: {exc}")
    if problems:
        return Check("keys", Outcome.FAIL, "; ".join(problems),
                     "provision the device (bundle from 'checkpoint provision'); the device key is made on the "
                     "device by 'checkpoint device-key' (first boot does it)")
    return Check("keys", Outcome.PASS, "device key, pinned publisher key and server encryption key load")


def check_enrollment(config: Config) -> Check:
    """The device key is enrolled: the one-time token was used up, and a sync went through."""
    if not config.sync.server_url:
        return Check("enrollment", Outcome.SKIP, "stand-alone device (sync.server_url is empty)")
    token = config.resolve(config.keys.enroll_token)
    last = _last_sync(config)
    if token.exists():
        return Check("enrollment", Outcome.FAIL, f"not enrolled yet (token waiting at {token})",
                     "the daemon enrolls by itself as soon as the server is reachable: check the network")
    if last is None:
        return Check("enrollment", Outcome.FAIL, "no enrollment token and no sync yet",
                     "enroll the device key by hand ('checkpoint device-key' prints it; 'checkpoint server enroll' "
                     "on the server) or provision the device again")
    return Check("enrollment", Outcome.PASS, f"enrolled; last sync {last:%Y-%m-%d %H:%M:%S} UTC")


def _last_sync(config: Config) -> datetime | None:
    import sqlite3

    path = config.resolve(config.scanlog.path)
    if not path.exists():
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute("SELECT last_success_at FROM sync_state WHERE id = 1").fetchone()
    except sqlite3.Error:
        return None
    return datetime.fromisoformat(row[0]) if row and row[0] else None


def check_server(config: Config, *, timeout_s: float = 5.0) -> Check:
    """The central server answers its health endpoint."""
    import requests

    from sync.wire.protocol import API

    if not config.sync.server_url:
        return Check("server", Outcome.SKIP, "stand-alone device (sync.server_url is empty)")
    url = config.sync.server_url.rstrip("/") + f"{API}/health"
    try:
        resp = requests.get(url, timeout=timeout_s)
    except requests.RequestException as exc:
        return Check("server", Outcome.FAIL, f"{url}: {type(exc).__name__}",
                     "check the network (cable, Wi-Fi, DNS) and sync.server_url; scanning goes on offline")
    if resp.status_code != 200:
        return Check("server", Outcome.FAIL, f"{url}: HTTP {resp.status_code}", "tell the server's operators")
    return Check("server", Outcome.PASS, f"{url}: reachable")


#: every check, in the order printed; each takes the config
CHECKS: dict[str, Callable[[Config], Check]] = {
    "camera": check_camera,
    "lamps": check_lamps,
    "clock": check_clock,
    "lists": check_lists,
    "disk": check_disk,
    "keys": check_keys,
    "enrollment": check_enrollment,
    "server": check_server,
}


def run_checks(config: Config, names: list[str] | None = None,
               checks: dict[str, Callable[[Config], Check]] | None = None) -> list[Check]:
    """Run the named checks (all by default); a check that crashes is a failure, never a traceback."""
    table = checks or CHECKS
    results = []
    for name in names or list(table):
        try:
            results.append(table[name](config))
        except Exception as exc:
            results.append(Check(name, Outcome.FAIL, f"the check itself failed: {type(exc).__name__}: {exc}",
                                 "run 'checkpoint -vv doctor' and report the output"))
    return results


def format_table(results: list[Check]) -> str:
    """A fixed-width table: check, outcome, what was seen; failures add a 'what to do' line."""
    width = max((len(r.name) for r in results), default=5)
    lines = []
    for r in results:
        lines.append(f"{r.name:<{width}}  {r.outcome.value:<4}  {r.detail}")
        if r.failed and r.action:
            lines.append(f"{'':<{width}}        -> {r.action}")
    failed = sum(r.failed for r in results)
    lines.append(f"{len(results) - failed} passed or skipped, {failed} failed")
    return "\n".join(lines)


