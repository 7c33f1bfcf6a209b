"""The fleet's registry: every checkpoint by id, name and place, and the devices that serve it.

Provincial IT keeps one CSV (``checkpoints.csv``); ``checkpoint provision --checkpoints`` writes a
bundle per device from it and ``checkpoint server registry load`` gives the same rows to the central
server, so a device has the same name, place and zone everywhere it is shown. The whole file is
checked before anything is written: every bad cell is reported by line and column, and one bad row
means nothing is provisioned or loaded.

Columns: ``checkpoint_id``, ``name``, ``province`` (required); ``district``, ``zone``, ``latitude``,
``longitude``, ``policy`` (the policy profile it uses), ``devices`` (how many devices serve it,
default 1), ``server_url`` (overrides the fleet's) optional. Device ids are
``<checkpoint_id>-<n>`` for n = 1 … devices.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from sync.wire.errors import CheckpointError
from sync.wire.fsutil import write_atomic

REQUIRED = ("checkpoint_id", "name", "province")
OPTIONAL = ("district", "zone", "latitude", "longitude", "policy", "devices", "server_url")
#: an id is safe in a file name, a URL path and a device id (which adds "-<n>")
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,47}")
MAX_DEVICES_PER_CHECKPOINT = 99
MAX_ROWS = 100_000
MAX_TEXT = 200
#: a name must fit the staff screen's header (the device config's ``status.checkpoint_name``)
MAX_NAME = 80
#: where the server keeps the loaded registry (a file beside the published lists)
REGISTRY_FILE = "registry/checkpoints.json"


class RegistryError(CheckpointError, ValueError):
    """The checkpoints file has errors; ``problems`` lists each as ``line N, column C: what``."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        shown = "\n  ".join(problems[:50]) + (f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else "")
        super().__init__(f"{source}: {len(problems)} problem(s), nothing written:\n  {shown}")


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint of the fleet (a place with its rules) and how many devices serve it."""

    checkpoint_id: str
    name: str
    province: str
    district: str = ""
    zone: str = ""
    latitude: float | None = None
    longitude: float | None = None
    policy: str = ""
    devices: int = 1
    server_url: str = ""

    @property
    def device_ids(self) -> list[str]:
        return [f"{self.checkpoint_id}-{n}" for n in range(1, self.devices + 1)]


def device_checkpoint(device_id: str) -> str:
    """The checkpoint id a device id belongs to (``HN-017-2`` -> ``HN-017``)."""
    head, _, tail = device_id.rpartition("-")
    return head if head and tail.isdigit() else device_id


def _text(value: str, column: str, problems: list[str], where: str, *, required: bool) -> str:
    value = value.strip()
    if required and not value:
        problems.append(f"{where}, column {column}: required, empty")
    elif len(value) > MAX_TEXT:
        problems.append(f"{where}, column {column}: longer than {MAX_TEXT} characters")
    elif any(ord(c) < 32 for c in value):
        problems.append(f"{where}, column {column}: control characters")
    return value


def _coordinate(value: str, column: str, limit: float, problems: list[str], where: str) -> float | None:
    if not value.strip():
        return None
    try:
        number = float(value)
    except ValueError:
        problems.append(f"{where}, column {column}: {value.strip()[:40]!r} is not a number")
        return None
    if not math.isfinite(number) or abs(number) > limit:
        problems.append(f"{where}, column {column}: {number} is outside -{limit}..{limit}")
        return None
    return number


def parse_checkpoints(text: str, source: str = "checkpoints.csv") -> list[Checkpoint]:
    """Every row of a checkpoints CSV, or RegistryError with every problem found (by line, column)."""
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    problems: list[str] = []
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
    if missing:
        problems.append(f"line 1: missing column(s) {', '.join(missing)}")
    if unknown:
        problems.append(f"line 1: unknown column(s) {', '.join(unknown)} (known: {', '.join(REQUIRED + OPTIONAL)})")
    if problems:
        raise RegistryError(source, problems)
    reader.fieldnames = header
    checkpoints: list[Checkpoint] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        where = f"line {line}"
        if len(checkpoints) >= MAX_ROWS:
            problems.append(f"{where}: more than {MAX_ROWS} checkpoints in one file")
            break
        if None in row:
            problems.append(f"{where}: more cells than columns")
            continue
        cells = {k: (v or "") for k, v in row.items()}
        checkpoint_id = _text(cells["checkpoint_id"], "checkpoint_id", problems, where, required=True)
        if checkpoint_id and not ID_PATTERN.fullmatch(checkpoint_id):
            problems.append(f"{where}, column checkpoint_id: {checkpoint_id[:40]!r} must be letters, digits, "
                            "'-', '_' or '.' (at most 48)")
        elif checkpoint_id in seen:
            problems.append(f"{where}, column checkpoint_id: {checkpoint_id!r} already on line {seen[checkpoint_id]}")
        seen.setdefault(checkpoint_id, line)
        devices_text = cells.get("devices", "").strip() or "1"
        devices = int(devices_text) if devices_text.isdigit() else 0
        if not 1 <= devices <= MAX_DEVICES_PER_CHECKPOINT:
            problems.append(f"{where}, column devices: {devices_text[:20]!r} must be 1..{MAX_DEVICES_PER_CHECKPOINT}")
        latitude = _coordinate(cells.get("latitude", ""), "latitude", 90, problems, where)
        longitude = _coordinate(cells.get("longitude", ""), "longitude", 180, problems, where)
        if bool(cells.get("latitude", "").strip()) != bool(cells.get("longitude", "").strip()):
            problems.append(f"{where}: give both latitude and longitude, or neither")
        server_url = _text(cells.get("server_url", ""), "server_url", problems, where, required=False)
        if server_url and not server_url.startswith(("https://", "http://")):
            problems.append(f"{where}, column server_url: must start with https:// (or http:// on a lab network)")
        name = _text(cells["name"], "name", problems, where, required=True)
        if len(name) > MAX_NAME:
            problems.append(f"{where}, column name: longer than {MAX_NAME} characters")
        checkpoints.append(Checkpoint(
            checkpoint_id=checkpoint_id,
            name=name,
            province=_text(cells["province"], "province", problems, where, required=True),
            district=_text(cells.get("district", ""), "district", problems, where, required=False),
            zone=_text(cells.get("zone", ""), "zone", problems, where, required=False),
            latitude=latitude, longitude=longitude,
            policy=_text(cells.get("policy", ""), "policy", problems, where, required=False),
            devices=max(devices, 1), server_url=server_url))
    if not checkpoints and not problems:
        problems.append("no checkpoints in the file")
    if problems:
        raise RegistryError(source, problems)
    return checkpoints


def load_checkpoints_csv(path: Path) -> list[Checkpoint]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RegistryError(str(path), [f"not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    return parse_checkpoints(text, str(path))


class Registry:
    """The loaded registry of a server's data directory (re-read when the file changes)."""

    def __init__(self, checkpoints: Iterable[Checkpoint] = ()):
        self.checkpoints: dict[str, Checkpoint] = {c.checkpoint_id: c for c in checkpoints}

    def checkpoint_of(self, device_id: str) -> Checkpoint | None:
        return self.checkpoints.get(device_checkpoint(device_id))

    def device_ids(self) -> list[str]:
        return [d for c in self.checkpoints.values() for d in c.device_ids]

    def save(self, data_dir: Path) -> Path:
        path = data_dir / REGISTRY_FILE
        body = json.dumps([asdict(c) for c in self.checkpoints.values()], ensure_ascii=False, indent=1)
        write_atomic(path, body.encode("utf-8"))
        return path

    @classmethod
    def load(cls, data_dir: Path | None) -> Registry:
        """The saved registry, or an empty one (the server then shows device ids only)."""
        if data_dir is None or not (data_dir / REGISTRY_FILE).is_file():
            return cls()
        rows = json.loads((data_dir / REGISTRY_FILE).read_text(encoding="utf-8"))
        return cls(Checkpoint(**row) for row in rows)


class RegistryFile:
    """A registry that follows its file: another process (``server registry load``) may replace it."""

    def __init__(self, data_dir: Path | None):
        self.data_dir = data_dir
        self._stamp: tuple[int, int] | None = None
        self._registry = Registry()

    def current(self) -> Registry:
        if self.data_dir is None:
            return self._registry
        path = self.data_dir / REGISTRY_FILE
        try:
            st = path.stat()
        except FileNotFoundError:
            self._stamp, self._registry = None, Registry()
            return self._registry
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._registry, self._stamp = Registry.load(self.data_dir), stamp
        return self._registry
