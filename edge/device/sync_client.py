"""The device's sync client: push unsent scan records, then download verified lists and time.

Every request is signed with the device key and has an explicit timeout. Failures are retried
with full-jitter exponential backoff capped at ``backoff_max_s``, honouring Retry-After. The scan
log advances only on the server's answer, so a restart mid-batch just resends (idempotently).
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import cbor2
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.lists.policy import CheckpointIdentity, parse_policy_envelope
from edge.lists.version_floor import ListKind, VersionFloor
from edge.passes.trust import TrustStore
from edge.scan.clock import Clock
from edge.scan.scanlog import ScanLog
from sync.wire.envelope import EnvelopeError, open_envelope
from sync.wire.errors import CheckpointError
from sync.wire.fsutil import write_atomic
from sync.wire.protocol import API, HEADER_DEVICE, HEADER_SIGNATURE, PushResult, b64, request_signing_bytes

log = logging.getLogger(__name__)

InstalledCallback = Callable[[str, int], None]


class SyncError(CheckpointError, RuntimeError):
    """One sync attempt failed; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass
class SyncResult:
    pushed: int = 0
    acked_seq: int = 0
    installed: list[tuple[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(attempt: int, *, base: float, cap: float, retry_after: float | None = None,
                  rng: Callable[[], float] = random.random) -> float:
    """Full jitter: uniform(0, min(cap, base * 2**attempt)); a Retry-After hint wins (capped)."""
    if retry_after is not None:
        return min(retry_after, cap)
    return rng() * min(cap, base * (2 ** min(attempt, 30)))


def _validate_trust(blob: bytes, keys: list[Ed25519PublicKey], _checkpoint: CheckpointIdentity) -> int:
    return TrustStore.from_envelope(blob, keys).version


def _validate_policy(blob: bytes, keys: list[Ed25519PublicKey], checkpoint: CheckpointIdentity) -> int:
    return parse_policy_envelope(blob, keys, checkpoint).version


class SyncClient:
    """Store-and-forward sync of one device with the central server."""

    def __init__(self, server_url: str, scanlog: ScanLog, device_key: Ed25519PrivateKey, *,
                 checkpoint: CheckpointIdentity | None = None, floor: VersionFloor | None = None,
                 publisher_keys: list[Ed25519PublicKey] | None = None, clock: Clock | None = None,
                 batch_size: int = 500, timeout_s: float = 10.0, backoff_base_s: float = 1.0,
                 backoff_max_s: float = 300.0, interval_s: float = 60.0,
                 trust_path: Path | None = None, policy_path: Path | None = None, risk_store: Any = None,
                 on_installed: InstalledCallback | None = None, session: requests.Session | None = None,
                 rng: Callable[[], float] = random.random):
        self.server_url = server_url.rstrip("/")
        self.scanlog = scanlog
        self.device_id = scanlog.device_id
        self._key = device_key
        self.publisher_keys = list(publisher_keys or [])
        if (trust_path or policy_path) and (checkpoint is None or floor is None):
            raise ValueError("a client that installs trust lists or policies needs the device's checkpoint "
                             "(policies are for named checkpoints) and its anti-rollback floor")
        self.checkpoint = checkpoint
        self.floor = floor
        self.clock = clock
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.interval_s = interval_s
        self.trust_path, self.policy_path, self.risk_store = trust_path, policy_path, risk_store
        self.on_installed = on_installed
        self.session = session or requests.Session()
        self.rng = rng
        self.last_success: float | None = None  # time.monotonic() of the last complete cycle
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- HTTP --------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: bytes = b"", *, headers: dict[str, str] | None = None,
                 sign: bool = True) -> requests.Response:
        url = self.server_url + path
        hdrs = dict(headers or {})
        if sign:
            hdrs[HEADER_DEVICE] = self.device_id
            hdrs[HEADER_SIGNATURE] = b64(self._key.sign(request_signing_bytes(method, path, body)))
        if body:
            hdrs.setdefault("Content-Type", "application/json")
        try:
            resp = self.session.request(method, url, data=body or None, headers=hdrs,
                                        timeout=(min(5.0, self.timeout_s), self.timeout_s))
        except requests.RequestException as exc:
            raise SyncError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if resp.status_code in (200, 204):
            return resp
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        detail = resp.text[:300]
        raise SyncError(f"{method} {path}: HTTP {resp.status_code} {detail}", status=resp.status_code,
                        retry_after=retry_after)

    def enroll(self, token: str) -> int:
        """Register this device's public key with a provisioning token; return the server's acked seq."""
        raw = self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        body = json.dumps({"device_id": self.device_id, "public_key": b64(raw)}).encode()
        resp = self._request("POST", f"{API}/enroll", body, headers={"Authorization": f"Bearer {token}"}, sign=False)
        acked = int(resp.json().get("acked_seq", 0))
        log.info("event=device_enrolled device=%s server=%s acked_seq=%d", self.device_id, self.server_url, acked)
        return acked

    # -- push ----------------------------------------------------------------------------------
    def push(self) -> int:
        """Send every unsent record in batches; return how many the server newly acknowledged."""
        acked_before = self.scanlog.acked_seq
        while True:
            batch = self.scanlog.unsent(self.batch_size)
            if not batch:
                break
            body = json.dumps({"device_id": self.device_id, "records": batch}, separators=(",", ":")).encode()
            resp = self._request("POST", f"{API}/push", body)
            try:
                result = PushResult.model_validate_json(resp.content)
            except ValueError as exc:
                raise SyncError(f"unreadable push answer ({len(resp.content)} bytes): {exc}") from None
            acked = self.scanlog.acknowledge(result.acked_seq)
            if acked < batch[-1]["seq"]:
                raise SyncError(f"server holds up to seq {result.acked_seq} after a batch ending at "
                                f"{batch[-1]['seq']}: will resend")
        return self.scanlog.acked_seq - acked_before

    # -- downloads -------------------------------------------------------------------------------
    def download(self) -> tuple[list[tuple[str, int]], list[str]]:
        """Fetch server time, trust list, policy and risk updates; install each only once verified."""
        installed: list[tuple[str, int]] = []
        errors: list[str] = []
        if not self.publisher_keys:
            return installed, errors
        for name, step in (("time", self._download_time), ("trust", self._download_trust),
                           ("policy", self._download_policy), ("risk", self._download_risk)):
            try:
                installed.extend(step())
            except SyncError:
                raise
            except Exception as exc:  # a bad list must never stop the sync loop
                log.error("event=sync_download_rejected kind=%s error=%s action=keeping the current %s; "
                          "check what the server (or anything between it and this device) serves",
                          name, exc, name)
                errors.append(f"{name}: {exc}")
        for kind, version in installed:
            if self.on_installed is not None:
                try:
                    self.on_installed(kind, version)
                except Exception as exc:
                    log.error("event=sync_on_installed_failed kind=%s error=%r", kind, exc)
        return installed, errors

    def _download_time(self) -> list[tuple[str, int]]:
        nonce = os.urandom(16).hex()
        resp = self._request("GET", f"{API}/time?nonce={nonce}")
        if resp.status_code == 204:
            return []
        env = open_envelope(resp.content, "time", self.publisher_keys)
        payload = json.loads(env.payload)
        if payload.get("nonce") != nonce:
            raise EnvelopeError("server time answers another request (replayed?)")
        server_now = datetime.fromisoformat(payload["now"])
        if self.clock is not None:
            self.clock.accept_server_time(server_now)  # ClockError: older than a signed time already seen
            log.info("event=server_time_accepted server_now=%s", server_now.isoformat())
        return []

    def _note_signed_time(self, signed_at: datetime, kind: str) -> None:
        """A verified list's publication time raises the clock's floor (the real time is at least this)."""
        if self.clock is not None:
            self.clock.note_signed_time(signed_at, kind)

    def _installed_version(self, path: Path, kind: ListKind, checkpoint: CheckpointIdentity, floor: VersionFloor,
                           validate: Callable[[bytes, list[Ed25519PublicKey], CheckpointIdentity], int]) -> int | None:
        """The version of the list file in use, or None when it is missing, damaged, not for this
        checkpoint, or older than the anti-rollback floor (then the file must be replaced)."""
        try:
            version = validate(path.read_bytes(), self.publisher_keys, checkpoint)
        except FileNotFoundError:
            return None
        except (OSError, CheckpointError, ValueError) as exc:
            log.error("event=list_file_unusable kind=%s path=%s error=%r action=fetching version %d or newer "
                      "from the server", kind, path, str(exc), floor.get(kind))
            return None
        return version if version >= floor.get(kind) else None

    def _download_envelope(self, kind: ListKind, path: Path | None,
                           validate: Callable[[bytes, list[Ed25519PublicKey], CheckpointIdentity], int]
                           ) -> list[tuple[str, int]]:
        """Install the server's ``kind`` list if it verifies, is for this checkpoint and is newer
        than the file in use; never older than the floor, even when the file in use is damaged."""
        checkpoint, floor = self.checkpoint, self.floor
        if path is None or checkpoint is None or floor is None:  # __init__ refuses a path without both
            return []
        installed = self._installed_version(path, kind, checkpoint, floor, validate)
        # a damaged file may be repaired by the very version it held (the floor), never an older one
        have = installed if installed is not None else max(floor.get(kind) - 1, 0)
        resp = self._request("GET", f"{API}/{kind}?have={have}")
        if resp.status_code == 204:
            return []
        # refusals (forged, another checkpoint's policy, older than the floor) are logged by download()
        version = validate(resp.content, self.publisher_keys, checkpoint)
        floor.check(kind, version, f"downloaded {kind} list")
        if installed is not None and version <= installed:
            raise EnvelopeError(f"{kind} version {version} is not newer than installed {installed} (rollback?)")
        write_atomic(path, resp.content)
        floor.raise_to(kind, version)  # after the file: a crash in between leaves the floor low, not high
        log.info("event=list_installed kind=%s version=%d previous=%s path=%s", kind, version,
                 installed if installed is not None else "none", path)
        self._note_signed_time(open_envelope(resp.content, kind, self.publisher_keys).issued_at, kind)
        return [(kind, version)]

    def _download_trust(self) -> list[tuple[str, int]]:
        return self._download_envelope("trust", self.trust_path, _validate_trust)

    def _download_policy(self) -> list[tuple[str, int]]:
        return self._download_envelope("policy", self.policy_path, _validate_policy)

    def _download_risk(self) -> list[tuple[str, int]]:
        store = self.risk_store
        if store is None:
            return []
        have = 0 if getattr(store, "needs_snapshot", False) else int(store.version)
        resp = self._request("GET", f"{API}/risk?have={have}")
        if resp.status_code == 204:
            return []
        blobs = cbor2.loads(resp.content)
        if not isinstance(blobs, list | tuple) or not all(isinstance(b, bytes) for b in blobs):
            raise ValueError("risk answer is not a list of signed updates")
        version = have
        for blob in blobs:
            version = store.apply(blob)  # verifies; raises RiskUpdateError and keeps the current list
        log.info("event=list_installed kind=risk version=%d previous=%d updates=%d", version, have, len(blobs))
        if blobs and store.published_at is not None:  # from the signed updates just verified
            self._note_signed_time(store.published_at, "risk")
        return [("risk", version)] if version != have else []

    # -- cycles ------------------------------------------------------------------------------------
    def run_once(self) -> SyncResult:
        """One cycle: push all unsent batches, then download. Raises SyncError on a failed request."""
        pushed = self.push()
        installed, errors = self.download()
        self.last_success = time.monotonic()
        self.scanlog.mark_success()
        result = SyncResult(pushed=pushed, acked_seq=self.scanlog.acked_seq, installed=installed, errors=errors)
        log.info("event=sync_ok pushed=%d acked_seq=%d installed=%s", pushed, result.acked_seq, installed)
        return result

    def sync_until_done(self, *, deadline_s: float = 600.0, sleep: Callable[[float], None] = time.sleep) -> SyncResult:
        """Retry ``run_once`` with backoff until one cycle succeeds with nothing left to send."""
        end = time.monotonic() + deadline_s
        attempt = 0
        while True:
            try:
                result = self.run_once()
                if self.scanlog.pending() == 0:
                    return result
                attempt = 0
            except SyncError as exc:
                delay = backoff_delay(attempt, base=self.backoff_base_s, cap=self.backoff_max_s,
                                      retry_after=exc.retry_after, rng=self.rng)
                attempt += 1
                if time.monotonic() + delay > end:
                    raise
                log.warning("event=sync_retry attempt=%d delay_s=%.2f error=%s", attempt, delay, exc)
                sleep(delay)

    def unreachable_for(self) -> float:
        """Seconds since the last successful cycle (since start-up if none yet)."""
        return time.monotonic() - (self.last_success if self.last_success is not None else self._started)

    # -- background thread -------------------------------------------------------------------------
    def start(self) -> None:
        """Sync in a background thread every ``interval_s`` (with backoff after failures)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sync-client", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


    def _loop(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                self.run_once()
                attempt = 0
                delay = self.interval_s
            except SyncError as exc:
                delay = backoff_delay(attempt, base=self.backoff_base_s, cap=self.backoff_max_s,
                                      retry_after=exc.retry_after, rng=self.rng)
                attempt += 1
                log.warning("event=sync_failed attempt=%d retry_in_s=%.1f error=%s", attempt, delay, exc)
            except Exception as exc:  # never let the thread die
                delay = backoff_delay(attempt, base=self.backoff_base_s, cap=self.backoff_max_s, rng=self.rng)
                attempt += 1
                log.exception("event=sync_crashed retry_in_s=%.1f error=%r", delay, exc)
            self._stop.wait(delay)
