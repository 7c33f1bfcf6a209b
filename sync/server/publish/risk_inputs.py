"""Reading publisher input: CSV or JSON rows of identifiers (or ready-made hex keys) and statuses.

Each row has either ``id`` (a citizen identifier, hashed with ``holder_hash`` as CP1 passes do)
or ``key`` (32 hex digits, e.g. an EU DCC revocation hash; 64 hex digits are cut to the first
16 bytes as the EU scheme does), a ``status`` (F0, F1, REVOKED; empty / ``remove`` to delete)
and an optional ``until`` (ISO date, last day the entry applies). JSON is a list of such
objects or ``{"entries": [...]}``.
"""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path

from sync.wire.errors import CheckpointError
from sync.wire.identifiers import holder_hash
from sync.wire.risk.types import KEY_BYTES, Change, RiskStatus

_REMOVE = {"", "-", "none", "remove", "removed", "clear", "delete"}
_STATUS = {s.name: s for s in RiskStatus} | {str(int(s)): s for s in RiskStatus}


class RiskInputError(CheckpointError, ValueError):
    """An input row is malformed; the message names the file and row."""


def load_rows(path: Path) -> list[dict]:
    """The rows of a CSV (with a header line) or JSON input file."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RiskInputError(f"{path}: cannot read input: {exc}") from None
    if Path(path).suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RiskInputError(f"{path}: not valid JSON: {exc}") from None
        rows = data.get("entries") if isinstance(data, dict) else data
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise RiskInputError(f"{path}: expected a list of objects or {{\"entries\": [...]}}")
        return rows
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or "status" not in reader.fieldnames:
        raise RiskInputError(f"{path}: CSV needs a header line with 'status' and 'id' or 'key'")
    return list(reader)


def parse_key(row: dict) -> bytes:
    """The 16-byte risk key of a row (from ``key`` hex or a hashed ``id``)."""
    hex_key = str(row.get("key") or "").strip()
    ident = str(row.get("id") or row.get("citizen_id") or "").strip()
    if hex_key and ident:
        raise ValueError("give either 'id' or 'key', not both")
    if hex_key:
        try:
            raw = bytes.fromhex(hex_key)
        except ValueError:
            raise ValueError(f"key {hex_key!r} is not hexadecimal") from None
        if len(raw) not in (KEY_BYTES, 32):
            raise ValueError(f"key must be 32 or 64 hex digits, got {len(hex_key)}")
        return raw[:KEY_BYTES]
    if ident:
        return holder_hash(ident)
    raise ValueError("row has neither 'id' nor 'key'")


def parse_row(row: dict, where: str) -> Change:
    """One change from one row; RiskInputError names ``where`` on any defect."""
    try:
        key = parse_key(row)
        status_text = str(row.get("status") or "").strip()
        if status_text.lower() in _REMOVE:
            return key, None, None
        status = _STATUS.get(status_text.upper())
        if status is None:
            raise ValueError(f"unknown status {status_text!r} (use F0, F1, REVOKED or remove)")
        until_text = str(row.get("until") or "").strip()
        return key, status, date.fromisoformat(until_text) if until_text else None
    except ValueError as exc:
        raise RiskInputError(f"{where}: {exc}") from None
