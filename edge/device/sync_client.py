"""The device's sync client: push unsent scan records, then download verified lists and time.

Every request is signed with the device key, has a total deadline and a cap on its answer
(``edge.device.transport``). Failures are retried with full-jitter exponential backoff capped at
``backoff_max_s``, honouring Retry-After. The scan log advances only on an answer that proves
itself: an acknowledgement must lie within what was sent and name the hash of the device's own
record there. A server that answers with less than it acknowledged before (it lost data) gets
everything this card still holds again, with the seqs already pruned here declared gone for good.
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
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.config import AnswerLimits
from edge.device.transport import Answer, BoundedTransport, TransportError
from edge.lists.policy import CheckpointIdentity, parse_policy_envelope
from edge.lists.version_floor import ListKind, VersionFloor
from edge.passes.trust import TrustStore
from edge.passes.valuesets import ValueSets
from edge.scan.clock import Clock
from edge.scan.scanlog import ScanLog
from sync.wire.envelope import EnvelopeError, open_envelope
from sync.wire.errors import CheckpointError
from sync.wire.fsutil import write_atomic
from sync.wire.protocol import (
    API,
    HEADER_DEVICE,
    HEADER_SIGNATURE,
    EnrollResult,
    Heartbeat,
    PushResult,
    ReadmitRequest,
    b64,
    push_answer_signing_bytes,
    request_signing_bytes,
    unb64,
)

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


def _validate_valuesets(blob: bytes, keys: list[Ed25519PublicKey], _checkpoint: CheckpointIdentity) -> int:
    return ValueSets.from_envelope(blob, keys).version


class SyncClient:
    """Store-and-forward sync of one device with the central server."""

    def __init__(self, server_url: str, scanlog: ScanLog, device_key: Ed25519PrivateKey, *,
                 checkpoint: CheckpointIdentity | None = None, floor: VersionFloor | None = None,
                 publisher_keys: list[Ed25519PublicKey] | None = None, clock: Clock | None = None,
                 batch_size: int = 500, timeout_s: float = 10.0, backoff_base_s: float = 1.0,
                 backoff_max_s: float = 300.0, interval_s: float = 60.0,
                 trust_path: Path | None = None, policy_path: Path | None = None, risk_store: Any = None,
                 valuesets_path: Path | None = None,
                 on_installed: InstalledCallback | None = None, rng: Callable[[], float] = random.random,
                 request_deadline_s: float = 120.0, limits: AnswerLimits | None = None,
                 certificate_path: Path | None = None, spool_dir: Path | None = None,
                 enroll_token_path: Path | None = None, stager: Any = None,
                 heartbeat: Callable[[], Heartbeat] | None = None):
        self.server_url = server_url.rstrip("/")
        self.heartbeat = heartbeat
        self.scanlog = scanlog
        self.device_id = scanlog.device_id
        self._key = device_key
        self.publisher_keys = list(publisher_keys or [])
        if (trust_path or policy_path or valuesets_path) and (checkpoint is None or floor is None):
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
        self.valuesets_path = valuesets_path
        self.on_installed = on_installed
        self.request_deadline_s = request_deadline_s
        self.limits = limits or AnswerLimits()
        #: the server's enrollment certificate for this device's key (re-admission after a server restore)
        self.certificate_path = certificate_path
        self.transport = BoundedTransport(spool_dir=spool_dir)
        #: highest seq this client has sent (an acknowledgement may name no record beyond it)
        self._sent_through = 0
        self.rng = rng
        #: the one-time provisioning token; while it exists the device is not enrolled yet
        self.enroll_token_path = enroll_token_path
        #: stages signed software releases for the installer (edge.device.updates); None = no updates
        self.stager = stager
        self.last_success: float | None = None  # time.monotonic() of the last complete cycle
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- HTTP --------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: bytes = b"", *, kind: str,
                 headers: dict[str, str] | None = None, sign: bool = True) -> Answer:
        """One request whose answer may be at most ``limits.<kind>`` bytes; SyncError unless 2xx."""
        hdrs = dict(headers or {})
        if sign:
            hdrs[HEADER_DEVICE] = self.device_id
            hdrs[HEADER_SIGNATURE] = b64(self._key.sign(request_signing_bytes(method, path, body)))
        if body:
            hdrs.setdefault("Content-Type", "application/json")
        try:
            answer = self.transport.request(method, self.server_url + path, body=body, headers=hdrs,
                                            max_bytes=getattr(self.limits, kind), deadline_s=self.request_deadline_s,
                                            read_timeout_s=self.timeout_s)
        except TransportError as exc:
            raise SyncError(f"{method} {path}: {exc}") from None
        if answer.status in (200, 204):
            return answer
        retry_after = parse_retry_after(answer.headers.get("Retry-After"))
        detail = answer.body[:300].decode("utf-8", "replace")
        raise SyncError(f"{method} {path}: HTTP {answer.status} {detail}", status=answer.status,
                        retry_after=retry_after)

    def _public_key(self) -> bytes:
        return self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def enroll(self, token: str) -> int:
        """Register this device's public key with a provisioning token; return the server's acked seq."""
        body = json.dumps({"device_id": self.device_id, "public_key": b64(self._public_key())}).encode()
        answer = self._request("POST", f"{API}/enroll", body, kind="enrollment",
                               headers={"Authorization": f"Bearer {token}"}, sign=False)
        result = self._enroll_result(answer)
        log.info("event=device_enrolled device=%s server=%s acked_seq=%d", self.device_id, self.server_url,
                 result.acked_seq)
        return result.acked_seq

    def _enroll_result(self, answer: Answer) -> EnrollResult:
        try:
            result = EnrollResult.model_validate_json(answer.body)
        except ValueError as exc:
            raise SyncError(f"unreadable enrollment answer ({len(answer.body)} bytes): {exc}") from None
        if result.certificate and self.certificate_path is not None:
            write_atomic(self.certificate_path, result.certificate.encode())
        return result

    def _readmit(self) -> bool:
        """The server refused our signature: if it lost us (database restored or emptied), prove with
        the enrollment certificate that this key is the enrolled one. True once re-admitted."""
        path = self.certificate_path
        certificate = path.read_text(encoding="utf-8").strip() if path is not None and path.exists() else ""
        if not certificate:
            log.error("event=sync_unauthorized device=%s public_key=%s action=the server does not accept this "
                      "device's key and no enrollment certificate is stored: on the server run 'checkpoint "
                      "server enroll --device-id %s --public-key <this key as PEM>' (or provision again)",
                      self.device_id, b64(self._public_key()), self.device_id)
            return False
        body = ReadmitRequest(device_id=self.device_id, certificate=certificate).model_dump_json().encode()
        try:
            result = self._enroll_result(self._request("POST", f"{API}/readmit", body, kind="enrollment"))
        except SyncError as exc:
            if exc.status in (401, 409, 422):
                log.error("event=readmit_refused device=%s error=%s action=the server refused this device's "
                          "enrollment certificate: an operator re-enrolls it ('checkpoint server enroll "
                          "--device-id %s')", self.device_id, exc, self.device_id)
            else:
                log.warning("event=readmit_failed device=%s error=%s action=none; retried next cycle",
                            self.device_id, exc)
            return False
        log.warning("event=device_readmitted device=%s server_acked_seq=%d action=none; the server had lost this "
                    "device (restored database?): resending what it lacks", self.device_id, result.acked_seq)
        return True

    def _fetch_certificate(self) -> None:
        """Devices enrolled before certificates existed fetch theirs once (while the server knows them)."""
        if self.certificate_path is None or self.certificate_path.exists():
            return
        try:
            self._enroll_result(self._request("GET", f"{API}/enrollment", kind="enrollment"))
        except SyncError as exc:
            log.warning("event=enrollment_certificate_unavailable error=%s action=none; retried next cycle", exc)

    def ensure_enrolled(self) -> bool:
        """Enroll with the provisioning token file if one is waiting; True when it enrolled now.

        The one place the device enrolls: first boot only leaves the token in the data folder, and
        every sync cycle (daemon or ``checkpoint sync``) calls this first, so a device that booted
        offline enrolls as soon as a network appears, retried with the cycle's back-off. The token
        is deleted once the server accepted the key (enrolling the same key again is harmless).
        """
        path = self.enroll_token_path
        if path is None:
            return False
        try:
            token = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return False
        if not token:
            raise SyncError(f"enrollment token file {path} is empty: provision the device again")
        try:
            self.enroll(token)
        except SyncError as exc:
            if exc.status in (401, 409):
                log.error("event=enroll_refused status=%s error=%s action=%s", exc.status, exc,
                          "another key is enrolled for this device id: 'checkpoint server enroll --replace'"
                          if exc.status == 409 else f"the token is wrong, expired or used: make a new one with "
                          f"'checkpoint server token {self.device_id}' and put it in {path}")
            raise
        path.unlink(missing_ok=True)
        log.info("event=enroll_token_used path=%s", path)
        return True

    # -- push ----------------------------------------------------------------------------------
    def push(self) -> int:
        """Send every unsent record in batches; return how many the server newly acknowledged.

        An answer is believed only within the batch sent and when its ``acked_hash`` is this log's
        hash at ``acked_seq``. An answer below the batch (the server lost records) rewinds the
        acknowledgement once per call and resends; records pruned here are declared gone.
        """
        acked_before = self.scanlog.acked_seq
        rewound = False
        while True:
            batch = self.scanlog.unsent(self.batch_size)
            if not batch:
                break
            first, last = batch[0]["seq"], batch[-1]["seq"]
            message: dict[str, Any] = {"device_id": self.device_id, "records": batch}
            if first > 1 and self.scanlog.hash_at(first - 1) is None:
                message["pruned_through"] = first - 1  # the server may lack them: gone for good
            body = json.dumps(message, separators=(",", ":")).encode()
            answer = self._request("POST", f"{API}/push", body, kind="push")
            self._sent_through = max(self._sent_through, last)
            try:
                result = PushResult.model_validate_json(answer.body)
            except ValueError as exc:
                raise SyncError(f"unreadable push answer ({len(answer.body)} bytes): {exc}") from None
            acked = self._proven_ack(result, batch, body)
            if acked >= first:
                self.scanlog.acknowledge(acked)
                if acked < last:
                    raise SyncError(f"server holds up to seq {acked} after a batch ending at {last}: will resend")
            elif acked < first - 1 and not rewound:
                log.warning("event=server_behind device=%s server_acked_seq=%d device_acked_seq=%d action=none; "
                            "resending what this card holds (the server lost records: restored or emptied "
                            "database)", self.device_id, acked, first - 1)
                self.scanlog.rewind_ack(acked)
                rewound = True
            else:
                raise SyncError(f"server stored none of the batch {first}-{last} (holds up to seq {acked}): "
                                "will resend")
        return max(0, self.scanlog.acked_seq - acked_before)

    def _proven_ack(self, result: PushResult, batch: list[dict[str, Any]], body: bytes) -> int:
        """``result.acked_seq`` if the answer proves it, else SyncError (nothing is acknowledged).

        With the publisher key pinned, the answer must carry the server's signature over itself and
        this request: a man in the middle who saw the records (and so their hashes) still cannot
        claim they were stored.
        """
        first, last = batch[0]["seq"], batch[-1]["seq"]
        acked, claimed = result.acked_seq, result.acked_hash
        sent = max(last, self._sent_through)  # an earlier batch may have filled in beyond this one
        if self.publisher_keys and not self._signed_by_server(result, body):
            problem = "is not signed by the server's publisher key for this request"
        elif result.device_id != self.device_id:
            problem = f"answers for device {result.device_id!r}"
        elif acked > sent:
            problem = f"acknowledges seq {acked}, beyond the last record sent ({sent})"
        elif acked < 0:
            problem = f"acknowledges a negative seq {acked}"
        elif acked >= first and claimed != (batch[acked - first]["hash"] if acked <= last
                                            else self.scanlog.hash_at(acked)):
            problem = f"names hash {claimed!r} for seq {acked}, not this device's record"
        elif 0 < acked < first and claimed is not None and self.scanlog.hash_at(acked) not in (None, claimed):
            problem = f"holds a different record at seq {acked}"
        else:
            return acked
        log.error("event=sync_ack_refused device=%s problem=%r action=nothing marked acknowledged; retrying later. "
                  "If it persists, check the server (or anything between it and this device)", self.device_id,
                  problem)
        raise SyncError(f"push answer refused: it {problem}")

    def _signed_by_server(self, result: PushResult, body: bytes) -> bool:
        if not result.signature:
            return False
        try:
            signature = unb64(result.signature)
        except ValueError:
            return False
        signed = push_answer_signing_bytes(result, body)
        for key in self.publisher_keys:
            try:
                key.verify(signature, signed)
                return True
            except InvalidSignature:
                continue
        return False

    # -- downloads -------------------------------------------------------------------------------
    def download(self) -> tuple[list[tuple[str, int]], list[str]]:
        """Fetch server time, trust list, policy, value sets and risk updates; install each only once verified."""
        installed: list[tuple[str, int]] = []
        errors: list[str] = []
        if not self.publisher_keys:
            return installed, errors
        for name, step in (("time", self._download_time), ("trust", self._download_trust),
                           ("policy", self._download_policy), ("valuesets", self._download_valuesets),
                           ("risk", self._download_risk), ("software", self._download_software)):
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
                    log.error("event=sync_on_installed_failed kind=%s error=%r action=the new list is on disk "
                              "but not in use; restart the daemon (systemctl restart checkpoint)", kind, exc)
        return installed, errors

    def _download_time(self) -> list[tuple[str, int]]:
        nonce = os.urandom(16).hex()
        resp = self._request("GET", f"{API}/time?nonce={nonce}", kind="time")
        if resp.status == 204:
            return []
        env = open_envelope(resp.body, "time", self.publisher_keys)
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
        resp = self._request("GET", f"{API}/{kind}?have={have}", kind=kind)
        if resp.status == 204:
            return []
        # refusals (forged, another checkpoint's policy, older than the floor) are logged by download()
        version = validate(resp.body, self.publisher_keys, checkpoint)
        floor.check(kind, version, f"downloaded {kind} list")
        if installed is not None and version <= installed:
            raise EnvelopeError(f"{kind} version {version} is not newer than installed {installed} (rollback?)")
        write_atomic(path, resp.body)
        floor.raise_to(kind, version)  # after the file: a crash in between leaves the floor low, not high
        log.info("event=list_installed kind=%s version=%d previous=%s path=%s", kind, version,
                 installed if installed is not None else "none", path)
        self._note_signed_time(open_envelope(resp.body, kind, self.publisher_keys).issued_at, kind)
        return [(kind, version)]

    def _download_trust(self) -> list[tuple[str, int]]:
        return self._download_envelope("trust", self.trust_path, _validate_trust)

    def _download_policy(self) -> list[tuple[str, int]]:
        return self._download_envelope("policy", self.policy_path, _validate_policy)

    def _download_valuesets(self) -> list[tuple[str, int]]:
        """The EU value sets as the publisher last sealed them (new codes stop being unknown_code)."""
        return self._download_envelope("valuesets", self.valuesets_path, _validate_valuesets)

    def _download_risk(self) -> list[tuple[str, int]]:
        store = self.risk_store
        if store is None:
            return []
        have = 0 if getattr(store, "needs_snapshot", False) else int(store.version)
        resp = self._request("GET", f"{API}/risk?have={have}", kind="risk")
        if resp.status == 204:
            return []
        blobs = cbor2.loads(resp.body)
        if not isinstance(blobs, list | tuple) or not all(isinstance(b, bytes) for b in blobs):
            raise ValueError("risk answer is not a list of signed updates")
        version = have
        for blob in blobs:
            version = store.apply(blob)  # verifies; raises RiskUpdateError and keeps the current list
        log.info("event=list_installed kind=risk version=%d previous=%d updates=%d", version, have, len(blobs))
        if blobs and store.published_at is not None:  # from the signed updates just verified
            self._note_signed_time(store.published_at, "risk")
        return [("risk", version)] if version != have else []

    def _download_software(self) -> list[tuple[str, int]]:
        """Stage a newer signed release for the installer (the daemon itself never installs one)."""
        stager = self.stager
        if stager is None:
            return []
        answer = self._request("GET", f"{API}/software/{stager.target}?have={stager.have()}", kind="software")
        if answer.status == 204:
            return []
        stager.stage(answer.body, self._fetch_release_file)
        return []  # nothing for the verifier to reload: the installer takes it from here

    def _fetch_release_file(self, sha256: str, into: Path) -> None:
        """One release file, at most ``limits.release_file`` bytes, into ``into`` (checked by the stager)."""
        answer = self._request("GET", f"{API}/software/files/{sha256}", kind="release_file")
        into.write_bytes(answer.body)

    # -- cycles ------------------------------------------------------------------------------------
    def send_heartbeat(self) -> bool:
        """Report the device's health (every cycle, records or not); True if the server took it.

        A server that answers but takes no heartbeats (an older one, an error) is logged and the
        records are pushed all the same; no answer at all (the network is down) fails the cycle
        at once, as the push would.
        """
        if self.heartbeat is None:
            return False
        body = self.heartbeat().model_dump_json().encode()
        try:
            self._request("POST", f"{API}/heartbeat", body, kind="heartbeat")
        except SyncError as exc:
            if exc.status is None:
                raise
            log.warning("event=heartbeat_not_taken error=%s action=none needed; records are pushed anyway", exc)
            return False
        return True

    def run_once(self) -> SyncResult:
        """One cycle: enroll if still needed, heartbeat, push all unsent batches, then download.

        Raises SyncError on a failed request.
        """
        self.ensure_enrolled()
        self.send_heartbeat()
        try:
            pushed = self.push()
        except SyncError as exc:
            if exc.status != 401 or not self._readmit():
                raise
            pushed = self.push()
        self._fetch_certificate()
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
                log.warning("event=sync_retry attempt=%d delay_s=%.2f error=%s action=retrying; records stay on "
                            "the card until the server acknowledges them", attempt, delay, exc)
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
                log.warning("event=sync_failed attempt=%d retry_in_s=%.1f error=%s action=retrying with back-off; "
                            "records stay on the card until acknowledged; check the network and %s if it persists",
                            attempt, delay, exc, self.server_url)
            except Exception as exc:  # never let the thread die
                delay = backoff_delay(attempt, base=self.backoff_base_s, cap=self.backoff_max_s, rng=self.rng)
                attempt += 1
                log.exception("event=sync_crashed retry_in_s=%.1f error=%r action=retrying; report this log line "
                              "(a bug in the sync client)", delay, exc)
            self._stop.wait(delay)
