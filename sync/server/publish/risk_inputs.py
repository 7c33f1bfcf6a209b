"""Reading publisher input: CSV or JSON rows of identifiers (or ready-made hex keys) and statuses.

Each row names whom it lists with any of:

* ``id`` - a citizen identifier, turned into the keyed holder value (``holder_hash`` with the
  identifier key) exactly as CP1 passes carry it;
* ``uci`` - the certificate identifiers (UCI) of the EU DCCs the health authority issued to that
  citizen, separated by ``;`` or spaces; each becomes its EU revocation hash, which a device
  computes from the DCC itself. A row with both lists the person under every pass they hold;
* ``key`` - 32 hex digits (e.g. an EU DCC revocation hash; 64 hex digits are cut to the first
  16 bytes as the EU scheme does), alone.

and a ``status`` (F0, F1, REVOKED; empty / ``remove`` to delete) and an optional ``until`` (ISO
date, last day the entry applies). JSON is a list of such objects or ``{"entries": [...]}``.
Identifier keys: the first is the current one; older ones still listed during a rotation get
entries too, so passes issued under them stay covered until they expire.
"""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path

from sync.wire.errors import CheckpointError
from sync.wire.identifiers import IdentifierKey, certificate_hash, holder_hash
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
        raise RiskInputError(f"{path}: CSV needs a header line with 'status' and 'id', 'uci' or 'key'")
    return list(reader)


#: a UCI is at most 72 characters (DCC schema); shorter ones than this are not real certificates
MIN_UCI_CHARS = 8


def _ucis(row: dict) -> list[str]:
    text = str(row.get("uci") or "").replace(";", " ")
    ucis = text.split()
    for uci in ucis:
        if not MIN_UCI_CHARS <= len(uci) <= 80:
            raise ValueError(f"UCI {uci!r} is not a certificate identifier ({MIN_UCI_CHARS}-80 characters)")
    return ucis


def parse_keys(row: dict, id_keys: list[IdentifierKey]) -> list[bytes]:
    """The 16-byte risk keys of a row: from ``key`` hex, or from a keyed ``id`` and its ``uci`` list."""
    hex_key = str(row.get("key") or "").strip()
    ident = str(row.get("id") or row.get("citizen_id") or "").strip()
    ucis = _ucis(row)
    if hex_key and (ident or ucis):
        raise ValueError("give 'key' alone, or 'id' and/or 'uci'")
    if hex_key:
        try:
            raw = bytes.fromhex(hex_key)
        except ValueError:
            raise ValueError(f"key {hex_key!r} is not hexadecimal") from None
        if len(raw) not in (KEY_BYTES, 32):
            raise ValueError(f"key must be 32 or 64 hex digits, got {len(hex_key)}")
        return [raw[:KEY_BYTES]]
    if not ident and not ucis:
        raise ValueError("row has neither 'id', 'uci' nor 'key'")
    if ident and not id_keys:
        raise ValueError("a row with 'id' needs the identifier key (--id-key): citizen ids are never "
                         "published unkeyed")
    keys = [holder_hash(ident, id_key) for id_key in id_keys] if ident else []
    return keys + [certificate_hash(uci) for uci in ucis]


def parse_row(row: dict, where: str, id_keys: list[IdentifierKey] | None = None) -> list[Change]:
    """The changes of one row (one per key it names); RiskInputError names ``where`` on any defect."""
    try:
        keys = parse_keys(row, id_keys or [])
        status_text = str(row.get("status") or "").strip()
        if status_text.lower() in _REMOVE:
            return [(key, None, None) for key in keys]
        status = _STATUS.get(status_text.upper())
        if status is None:
            raise ValueError(f"unknown status {status_text!r} (use F0, F1, REVOKED or remove)")
        until_text = str(row.get("until") or "").strip()
        until = date.fromisoformat(until_text) if until_text else None
        return [(key, status, until) for key in keys]
    except ValueError as exc:
        raise RiskInputError(f"{where}: {exc}") from None
