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
CSV and JSON lines (``.jsonl``, one object per line) are read as a stream, so a national list
of 10 million rows costs the publisher its 19-byte records, not its text: :func:`read_changes`
turns a file into one sorted record array, checking every row and reporting the first bad ones
by line number before anything is published.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TextIO

import numpy as np

from sync.wire.errors import CheckpointError
from sync.wire.identifiers import IdentifierKey, certificate_hash, holder_hash, holder_hasher
from sync.wire.risk.records import RECORD, REMOVED, encode_until, sort_unique
from sync.wire.risk.types import KEY_BYTES, Change, RiskStatus

_REMOVE = {"", "-", "none", "remove", "removed", "clear", "delete"}
_STATUS = {s.name: s for s in RiskStatus} | {str(int(s)): s for s in RiskStatus}


class RiskInputError(CheckpointError, ValueError):
    """An input row is malformed; the message names the file and row."""


#: a ``.json`` list is read whole: larger lists are given as CSV or JSON lines, which are streamed
MAX_WHOLE_BYTES = 64 << 20


def load_rows(path: Path) -> list[dict]:
    """The rows of a CSV (with a header line) or JSON input file, read whole (MAX_WHOLE_BYTES at most)."""
    try:
        if Path(path).stat().st_size > MAX_WHOLE_BYTES:
            raise RiskInputError(f"{path}: larger than {MAX_WHOLE_BYTES >> 20} MB, too large to read whole: "
                                 "give a large list as CSV or JSON lines (.jsonl), which are read as a stream")
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


def status_until(row: dict) -> tuple[RiskStatus | None, date | None]:
    """A row's status (None = remove) and end date; ValueError names what is wrong."""
    status_text = str(row.get("status") or "").strip()
    if status_text.lower() in _REMOVE:
        return None, None
    status = _STATUS.get(status_text.upper())
    if status is None:
        raise ValueError(f"unknown status {status_text!r} (use F0, F1, REVOKED or remove)")
    until_text = str(row.get("until") or "").strip()
    return status, date.fromisoformat(until_text) if until_text else None


def row_changes(row: dict, id_keys: list[IdentifierKey]) -> list[Change]:
    """The changes of one row (one per key it names); ValueError on any defect (the caller says where)."""
    keys = parse_keys(row, id_keys)
    status, until = status_until(row)
    return [(key, status, until) for key in keys]


def parse_row(row: dict, where: str, id_keys: list[IdentifierKey] | None = None) -> list[Change]:
    """The changes of one row (one per key it names); RiskInputError names ``where`` on any defect."""
    try:
        return row_changes(row, id_keys or [])
    except ValueError as exc:
        raise RiskInputError(f"{where}: {exc}") from None


#: at most this many bad rows are listed (the count of all of them is given)
MAX_REPORTED = 20
#: a row longer than this is not a risk-list row (a citizen with many certificates is a few KB)
MAX_LINE_BYTES = 1 << 20
#: a plain input larger than this is read by one process per core
PARALLEL_FROM_BYTES = 8 << 20


