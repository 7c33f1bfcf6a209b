"""An in-memory RiskLookup: for tests, benchmarks and the demo before the real store exists."""

from __future__ import annotations

from datetime import date, datetime

from sync.wire.risk.types import Coverage, RiskEntry, RiskStatus

#: a test list covers every format and issuer unless told otherwise
EVERYTHING = Coverage.parse(["CP1:*", "HC1:*"])


class MemoryRiskList:
    """A dict of 16-byte key -> RiskEntry with a version and publication time."""

    def __init__(self, entries: dict[bytes, RiskEntry | RiskStatus] | None = None, *, version: int = 1,
                 published_at: datetime | None = None, coverage: Coverage = EVERYTHING,
                 refused: str | None = None):
        self._entries = {k: (v if isinstance(v, RiskEntry) else RiskEntry(v)) for k, v in (entries or {}).items()}
        self._version = version
        self._published_at = published_at
        self._coverage = coverage
        self._refused = refused

    @property
    def version(self) -> int:
        return self._version

    @property
    def published_at(self) -> datetime | None:
        return self._published_at

    @property
    def coverage(self) -> Coverage:
        return self._coverage

    @property
    def refused(self) -> str | None:
        return self._refused

    def lookup(self, key: bytes, today: date | None = None) -> RiskEntry | None:
        entry = self._entries.get(key)
        if entry is None or (today is not None and entry.until is not None and today > entry.until):
            return None
        return entry
