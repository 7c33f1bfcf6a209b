"""Types shared by the risk-list store, the verifier and the publisher."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import IntEnum
from typing import Protocol

from sync.wire.errors import CheckpointError

KEY_BYTES = 16


class RiskStatus(IntEnum):
    """Status of a listed identifier. Stored as one byte; never renumber."""

    F0 = 1          # infected
    F1 = 2          # close contact
    REVOKED = 3     # pass / certificate revoked (also EU DCC revocation entries)


@dataclass(frozen=True)
class RiskEntry:
    status: RiskStatus
    until: date | None = None


#: one publisher change: (16-byte key, status or None to remove, last day it applies or None)
Change = tuple[bytes, RiskStatus | None, date | None]


_COVERAGE_ITEM = re.compile(r"[A-Z0-9]{2,8}:(\*|[A-Za-z0-9._-]{1,64})")


@dataclass(frozen=True)
class Coverage:
    """What a risk list covers: ``FORMAT:ISSUER`` items (``CP1:*``, ``HC1:VN``; ``*`` = every issuer).

    A pass whose format and issuer the list does not cover cannot be looked up meaningfully (its
    holder may be listed under an identifier this pass does not carry), so it is never PASSed
    by omission.
    """

    items: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, items: object) -> Coverage:
        """Validate a list of items; ValueError names the first bad one."""
        if not isinstance(items, list | tuple | set | frozenset):
            raise ValueError("coverage must be a list of FORMAT:ISSUER items")
        for item in items:
            if not isinstance(item, str) or not _COVERAGE_ITEM.fullmatch(item):
                raise ValueError(f"coverage item {item!r} is not FORMAT:ISSUER (e.g. CP1:* or HC1:VN)")
        return cls(frozenset(items))

    def includes(self, fmt: str, issuer: str | None) -> bool:
        items = self.items
        return f"{fmt}:*" in items or (issuer is not None and f"{fmt}:{issuer}" in items)

    def as_list(self) -> list[str]:
        return sorted(self.items)


NO_COVERAGE = Coverage()


class RiskLookup(Protocol):
    """What the verifier needs of a risk list: a lookup, a version, a publication time, what the
    list covers, and why it was refused (None when it is sound)."""

    @property
    def version(self) -> int: ...

    @property
    def published_at(self) -> datetime | None: ...

    @property
    def coverage(self) -> Coverage: ...

    @property
    def refused(self) -> str | None: ...

    def lookup(self, key: bytes, today: date | None = None) -> RiskEntry | None:
        """The entry for a 16-byte key, or None; entries past ``until`` count as absent."""
        ...


class RiskUpdateError(CheckpointError, ValueError):
    """A risk-list update was rejected (forged, replayed, out of chain, truncated, corrupt or
    not matching its digest); the list in use is unchanged."""