def _json_object(path: Path, line: int, text: str) -> dict:
    """One JSON-lines row; RiskInputError names the file and line if it is not a JSON object."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RiskInputError(f"{path} line {line}: not a JSON object: {exc.msg}") from None
    if not isinstance(row, dict):
        raise RiskInputError(f"{path} line {line}: not a JSON object")
    return row


def _counted(lines: Iterator[str], progress: Callable[[int], None] | None) -> Iterator[str]:
    """The lines, telling ``progress`` how many characters have been read, every 65,536 lines."""
    done = 0
    for n, line in enumerate(lines, 1):
        done += len(line)
        if progress is not None and n % 65536 == 0:
            progress(done)
        yield line
    if progress is not None:
        progress(done)


def _bounded_lines(path: Path, handle: TextIO) -> Iterator[str]:
    """The lines of ``handle``, refusing one longer than MAX_LINE_BYTES before it is all in memory."""
    for number, line in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), ""), 1):
        if len(line) > MAX_LINE_BYTES:
            raise RiskInputError(f"{path} line {number}: longer than {MAX_LINE_BYTES:,} characters: "
                                 "not a risk list row")
        yield line


def iter_rows(path: Path, progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, dict]]:
    """``(line number, row)`` of a CSV (header line first) or JSON-lines file, read as a stream.

    ``progress(characters read)`` follows the reading. A ``.json`` file (a list, or
    ``{"entries": [...]}``) is read whole: use CSV or ``.jsonl`` for large lists.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        yield from ((n, row) for n, row in enumerate(load_rows(path), 1))
        return
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise RiskInputError(f"{path}: cannot read input: {exc}") from None
    with handle:
        try:
            lines = _counted(_bounded_lines(path, handle), progress)
            if path.suffix.lower() == ".jsonl":
                for n, line in enumerate(lines, 1):
                    if line.strip():
                        yield n, _json_object(path, n, line)
                return
            reader = csv.DictReader(lines)
            if not reader.fieldnames or "status" not in reader.fieldnames:
                raise RiskInputError(f"{path}: CSV needs a header line with 'status' and 'id' or 'key'")
            for row in reader:
                yield reader.line_num, row
        except UnicodeDecodeError as exc:
            raise RiskInputError(f"{path}: not UTF-8 text ({exc.reason})") from None
        except csv.Error as exc:
            raise RiskInputError(f"{path}: broken CSV: {exc}") from None


class _Spill:
    """Rows spilled by their key's first byte into 256 files of 19-byte records (one set per reader).

    Keys are keyed hashes, so the buckets are even. Sorting them one by one into the result keeps
    the publisher's memory near one copy of the records (19 bytes a row): a national list of 10
    million rows is never held as text, as Python objects, or twice while it is sorted. Records
    are gathered packed and written a block at a time, bucketed by numpy with a stable sort, so
    each bucket keeps the file's order (the last row of a key wins).
    """

    ROW = struct.Struct("<16sBH")  # the RECORD layout: key, status, until
    BLOCK = 1 << 18

    def __init__(self, folder: Path, part: int) -> None:
        self._files = [open(folder / f"{part}-{b:02x}", "wb", buffering=1 << 16)  # noqa: SIM115
                       for b in range(256)]
        self.pending: list[bytes] = []  # packed records (RECORD layout) not yet written
        self.records = 0

    def add(self, key: bytes, code: int, until: int) -> None:
        self.pending.append(self.ROW.pack(key, code, until))
        if len(self.pending) >= self.BLOCK:
            self.flush()

    def flush(self) -> None:
        """Write the pending records to their buckets."""
        if not self.pending:
            return
        packed = b"".join(self.pending)
        self.pending.clear()
        first = np.frombuffer(packed, np.uint8)[::RECORD.itemsize]  # each record's first key byte
        order = np.argsort(first, kind="stable")
        records = np.frombuffer(packed, RECORD)[order]
        counts = np.bincount(first, minlength=256)
        ends = np.cumsum(counts)
        for bucket in np.flatnonzero(counts):
            self._files[bucket].write(records[ends[bucket] - counts[bucket]:ends[bucket]].tobytes())
        self.records += len(records)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            for fh in self._files:
                fh.close()


def _sorted_records(folder: Path, parts: int, records: int) -> np.ndarray:
    """The spilled records of every part, sorted by key, the last of duplicate keys (in file order) kept."""
    recs = np.zeros(records, RECORD)
    at = 0
    for bucket in range(256):  # bucket order is key order: sort each, copy it, let it go
        pieces = [np.fromfile(folder / f"{part}-{bucket:02x}", RECORD) for part in range(parts)]
        merged = sort_unique(np.concatenate(pieces) if len(pieces) > 1 else pieces[0])  # parts in file order
        recs[at:at + len(merged)] = merged
        at += len(merged)
    return recs[:at]  # duplicates leave a few unused rows at the end


