"""Administrator accounts: roles, argon2 password hashes, sessions and their CSRF tokens.

Passwords are hashed with argon2id (argon2-cffi, its default RFC 9106 parameters; hashes made
with older parameters are upgraded at the next login). A login makes a session: a random
256-bit token the server stores only as SHA-256, carried either as an HttpOnly, SameSite=Strict
cookie (browsers; every state-changing request must then also carry the session's CSRF token)
or as ``Authorization: Bearer`` (scripts; a header no other site can make a browser send, so no
CSRF token is needed). Sessions live in the database, so any server process can check them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from sync.server.security_store import SecurityQueries
from sync.wire.errors import CheckpointError

MIN_PASSWORD_LENGTH = 12
USERNAME_PATTERN = r"^[A-Za-z0-9._@-]{1,64}$"


class Role(StrEnum):
    """viewer: fleet and lists. operator: also publish, enroll, revoke, re-admit. tracer: also trace
    holders (kept apart from operating the fleet). admin: also users and the audit trail."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    TRACER = "tracer"
    ADMIN = "admin"


class Permission(StrEnum):
    VIEW = "view"
    OPERATE = "operate"
    TRACE = "trace"
    #: the audit trail and the accounts
    AUDIT = "audit"


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.VIEW}),
    Role.OPERATOR: frozenset({Permission.VIEW, Permission.OPERATE}),
    Role.TRACER: frozenset({Permission.VIEW, Permission.TRACE}),
    Role.ADMIN: frozenset({Permission.VIEW, Permission.OPERATE, Permission.AUDIT}),
}


class AccountError(CheckpointError, ValueError):
    """A user could not be created (weak password, bad name or role)."""


_hasher = PasswordHasher()
#: verified against when the user does not exist, so a wrong name costs as long as a wrong password
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def add_user(store: SecurityQueries, username: str, password: str, role: Role | str) -> None:
    """Create (or reset) an account."""
    if not re.fullmatch(USERNAME_PATTERN, username):
        raise AccountError(f"user name {username!r}: use 1-64 letters, digits or . _ @ -")
    try:
        role = Role(role)
    except ValueError:
        raise AccountError(f"unknown role {role!r}: one of {', '.join(r.value for r in Role)}") from None
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password too short: at least {MIN_PASSWORD_LENGTH} characters")
    store.put_user(username, _hasher.hash(password), role.value)


def check_password(store: SecurityQueries, username: str, password: str) -> Role | None:
    """The user's role if the password is right and the account enabled; None otherwise (slow on purpose)."""
    user = store.user(username) if len(username) <= 64 else None
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password[:1024])
    except (VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        store.set_password_hash(username, _hasher.hash(password))
    return Role(user.role)


def session_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class NewSession:
    token: str
    csrf_token: str
    expires_at: int


def open_session(store: SecurityQueries, username: str, ttl_s: int) -> NewSession:
    now = int(time.time())
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    store.put_session(session_digest(token), username, csrf, now, now + ttl_s)
    return NewSession(token, csrf, now + ttl_s)


@dataclass(frozen=True)
class Principal:
    """Who is asking: a logged-in user and how the session came (cookie needs CSRF, bearer not)."""

    username: str
    role: Role
    csrf_token: str
    via_cookie: bool
    session_hash: bytes

    def may(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]

    def csrf_ok(self, presented: str | None) -> bool:
        return not self.via_cookie or (presented is not None
                                       and hmac.compare_digest(presented.encode(), self.csrf_token.encode()))


def principal_for(store: SecurityQueries, token: str, *, via_cookie: bool) -> Principal | None:
    if not token or len(token) > 128:
        return None
    digest = session_digest(token)
    row = store.session(digest, int(time.time()))
    if row is None:
        return None
    try:
        role = Role(row.role)
    except ValueError:
        return None
    return Principal(row.username, role, row.csrf_token, via_cookie, digest)
