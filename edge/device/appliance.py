"""The device's composition root: every part of the device is built here, from one Config.

``checkpoint run``, ``checkpoint sync``, ``checkpoint verify`` and the demo all take their parts
from the builders below, so the publisher key, the scan log, the clock and the risk store are each
opened one way only. Every seam is chosen by the configuration: frame source (``camera.source``),
lamps (``light.backend``), clock (``clock.backend``); the sync client runs only when
``sync.server_url`` is set. Nothing here decides anything: it only wires the parts and their
health probes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.config import Config
from edge.device.daemon import Daemon, DayCounter, DecisionEvent
from edge.device.health import HeartbeatSource, build_heartbeat
from edge.device.status import DeviceStatus, StatusFile, StatusSnapshot
from edge.device.sync_client import InstalledCallback, SyncClient
from edge.lists.policy import CheckpointIdentity, Policy, PolicyError, load_policy_file
from edge.lists.risk_store import RiskStore
from edge.lists.version_floor import RollbackError, VersionFloor
from edge.passes.reader import warm_up as warm_up_readers
from edge.passes.trust import TrustError, TrustStore, load_trust_file
from edge.passes.valuesets import ValueSets, ValueSetsError, load_valuesets_file, shipped
from edge.scan.camera import FrameSource, make_source
from edge.scan.clock import Clock, FixedClock, NoRtc, SysfsRtc, SystemClock, boot_id
from edge.scan.debounce import Debouncer
from edge.scan.decode import Decoder
from edge.scan.light import Fault, Light, make_light
from edge.scan.passback import PassbackGuard
from edge.scan.scanlog import ScanLog
from edge.scan.verifier import Verifier
from edge.verdict import Decision, Reason, Verdict
from sync.wire.keyfiles import KeyFileError, load_ed25519_public, load_or_create_ed25519, load_x25519_public
from sync.wire.protocol import Heartbeat
from sync.wire.risk.types import RiskLookup

log = logging.getLogger(__name__)

#: how often the scan log is pruned (retention days, free-space floor) in the background
PRUNE_INTERVAL_S = 60.0


def load_publisher_keys(config: Config) -> list[Ed25519PublicKey]:
    """The pinned publisher key, or none (logged with what to do): no list can then be installed or used."""
    path = config.resolve(config.keys.publisher_public_key)
    try:
        return [load_ed25519_public(path)]
    except KeyFileError:
        log.error("event=no_publisher_key path=%s action=provision the device (checkpoint provision): "
                  "without the pinned key no list can be trusted", path)
        return []


def open_scanlog(config: Config) -> ScanLog:
    """The device's scan log, its holder hashes sealed to the central server's key."""
    return ScanLog(config.resolve(config.scanlog.path), device_id=config.device.id, boot_id=boot_id(),
                   server_encryption_key=load_x25519_public(config.resolve(config.keys.server_encryption_key)),
                   synchronous=config.scanlog.synchronous)


def open_floor(config: Config) -> VersionFloor:
    """The anti-rollback record: the highest version of each list this device ever installed."""
    return VersionFloor(config.resolve(config.lists.versions_path))


def checkpoint_identity(config: Config) -> CheckpointIdentity:
    """Which policies this device accepts: those naming its checkpoint id or one of its groups."""
    return CheckpointIdentity(config.device.checkpoint, tuple(config.device.groups))


def open_risk_store(config: Config, publisher_keys: list[Ed25519PublicKey], floor: VersionFloor) -> RiskStore | None:
    """The installed risk list, checked against its signed head (a store that fails is refused and
    serves nothing until a sync repairs it); None only if the directory cannot be used at all."""
    path = config.resolve(config.risk.path)
    try:
        return RiskStore.open(path, publisher_keys, floor)
    except Exception as exc:
        log.warning("event=risk_list_unreadable path=%s error=%r action=sync to fetch a risk list", path, str(exc))
        return None


def load_device_lists(config: Config, publisher: list[Ed25519PublicKey],
                      floor: VersionFloor) -> tuple[TrustStore, Policy]:
    """The trust list and policy files a device may use: signed by the pinned publisher, the policy
    naming this checkpoint, neither older than what this device installed before (anti-rollback).

    Raises TrustError / PolicyError / RollbackError saying which file is wrong.
    """
    trust = load_trust_file(config.resolve(config.trust.path), publisher)
    floor.check("trust", trust.version, f"trust list {config.resolve(config.trust.path)}")
    policy = load_policy_file(config.resolve(config.policy.path), publisher, checkpoint_identity(config))
    floor.check("policy", policy.version, f"policy {config.resolve(config.policy.path)}")
    floor.raise_to("trust", trust.version)  # rebuilds a lost floor file from the lists that verify
    floor.raise_to("policy", policy.version)
    return trust, policy


def build_verifier(config: Config, clock: Clock) -> Verifier:
    """A verifier over the installed lists (``checkpoint verify``); raises if trust list or policy is unusable."""
    publisher = [load_ed25519_public(config.resolve(config.keys.publisher_public_key))]
    floor = open_floor(config)
    trust, policy = load_device_lists(config, publisher, floor)
    return Verifier(trust=trust, risk=open_risk_store(config, publisher, floor), policy=policy, clock=clock,
                    value_sets=load_value_sets(config, publisher, floor))


def load_value_sets(config: Config, publisher_keys: list[Ed25519PublicKey], floor: VersionFloor) -> ValueSets:
    """The installed EU value sets; the shipped ones (logged with what to do) when the installed
    file is unusable or older than one installed before: a damaged list costs CHECKs for new
    codes, never a stopped device, and the next sync installs the list again."""
    path = config.resolve(config.valuesets.path)
    try:
        sets = load_valuesets_file(path, publisher_keys)
        if sets.version:
            floor.check("valuesets", sets.version, f"value-set list {path}")
            floor.raise_to("valuesets", sets.version)  # rebuilds a lost floor file from a list that verifies
        return sets
    except (ValueSetsError, RollbackError) as exc:
        log.error("event=valuesets_unusable error=%r action=using the shipped value sets until sync installs "
                  "a good list", str(exc))
        return shipped()


def build_sync_client(config: Config, *, scanlog: ScanLog, clock: Clock, publisher_keys: list[Ed25519PublicKey],
                      risk_store: RiskStore | None, floor: VersionFloor,
                      on_installed: InstalledCallback | None = None,
                      heartbeat: HeartbeatSource | None = None) -> SyncClient:
    """The sync client of this device (its own key is created on first use)."""
    stager = None
    if config.update.target and publisher_keys:
        from edge.device.updates import ReleaseStager

        stager = ReleaseStager(config.resolve(config.update.staging), config.update.target, publisher_keys)
    s = config.sync
    return SyncClient(s.server_url, scanlog, load_or_create_ed25519(config.resolve(config.keys.device_key)),
                      checkpoint=checkpoint_identity(config), floor=floor, publisher_keys=publisher_keys,
                      clock=clock, batch_size=s.batch_size, timeout_s=s.timeout_s,
                      backoff_max_s=s.backoff_max_s, interval_s=s.interval_s,
                      trust_path=config.resolve(config.trust.path), policy_path=config.resolve(config.policy.path),
                      valuesets_path=config.resolve(config.valuesets.path),
                      risk_store=risk_store, on_installed=on_installed, request_deadline_s=s.request_deadline_s,
                      limits=s.max_answer_bytes, certificate_path=config.resolve(config.keys.enrollment_certificate),
                      spool_dir=config.device.data_dir,
                      enroll_token_path=config.resolve(config.keys.enroll_token), stager=stager,
                      heartbeat=heartbeat)


def build_sync_only(config: Config) -> SyncClient:
    """The sync client alone, for ``checkpoint sync`` (no camera, no lamps)."""
    keys = load_publisher_keys(config)
    floor = open_floor(config)
    return build_sync_client(config, scanlog=open_scanlog(config), clock=make_clock(config), publisher_keys=keys,
                             risk_store=open_risk_store(config, keys, floor), floor=floor)


def make_clock(config: Config) -> Clock:
    """The clock named by ``clock.backend``."""
    if config.clock.backend == "fixed":
        if not config.clock.fixed_at:
            raise ValueError("clock.backend = 'fixed' needs clock.fixed_at (an ISO-8601 instant)")
        return FixedClock(datetime.fromisoformat(config.clock.fixed_at))
    c = config.clock
    return SystemClock(state_path=config.resolve(c.state_path),
                       rtc=SysfsRtc(c.rtc_path) if c.rtc == "sysfs" else NoRtc(),
                       timesync_flag=c.ntp_synchronized_flag if c.trust_ntp else None,
                       jump_tolerance_s=c.jump_tolerance_s)


def disk_state(scanlog: ScanLog) -> str | None:
    """What the status says about the SD card: None when fine."""
    if scanlog.disk_full:
        return ("disk full: scans show CHECK and are not recorded; free space on the SD card (nothing "
                "committed is lost, recording resumes by itself)")
    if scanlog.disk_low:
        return ("disk low: only unacknowledged records are left to prune; sync this device or free space on "
                "the SD card")
    return None


class LiveVerifier:
    """The daemon's verifier: answers CHECK / DEVICE_NOT_READY until trust list and policy exist.

    The sync client installs new lists while the daemon runs; ``reload`` swaps them in atomically.
    Greens pass the anti-passback guard last (``debounce.repeat_pass_window_s``).
    """

    def __init__(self, config: Config, clock: Clock, publisher_keys: list[Ed25519PublicKey], floor: VersionFloor):
        self._config, self._clock, self._keys, self.floor = config, clock, publisher_keys, floor
        self._passback = PassbackGuard(config.debounce.repeat_pass_window_s, clock.monotonic)
        self._lock = threading.Lock()
        self.current: Verifier | None = None
        self.risk: RiskLookup | None = None
        #: why the last load of the trust list or policy on the card was refused (None when fine)
        self.lists_refused: str | None = None
        self.reload("all")

    def verify(self, text: str) -> Verdict:
        current = self.current
        if current is None:
            return Verdict(Decision.CHECK, Reason.DEVICE_NOT_READY)
        return self._passback.check(current.verify(text))

    @property
    def policy_version(self) -> int | None:
        return None if self.current is None else self.current.policy_version

    @property
    def risk_version(self) -> int | None:
        return None if self.risk is None else self.risk.version

    def reload(self, kind: str, version: int | None = None) -> None:
        """Load (or re-load after an install) the trust list, policy and risk list from disk."""
        config = self._config
        with self._lock:
            if self.risk is None:  # one store object for the process: the sync client applies into it
                self.risk = open_risk_store(config, self._keys, self.floor)
            try:
                trust, policy = load_device_lists(config, self._keys, self.floor)
            except (TrustError, PolicyError, RollbackError, OSError) as exc:
                present = config.resolve(config.trust.path).exists() and config.resolve(config.policy.path).exists()
                self.lists_refused = str(exc) if present else None  # missing: not provisioned yet
                if self.lists_refused is not None:
                    log.error("event=device_list_refused error=%r action=keeping the lists in use (CHECK until "
                              "there are some); the next sync installs verified lists; if this repeats, "
                              "check the SD card", str(exc))
                if self.current is None:
                    log.warning("event=verifier_not_ready error=%r action=verdicts are CHECK until the first "
                                "sync installs a trust list and policy", str(exc))
                else:
                    log.error("event=verifier_reload_failed kind=%s error=%r action=keeping the lists in use",
                              kind, str(exc))
                return
            self.lists_refused = None
            if trust.issued_at is not None:  # signed, checked at every load: the time is at least this
                self._clock.note_signed_time(trust.issued_at, "trust_list")
            value_sets = load_value_sets(config, self._keys, self.floor)
            if self.current is None:
                self.current = Verifier(trust=trust, risk=self.risk, policy=policy, clock=self._clock,
                                        value_sets=value_sets)
                log.info("event=verifier_ready trust_version=%s policy_version=%s risk_version=%s "
                         "valuesets_version=%s", trust.version, policy.version, self.risk_version, value_sets.version)
            else:
                self.current.install(trust=trust, policy=policy, risk=self.risk, value_sets=value_sets)


class Appliance:
    """Scan log, verifier, sync client, lamps, camera and daemon of one device."""

    def __init__(self, config: Config, *, clock: Clock | None = None, source: FrameSource | None = None,
                 light: Light | None = None, light_stream: TextIO | None = None,
                 on_decision: Callable[[DecisionEvent], None] | None = None):
        self.config = config
        config.device.data_dir.mkdir(parents=True, exist_ok=True)
        self.clock = clock or make_clock(config)
        self.publisher_keys = load_publisher_keys(config)
        self.scanlog = open_scanlog(config)
        self.floor = open_floor(config)
        self.verifier = LiveVerifier(config, self.clock, self.publisher_keys, self.floor)
        warm_up_readers()  # the first scan after boot must be as fast as every other
        self.sync = None
        if config.sync.server_url:
            self.sync = build_sync_client(config, scanlog=self.scanlog, clock=self.clock,
                                          publisher_keys=self.publisher_keys, risk_store=self.verifier.risk,
                                          floor=self.floor, on_installed=self.verifier.reload,
                                          heartbeat=self.heartbeat)
        self.light = light or make_light(config.light, stream=light_stream)
        self.daemon = Daemon(
            source=source or make_source(config), decoder=Decoder(config.decoder),
            debouncer=Debouncer.from_config(config.debounce), verifier=self.verifier, recorder=self.record,
            light=self.light, clock=self.clock, camera=config.camera, health_probes=self.health_probes(),
            status_writer=self._status_writer(), status_extra=self.status_extra, on_decision=on_decision,
            day_counter=DayCounter(config.status.zone(), seed=self.scanlog.decision_counts))
        self._stop_pruning = threading.Event()

    # -- the scan path -----------------------------------------------------------------------
    def record(self, verdict: Verdict, captured_monotonic: float) -> None:
        """Commit one decision durably; the daemon lights the lamp only after this returns."""
        self.scanlog.append(verdict, wall_time=self.clock.now(), monotonic=captured_monotonic,
                            clock_trusted=self.clock.trusted(), policy_version=self.verifier.policy_version,
                            risk_version=self.verifier.risk_version)

    # -- health ------------------------------------------------------------------------------
    def health_probes(self) -> list[Callable[[], Iterable[Fault]]]:
        """Cheap probes the daemon polls about once a second."""
        return [self._ready_fault, self._clock_fault, self._lists_fault, self._risk_fault, self._disk_fault,
                self._server_fault]

    def enrolled(self) -> bool:
        """Provisioned with the pinned publisher key and, when it syncs, accepted by the server once."""
        if not self.publisher_keys:
            return False
        return self.sync is None or self.scanlog.last_success_at() is not None

    def _ready_fault(self) -> Iterable[Fault]:
        """Not enrolled, or no trust list / policy: every verdict would be CHECK, so say so."""
        return () if self.verifier.current is not None and self.enrolled() else (Fault.DEVICE_NOT_READY,)

    def _clock_fault(self) -> Iterable[Fault]:
        return () if self.clock.trusted() else (Fault.CLOCK_UNTRUSTED,)

    def _lists_fault(self) -> Iterable[Fault]:
        """A list on the card refused at open (edited, damaged or rolled back) until a sync repairs it."""
        risk = self.verifier.risk
        if self.verifier.lists_refused is not None or (risk is not None and risk.refused is not None):
            return (Fault.LIST_DAMAGED,)
        return ()

    def _risk_fault(self) -> Iterable[Fault]:
        current, risk = self.verifier.current, self.verifier.risk
        if current is None or risk is None or risk.published_at is None:
            return (Fault.RISK_STALE,)
        max_age = timedelta(hours=current.policy.max_risk_list_age_hours)
        return (Fault.RISK_STALE,) if self.clock.now() - risk.published_at > max_age else ()

    def _disk_fault(self) -> Iterable[Fault]:
        if self.scanlog.disk_full:
            self.scanlog.recheck_disk()
        return (Fault.DISK_LOW,) if self.scanlog.disk_low or self.scanlog.disk_full else ()

    def _prune_loop(self) -> None:
        """Prune the scan log (retention, free-space floor) off the scan path, once a minute."""
        while True:
            try:
                self.scanlog.prune(retention_days=self.config.scanlog.retention_days,
                                   min_free_mb=self.config.scanlog.min_free_mb)
            except Exception as exc:  # never let housekeeping take the device down
                log.error("event=prune_failed error=%r action=check the SD card; retrying in %d s",
                          exc, PRUNE_INTERVAL_S)
            if self._stop_pruning.wait(PRUNE_INTERVAL_S):
                return

    def _server_fault(self) -> Iterable[Fault]:
        if self.sync is None:
            return ()
        return (Fault.SERVER_UNREACHABLE,) if self.sync.unreachable_for() > self.config.sync.unreachable_alarm_s else ()

    def status_extra(self) -> DeviceStatus:
        risk = self.verifier.risk
        clock = self.clock.reading() if isinstance(self.clock, SystemClock) else None
        return DeviceStatus(
            device_id=self.config.device.id,
            enrolled=self.enrolled(),
            policy_version=self.verifier.policy_version,
            risk_version=self.verifier.risk_version,
            risk_published_at=risk.published_at.isoformat() if risk and risk.published_at else None,
            unsynced_records=self.scanlog.pending() if self.scanlog.available else None,
            clock_untrusted_because=clock.why_untrusted if clock else None,
            clock_floor=clock.floor.isoformat(timespec="seconds") if clock else None,
            disk=disk_state(self.scanlog),
        )

    def heartbeat(self) -> Heartbeat:
        """What the sync client reports on every cycle (the daemon's snapshot plus host readings)."""
        current = self.verifier.current
        return build_heartbeat(self.daemon.snapshot(), trust_version=current.trust_version if current else None,
                               data_dir=self.config.device.data_dir)

    def _status_writer(self) -> Callable[[StatusSnapshot], None]:
        return StatusFile(self.config.resolve(self.config.status.path)).write

    # -- running -----------------------------------------------------------------------------
    def run(self, **kwargs) -> int:
        """Run the daemon (and the background sync) until stopped; the process exit code."""
        if self.sync is not None:
            self.sync.start()
        self._stop_pruning.clear()
        housekeeping = threading.Thread(target=self._prune_loop, name="scanlog-prune", daemon=True)
        housekeeping.start()
        try:
            return self.daemon.run(**kwargs)
        finally:
            self._stop_pruning.set()
            housekeeping.join(timeout=30)
            if self.sync is not None:
                self.sync.stop()

    def close(self) -> None:
        """Close the scan log (after ``run``; the demo syncs once more before closing)."""
        self.scanlog.close()


def build_appliance(config: Config) -> Appliance:
    """The whole device of ``checkpoint run``; ``.run()`` returns the process exit code."""
    return Appliance(config)
