"""Types shared by the risk-list store, the verifier and the publisher."""

from __future__ import annotations

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


class RiskLookup(Protocol):
    """What the verifier needs of a risk list: a lookup, a version and a publication time."""

    @property
    def version(self) -> int: ...

    @property
    def published_at(self) -> datetime | None: ...

    def lookup(self, key: bytes, today: date | None = None) -> RiskEntry | None:
        """The entry for a 16-byte key, or None; entries past ``until`` count as absent."""
        ...


class RiskUpdateError(CheckpointError, ValueError):
    """A risk-list update was rejected (forged, replayed, out of chain, truncated, corrupt or
    not matching its digest); the list in use is unchanged."""