@dataclass
class _Outcome:
    """What one reader found: rows read, records spilled, bad rows, the first problems (by line)."""

    rows: int = 0
    records: int = 0
    bad: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)

    def add_problem(self, line: int, message: str) -> None:
        self.bad += 1
        if len(self.problems) < MAX_REPORTED:
            self.problems.append((line, message))


def _take(outcome: _Outcome, spill: _Spill, line: int, row: dict, id_keys: list[IdentifierKey]) -> None:
    outcome.rows += 1
    try:  # (where a row is, is only spelt out for a bad row: millions of good ones pass here)
        coded = [(key, REMOVED, 0) if status is None else (key, int(status), encode_until(until))
                 for key, status, until in row_changes(row, id_keys)]
    except ValueError as exc:
        outcome.add_problem(line, f"line {line}: {exc}")
        return
    for key, code, days in coded:  # a row naming a citizen and their DCCs gives one entry each
        spill.add(key, code, days)


def _line_blocks(path: Path, start: int, end: int, first_line: int,
                 block: int = 1 << 22) -> Iterator[tuple[int, int, list[bytes]]]:
    """The lines of bytes ``[start, end)`` of ``path`` (split at ``\\n``, which is dropped) a block at a
    time: (bytes read so far, the block's first line number, its lines). A line longer than
    MAX_LINE_BYTES is refused by its number (whatever the blocks), so a file without line ends
    cannot fill the memory."""
    with path.open("rb") as fh:
        fh.seek(start)
        at, carry, line = start, b"", first_line
        while at < end:
            chunk = fh.read(min(block, end - at))
            if not chunk:
                break
            at += len(chunk)
            lines = (carry + chunk).split(b"\n")
            carry = lines.pop()
            if len(carry) > MAX_LINE_BYTES or (lines and max(map(len, lines)) > MAX_LINE_BYTES):
                longest = max(range(len(lines)), key=lambda k: len(lines[k]), default=0)
                at_line = line + (longest if lines and len(lines[longest]) > MAX_LINE_BYTES else len(lines))
                raise RiskInputError(f"{path} line {at_line}: longer than {MAX_LINE_BYTES:,} bytes: "
                                     "not a risk list row")
            yield at - start, line, lines
            line += len(lines)
        if carry:
            yield at - start, line, [carry]


_TAIL = struct.Struct("<BH")  # the status and end date of a RECORD, after its key


