"""Server storage interface and the row shape both back-ends (SQLite, PostgreSQL) share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

#: columns of the server's ``records`` table, in row-tuple order
RECORD_COLUMNS = ("device_id", "seq", "wall_time", "monotonic", "boot_id", "clock_trusted", "format", "kind",
                  "holder_hash", "holder_enc", "decision", "reason", "policy_version", "risk_version",
                  "prev_hash", "hash")


class StorageError(RuntimeError):
    """The server database is unreachable or refused a write."""


@dataclass(frozen=True)
class DeviceSummary:
    device_id: str
    enrolled_at: str
    last_seen: str | None
    acked_seq: int
    records: int
    held_beyond_gap: int
    verdicts: dict[str, int]


class Storage(Protocol):
    """What the server needs from its database. Every method is safe to call from several threads."""

    def enroll(self, device_id: str, public_key: bytes, *, replace: bool = False) -> bool:
        """Register a device key; False if a different key is already enrolled and not ``replace``."""

    def device_key(self, device_id: str) -> bytes | None: ...

    def hashes(self, device_id: str, lo: int, hi: int) -> dict[int, bytes]:
        """Stored record hashes with ``lo <= seq <= hi``."""

    def insert(self, device_id: str, rows: list[tuple], seen_at: str) -> tuple[int, int]:
        """Store rows (RECORD_COLUMNS order) once each; return (newly stored, acked_seq)."""

    def acked_seq(self, device_id: str) -> int: ...

    def fleet(self) -> list[DeviceSummary]: ...

    def records(self, device_id: str) -> list[dict[str, Any]]:
        """Every stored record of a device in seq order (audits and tests)."""

    def close(self) -> None: ...


def next_contiguous(acked: int, seqs: list[int]) -> int:
    """Advance ``acked`` over sorted ``seqs`` while they follow on without a gap."""
    for seq in seqs:
        if seq == acked + 1:
            acked = seq
        elif seq > acked + 1:
            break
    return acked


def open_storage(url: str) -> Storage:
    """``sqlite:///path`` or ``postgresql://...[?schema=name]``."""
    if url.startswith("sqlite:///"):
        from sync.server.store_sqlite import SQLiteStorage
        return SQLiteStorage(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        from sync.server.store_pg import PostgresStorage
        return PostgresStorage(url)
    raise StorageError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://...")
