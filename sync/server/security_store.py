"""The server's security tables: one-time enrollment tokens, revocations, users, sessions, audit.

Shared by both back-ends (SQL with ``?`` placeholders, like ``storage.SQLStorage``); the few
dialect differences are filled into ``security_schema``. Times that are compared (expiry,
lock-outs) are Unix seconds; times that are shown (audit, revocation) are ISO-8601 UTC.
Secrets (tokens, session ids) are stored only as SHA-256 digests: they are 256-bit random
values, so a fast hash is enough, and a stolen database cannot enroll a device or log in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

_SCHEMA = """
CREATE TABLE IF NOT EXISTS enroll_tokens (
    device_id TEXT PRIMARY KEY, token_hash {blob} NOT NULL, created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL, used_at BIGINT, replace_key INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0, locked_until BIGINT NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS revocations (
    device_id TEXT PRIMARY KEY, revoked_at TEXT NOT NULL, reason TEXT NOT NULL, actor TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, role TEXT NOT NULL, created_at TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash {blob} PRIMARY KEY, username TEXT NOT NULL, csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id {serial} PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL, client TEXT NOT NULL);
"""


def security_schema(dialect: str) -> str:
    """DDL of the security tables for ``sqlite`` or ``postgresql``."""
    if dialect == "sqlite":
        return _SCHEMA.format(blob="BLOB", serial="INTEGER")
    return _SCHEMA.format(blob="BYTEA", serial="BIGINT GENERATED ALWAYS AS IDENTITY")


@dataclass(frozen=True)
class TokenRow:
    device_id: str
    token_hash: bytes
    expires_at: int
    used_at: int | None
    replace_key: bool
    failures: int
    locked_until: int


@dataclass(frozen=True)
class UserRow:
    username: str
    password_hash: str
    role: str
    disabled: bool


@dataclass(frozen=True)
class SessionRow:
    username: str
    role: str
    csrf_token: str
    expires_at: int


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    actor: str
    action: str
    target: str
    outcome: str
    detail: str
    client: str


@dataclass(frozen=True)
class Revocation:
    device_id: str
    revoked_at: str
    reason: str
    actor: str


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class SecurityQueries:
    """Queries on the security tables; mixed into ``SQLStorage`` (which supplies the lock and SQL)."""

    _lock: threading.Lock

    def _all(self, sql: str, params: tuple = ()) -> list[tuple]:
        raise NotImplementedError

    def _exec(self, sql: str, params: tuple = ()) -> None:
        raise NotImplementedError

    def _count(self, sql: str, params: tuple = ()) -> int:
        """Run a write; return how many rows it changed."""
        raise NotImplementedError

    # -- enrollment tokens -------------------------------------------------------------------
    def put_enroll_token(self, device_id: str, token_hash: bytes, created_at: int, expires_at: int, *,
                         replace_key: bool) -> None:
        """Store the one outstanding token of ``device_id`` (a new one replaces any older one)."""
        with self._lock:  # one statement: concurrent server processes never see two tokens or none
            self._exec("INSERT INTO enroll_tokens (device_id, token_hash, created_at, expires_at, replace_key) "
                       "VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET token_hash=excluded.token_hash, "
                       "created_at=excluded.created_at, expires_at=excluded.expires_at, used_at=NULL, "
                       "replace_key=excluded.replace_key, failures=0, locked_until=0",
                       (device_id, token_hash, created_at, expires_at, int(replace_key)))

    def enroll_token(self, device_id: str) -> TokenRow | None:
        with self._lock:
            rows = self._all("SELECT device_id, token_hash, expires_at, used_at, replace_key, failures, locked_until "
                             "FROM enroll_tokens WHERE device_id=?", (device_id,))
        if not rows:
            return None
        d, h, exp, used, rep, fails, locked = rows[0]
        return TokenRow(d, bytes(h), exp, used, bool(rep), fails, locked)

    def enroll_token_failed(self, device_id: str, now: int, *, max_failures: int, lock_s: int) -> int:
        """Count a wrong guess; lock the token for ``lock_s`` once ``max_failures`` are reached.

        Returns the failures counted so far. One UPDATE, so concurrent server processes count every guess.
        """
        with self._lock:
            self._exec("UPDATE enroll_tokens SET failures=failures+1, locked_until=CASE WHEN failures+1 >= ? "
                       "THEN ? ELSE locked_until END WHERE device_id=?", (max_failures, now + lock_s, device_id))
            rows = self._all("SELECT failures FROM enroll_tokens WHERE device_id=?", (device_id,))
        return rows[0][0] if rows else 0

    def claim_enroll_token(self, device_id: str, token_hash: bytes, now: int) -> bool:
        """Mark the token used; False if it was used (or replaced, or expired) meanwhile."""
        with self._lock:
            return self._count("UPDATE enroll_tokens SET used_at=? WHERE device_id=? AND token_hash=? "
                               "AND used_at IS NULL AND expires_at > ?", (now, device_id, token_hash, now)) == 1

    # -- revocation ------------------------------------------------------------------------------
    def revoke(self, device_id: str, reason: str, actor: str) -> bool:
        """Refuse every request of ``device_id`` from now on; False if it was revoked already."""
        with self._lock:
            added = self._count("INSERT INTO revocations (device_id, revoked_at, reason, actor) VALUES (?, ?, ?, ?) "
                                "ON CONFLICT (device_id) DO NOTHING", (device_id, _iso_now(), reason, actor))
            self._exec("DELETE FROM enroll_tokens WHERE device_id=?", (device_id,))
            return added == 1

    def readmit(self, device_id: str) -> bool:
        """Lift a revocation; False if the device was not revoked."""
        with self._lock:
            return self._count("DELETE FROM revocations WHERE device_id=?", (device_id,)) == 1

    def revocation(self, device_id: str) -> Revocation | None:
        with self._lock:
            rows = self._all("SELECT device_id, revoked_at, reason, actor FROM revocations WHERE device_id=?",
                             (device_id,))
        return Revocation(*rows[0]) if rows else None

    def revocations(self) -> dict[str, Revocation]:
        with self._lock:
            rows = self._all("SELECT device_id, revoked_at, reason, actor FROM revocations")
        return {r[0]: Revocation(*r) for r in rows}

    def active_device_key(self, device_id: str) -> bytes | None:
        """The enrolled key of a device that is not revoked (what a signed request is checked with)."""
        with self._lock:
            rows = self._all("SELECT public_key FROM devices WHERE device_id=? AND NOT EXISTS "
                             "(SELECT 1 FROM revocations WHERE revocations.device_id=devices.device_id)",
                             (device_id,))
        return bytes(rows[0][0]) if rows else None

    # -- users and sessions ------------------------------------------------------------------------
    def put_user(self, username: str, password_hash: str, role: str) -> None:
        with self._lock:
            self._exec("INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (username) DO UPDATE SET password_hash=excluded.password_hash, "
                       "role=excluded.role, disabled=0", (username, password_hash, role, _iso_now()))
            self._exec("DELETE FROM sessions WHERE username=?", (username,))  # a reset ends old sessions

    def set_password_hash(self, username: str, password_hash: str) -> None:
        with self._lock:
            self._exec("UPDATE users SET password_hash=? WHERE username=?", (password_hash, username))

    def user(self, username: str) -> UserRow | None:
        with self._lock:
            rows = self._all("SELECT username, password_hash, role, disabled FROM users WHERE username=?",
                             (username,))
        return UserRow(rows[0][0], rows[0][1], rows[0][2], bool(rows[0][3])) if rows else None

    def users(self) -> list[UserRow]:
        with self._lock:
            rows = self._all("SELECT username, password_hash, role, disabled FROM users ORDER BY username")
        return [UserRow(u, h, r, bool(d)) for u, h, r, d in rows]

    def disable_user(self, username: str) -> bool:
        """Disable an account and end its sessions; False if there is no such user."""
        with self._lock:
            changed = self._count("UPDATE users SET disabled=1 WHERE username=?", (username,))
            self._exec("DELETE FROM sessions WHERE username=?", (username,))
        return changed == 1

    def put_session(self, token_hash: bytes, username: str, csrf_token: str, created_at: int,
                    expires_at: int) -> None:
        with self._lock:
            self._exec("DELETE FROM sessions WHERE expires_at <= ?", (created_at,))
            self._exec("INSERT INTO sessions (token_hash, username, csrf_token, created_at, expires_at) "
                       "VALUES (?, ?, ?, ?, ?)", (token_hash, username, csrf_token, created_at, expires_at))

    def session(self, token_hash: bytes, now: int) -> SessionRow | None:
        """The live session of an enabled user, or None."""
        with self._lock:
            rows = self._all("SELECT s.username, u.role, s.csrf_token, s.expires_at FROM sessions s "
                             "JOIN users u ON u.username = s.username "
                             "WHERE s.token_hash=? AND s.expires_at > ? AND u.disabled = 0", (token_hash, now))
        return SessionRow(*rows[0]) if rows else None

    def end_session(self, token_hash: bytes) -> None:
        with self._lock:
            self._exec("DELETE FROM sessions WHERE token_hash=?", (token_hash,))

    # -- audit ------------------------------------------------------------------------------------
    def audit(self, actor: str, action: str, target: str, outcome: str, detail: str = "", client: str = "") -> None:
        """Append one line to the audit trail (never updated, never deleted by the server)."""
        with self._lock:
            self._exec("INSERT INTO audit (at, actor, action, target, outcome, detail, client) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (_iso_now(), actor[:128], action[:64], target[:256], outcome[:32], detail[:1000],
                        client[:128]))

    def audit_log(self, limit: int = 200) -> list[AuditEntry]:
        """The newest ``limit`` audit lines, newest first."""
        with self._lock:
            rows = self._all("SELECT id, at, actor, action, target, outcome, detail, client FROM audit "
                             "ORDER BY id DESC LIMIT ?", (limit,))
        return [AuditEntry(*r) for r in rows]

    # -- tracing ------------------------------------------------------------------------------------
    def records_of_holder(self, holder: bytes, limit: int = 1000) -> list[tuple[str, int, str, str, str]]:
        """Where and when a holder was scanned: (device_id, seq, wall_time, decision, reason)."""
        with self._lock:
            return [tuple(r) for r in self._all(
                "SELECT device_id, seq, wall_time, decision, reason FROM records WHERE holder_hash=? "
                "ORDER BY wall_time, device_id, seq LIMIT ?", (holder, limit))]