class _PlainReader:
    """Rows of a CSV without quotes, or of JSON lines, from raw lines; bad rows go to the outcome.

    A national list is mostly rows of a citizen id, a status and an end date: for a CSV naming
    citizens (not UCIs or keys), an ASCII line whose id is plain letters and digits is keyed straight
    from its bytes, its status and date decoded once per distinct value (other columns are not read).
    Every other line takes the general path, row by row, with the same checks and messages.
    """

    def __init__(self, path: Path, header: list[str] | None, id_keys: list[IdentifierKey], outcome: _Outcome,
                 spill: _Spill) -> None:
        self.path, self.header, self.id_keys = path, header, id_keys
        self.outcome, self.spill = outcome, spill
        self._width = len(header) if header else 0
        self._hashers = [holder_hasher(key) for key in id_keys]
        self._tails: dict[tuple[bytes, bytes], bytes] = {}  # (status, until) cells -> packed status, until
        columns = set(header or ())
        id_columns = columns & {"id", "citizen_id"}
        self._fast = (bool(id_keys) and len(columns) == self._width and len(id_columns) == 1
                      and "status" in columns and not columns & {"key", "uci"})  # other columns are not read
        if self._fast and header is not None:
            self._id_at = header.index(id_columns.pop())
            self._status_at = header.index("status")
            self._until_at = header.index("until") if "until" in columns else None

    def take(self, lines: list[bytes], first_line: int) -> None:
        """The rows of ``lines``, the first being line number ``first_line`` of the file."""
        if not self._fast:
            for offset, raw in enumerate(lines):
                self._take_line(first_line + offset, raw)
            return
        out, hashers, tails, width = self.spill.pending, self._hashers, self._tails, self._width
        id_at, status_at, until_at = self._id_at, self._status_at, self._until_at
        taken = 0
        for offset, raw in enumerate(lines):
            cells = (raw[:-1] if raw.endswith(b"\r") else raw).split(b",")
            if len(cells) == width:
                cell = (cells[status_at], cells[until_at] if until_at is not None else b"")
                tail = tails.get(cell) or self._tail(cell)
                ident = cells[id_at]
                if tail and ident.isalnum() and raw.isascii():  # (isalnum of bytes is ASCII letters and digits)
                    normal = ident.upper()
                    for keyed in hashers:
                        out.append(keyed(normal) + tail)
                    taken += 1
                    continue
            self._take_line(first_line + offset, raw)
        self.outcome.rows += taken

    def _tail(self, cell: tuple[bytes, bytes]) -> bytes:
        """The packed status and end date of a status and date cell, or b"" if they need the general path."""
        try:
            status, until = status_until({"status": cell[0].decode(), "until": cell[1].decode()})
            tail = _TAIL.pack(REMOVED, 0) if status is None else _TAIL.pack(int(status), encode_until(until))
        except (UnicodeDecodeError, ValueError):
            return b""
        if len(self._tails) < 65536:  # a list has a few statuses and dates; a bound all the same
            self._tails[cell] = tail
        return tail

    def _take_line(self, line: int, raw: bytes) -> None:
        try:
            text = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise RiskInputError(f"{self.path} line {line}: not UTF-8 text ({exc.reason})") from None
        if not text.strip():
            return
        if self.header is None:
            row = _json_object(self.path, line, text)
        else:
            cells = text.split(",")
            if len(cells) > self._width:
                self.outcome.rows += 1
                self.outcome.add_problem(line, f"line {line}: more cells than columns")
                return
            row = dict(zip(self.header, cells + [""] * (self._width - len(cells)), strict=True))
        _take(self.outcome, self.spill, line, row, self.id_keys)


def _read_part(path: Path, start: int, end: int, first_line: int, header: list[str] | None, folder: Path,
               part: int, id_keys: list[IdentifierKey], done: Callable[[int], None] | None = None) -> _Outcome:
    """One reader: its byte range of the file into its own spill files."""
    outcome, spill = _Outcome(), _Spill(folder, part)
    reader = _PlainReader(path, header, id_keys, outcome, spill)
    try:
        for read, line, lines in _line_blocks(path, start, end, first_line):
            reader.take(lines, line)
            spill.flush()
            if done is not None:
                done(read)
    finally:
        spill.close()
    outcome.records = spill.records
    return outcome


