"""One-time enrollment tokens: made at provisioning, bound to one device id, expiring, single use.

A device proves it is the one provisioned for its id by presenting its token once, with the
public key it made on first boot. The server keeps only the token's SHA-256 (a 256-bit random
value needs no slow hash), compares digests in constant time, counts wrong guesses per device
id in the database (so every server process sees them) and, after a few, answers further wrong
guesses 429 for a while. The right token still enrolls during such a lock: device ids are not
secret, so a lock that held the genuine token back would let anyone keep a checkpoint from ever
enrolling, and guessing 256 random bits is hopeless at the rates per address allowed anyway. A
token of the wrong length is refused before any lookup. Another key already enrolled for the id
is never replaced unless the token was issued to re-admit a re-provisioned device.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from enum import Enum

from sync.server.settings import RequestLimits
from sync.server.storage import SQLStorage
from sync.wire.errors import CheckpointError

log = logging.getLogger(__name__)

#: tokens are ``secrets.token_urlsafe(32)``: 43 characters; anything shorter is refused unread
MIN_TOKEN_LENGTH = 32
MAX_TOKEN_LENGTH = 128
DEFAULT_TOKEN_TTL_S = 30 * 24 * 3600


class EnrollmentError(CheckpointError, ValueError):
    """A token could not be issued (unknown or revoked device, bad lifetime)."""


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def issue_token(store: SQLStorage, device_id: str, *, ttl_s: int = DEFAULT_TOKEN_TTL_S,
                replace_key: bool = False, now: int | None = None) -> str:
    """Make the one-time token of ``device_id`` (replacing an older one) and return it.

    ``replace_key``: the token may enroll a new key over an enrolled one (a re-provisioned device).
    A revoked device gets only such a token: it stays revoked (its old key, perhaps on a stolen card,
    refused) until a new key enrolls with the token, which lifts the revocation.
    """
    if ttl_s <= 0:
        raise EnrollmentError("a token must live for some time (--ttl > 0)")
    if store.revocation(device_id) is not None and not replace_key:
        raise EnrollmentError(f"device {device_id} is revoked: re-admit it with its key ('checkpoint server "
                              "readmit'), or give it a token for a new key ('readmit --new-token')")
    now = int(time.time()) if now is None else now
    token = secrets.token_urlsafe(32)
    store.put_enroll_token(device_id, token_digest(token), now, now + ttl_s, replace_key=replace_key)
    return token


class Outcome(Enum):
    ENROLLED = "enrolled"
    REFUSED = "refused"        # wrong, unknown, used or expired token: 401, one generic answer
    LOCKED = "locked"          # a wrong guess after too many for this device: 429
    KEY_CONFLICT = "conflict"  # another key is enrolled and the token may not replace it: 409


@dataclass(frozen=True)
class Redemption:
    outcome: Outcome
    #: why, for the log and the audit trail only (never sent to the client)
    reason: str
    retry_after_s: int = 0


def redeem_token(store: SQLStorage, device_id: str, token: str, public_key: bytes, limits: RequestLimits,
                 *, now: int | None = None) -> Redemption:
    """Enroll ``public_key`` for ``device_id`` if ``token`` is its live one-time token."""
    now = int(time.time()) if now is None else now
    if not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH:
        return Redemption(Outcome.REFUSED, f"token of {len(token)} characters (need {MIN_TOKEN_LENGTH}+)")
    row = store.enroll_token(device_id)
    if row is None:
        return Redemption(Outcome.REFUSED, "no token issued for this device id")
    digest = token_digest(token)
    if not hmac.compare_digest(digest, row.token_hash):
        if row.locked_until > now:
            return Redemption(Outcome.LOCKED, f"token locked after {row.failures} wrong guesses",
                              retry_after_s=row.locked_until - now)
        failures = store.enroll_token_failed(device_id, now, max_failures=limits.token_max_failures,
                                             lock_s=limits.token_lock_s)
        return Redemption(Outcome.REFUSED, f"wrong token (guess {failures})")
    # revoking deletes a device's token, so a token of a revoked device was issued after the
    # revocation, for a new key: it enrolls one and only then lifts the revocation
    revoked = store.revocation(device_id) is not None
    if revoked and not row.replace_key:
        return Redemption(Outcome.REFUSED, "device is revoked")
    existing = store.device_key(device_id)
    if row.used_at is not None:
        # the device's retry after a lost answer: same token, same key, nothing to change (but a
        # revocation left by a server stopped between enrolling the new key and lifting it)
        if existing == public_key:
            if revoked:
                store.readmit(device_id)
            return Redemption(Outcome.ENROLLED, "already enrolled with this key")
        return Redemption(Outcome.REFUSED, "token already used")
    if row.expires_at <= now:
        return Redemption(Outcome.REFUSED, "token expired")
    if revoked and existing == public_key:
        return Redemption(Outcome.REFUSED, "the revoked key cannot enroll again; the token is for a new key")
    if existing is not None and existing != public_key and not row.replace_key:
        return Redemption(Outcome.KEY_CONFLICT, "another key is enrolled for this device id")
    if not store.claim_enroll_token(device_id, digest, now):
        return Redemption(Outcome.REFUSED, "token used concurrently")
    store.enroll(device_id, public_key, replace=True)
    if revoked:
        store.readmit(device_id)  # after the new key is in: the old key is never active again
        return Redemption(Outcome.ENROLLED, "enrolled a new key; revocation lifted")
    return Redemption(Outcome.ENROLLED, "re-enrolled with a new key" if existing not in (None, public_key)
                      else "enrolled")