def _plain_layout(path: Path) -> tuple[list[str] | None, int] | None:
    """For a CSV without quotes or a JSON-lines file: (header or None, where the rows start); else None."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        return None
    with path.open("rb") as fh:
        if suffix == ".jsonl":
            return None, 0
        first = fh.readline()
        for chunk in iter(lambda: fh.read(1 << 24), b""):
            if b'"' in chunk:
                return None  # quoted cells may hold commas or newlines: the csv module reads it
        if b'"' in first:
            return None
    try:
        header = [h.strip() for h in first.decode("utf-8-sig").rstrip("\r\n").split(",")]
    except UnicodeDecodeError:
        return None
    if "status" not in header:
        raise RiskInputError(f"{path}: CSV needs a header line with 'status' and 'id' or 'key'")
    return header, len(first)


def _ranges(path: Path, start: int, parts: int) -> list[tuple[int, int, int]]:
    """``parts`` byte ranges from ``start`` cut at line ends, each with its first line number."""
    size = path.stat().st_size
    cuts = [start]
    with path.open("rb") as fh:
        for k in range(1, parts):
            fh.seek(max(start + (size - start) * k // parts, cuts[-1]))
            fh.readline()  # to the next line start
            cuts.append(min(fh.tell(), size))
        cuts.append(size)
        first_lines, line, at = [], 2 if start else 1, start  # line 1 is the CSV header
        fh.seek(start)
        for k in range(parts):
            first_lines.append(line)
            line += fh.read(cuts[k + 1] - at).count(b"\n")
            at = cuts[k + 1]
    return [(cuts[k], cuts[k + 1], first_lines[k]) for k in range(parts)]


def read_changes(path: Path, progress: Callable[[int], None] | None = None, *,
                 id_keys: list[IdentifierKey] | None = None, workers: int | None = None) -> np.ndarray:
    """Every row of ``path`` as one sorted record array (status REMOVED = delete).

    Every row is checked; if any is bad, RiskInputError lists the first MAX_REPORTED by line
    number and the count, and nothing is returned (nothing can be published from a bad file).
    ``progress(bytes read)`` follows the reading. A large plain CSV or JSON-lines file is read by
    one process per core (``workers``), each over its own part of the file. ``id_keys``: the
    identifier keys rows with a citizen ``id`` are keyed with (see :func:`parse_row`).
    """
    path, id_keys = Path(path), list(id_keys or [])
    with tempfile.TemporaryDirectory(prefix="risk-input-") as tmp:
        folder = Path(tmp)
        layout = _plain_layout(path) if path.is_file() else None
        if layout is None:  # .json, or a CSV with quoted cells: one reader, the csv module
            outcome, spill = _Outcome(), _Spill(folder, 0)
            try:
                for line, row in iter_rows(path, progress):
                    _take(outcome, spill, line, row, id_keys)
            finally:
                spill.close()
            outcome.records = spill.records
            outcomes = [outcome]
        else:
            header, start = layout
            size = path.stat().st_size
            parts = workers or (min(os.cpu_count() or 1, 4) if size - start > PARALLEL_FROM_BYTES else 1)
            ranges = _ranges(path, start, parts)
            outcomes = _read_parts(path, ranges, header, folder, id_keys, progress)
        rows, bad = sum(o.rows for o in outcomes), sum(o.bad for o in outcomes)
        if bad:
            problems = sorted(p for o in outcomes for p in o.problems)[:MAX_REPORTED]
            listed = "\n  ".join(message for _, message in problems)
            more = f"\n  … {bad - len(problems)} more" if bad > len(problems) else ""
            raise RiskInputError(f"{path}: {bad} bad row(s) of {rows}, nothing published:\n  {listed}{more}")
        if rows == 0:
            raise RiskInputError(f"{path}: no rows")
        return _sorted_records(folder, len(outcomes), sum(o.records for o in outcomes))


def _read_parts(path: Path, ranges: list[tuple[int, int, int]], header: list[str] | None, folder: Path,
                id_keys: list[IdentifierKey], progress: Callable[[int], None] | None) -> list[_Outcome]:
    """Read every range, in this process when there is one, else one worker process each."""
    if len(ranges) == 1:
        start, end, first = ranges[0]
        return [_read_part(path, start, end, first, header, folder, 0, id_keys, progress)]
    context = multiprocessing.get_context("fork")
    counter = context.Value("q", 0)
    with ProcessPoolExecutor(len(ranges), mp_context=context, initializer=_share_counter,
                             initargs=(counter,)) as pool:
        futures = [pool.submit(_read_part_in_worker, path, start, end, first, header, folder, k, id_keys)
                   for k, (start, end, first) in enumerate(ranges)]
        while not all(f.done() for f in futures):
            time.sleep(0.2)
            if progress is not None:
                progress(counter.value)
        return [f.result() for f in futures]


#: in a worker process: the bytes-read counter all workers add to (set by the pool's initializer)
_counter = None


def _share_counter(counter) -> None:
    global _counter
    _counter = counter


def _read_part_in_worker(path: Path, start: int, end: int, first: int, header: list[str] | None,
                         folder: Path, part: int, id_keys: list[IdentifierKey]) -> _Outcome:
    last = 0

    def done(read: int) -> None:
        nonlocal last
        with _counter.get_lock():
            _counter.value += read - last
        last = read

    return _read_part(path, start, end, first, header, folder, part, id_keys, done)
