"""The daemon's status: one typed snapshot, written atomically to a file, read by ``checkpoint status``.

The daemon builds a :class:`StatusSnapshot` about once a second and :class:`StatusFile` replaces
the file with it (temp file + rename, so a reader never sees half a file). Put it on tmpfs
(``/run/checkpoint/status.json``, the unit's RuntimeDirectory) to spare the SD card. The same
type is what the staff screen and ``checkpoint status`` read back: one definition, no key
spelled twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sync.wire.fsutil import write_atomic

DEFAULT_CONFIG = Path("/etc/checkpoint/config.toml")
#: older than this, the daemon is probably not running
STALE_AFTER_S = 10.0


@dataclass(frozen=True)
class VerdictSummary:
    """One recent decision, privacy-safe: no holder hash, no pass id."""

    at: str
    verdict: str
    reason: str
    format: str | None = None
    kind: str | None = None
    message_vi: str = ""
    message_en: str = ""
    recorded: bool = True
    latency_ms: float = 0.0


@dataclass(frozen=True)
class DayCounts:
    """Decisions recorded on one local calendar day (the staff screen's counters)."""

    date: str = ""
    passed: int = 0
    refused: int = 0
    checked: int = 0

    def add(self, decision: str) -> DayCounts:
        field_name = {"PASS": "passed", "REFUSE": "refused"}.get(decision, "checked")
        return replace(self, **{field_name: getattr(self, field_name) + 1})


@dataclass(frozen=True)
class DeviceStatus:
    """What the composition root adds to the daemon's view: identity, lists and the sync backlog."""

    device_id: str | None = None
    #: provisioned with the pinned publisher key and, when it syncs, accepted by the server once
    enrolled: bool | None = None
    policy_version: int | None = None
    risk_version: int | None = None
    risk_published_at: str | None = None
    unsynced_records: int | None = None
    #: why the clock is not trusted (see ``CLOCK_DOUBTS``), and the newest signed time seen
    clock_untrusted_because: str | None = None
    clock_floor: str | None = None
    #: a disk problem and what to do about it (None when the SD card is fine)
    disk: str | None = None

    def risk_age_s(self, now: datetime) -> float | None:
        """Seconds since the installed risk list was published (None without one)."""
        if self.risk_published_at is None:
            return None
        return max(0.0, (now - datetime.fromisoformat(self.risk_published_at)).total_seconds())


@dataclass(frozen=True)
class StatusSnapshot:
    """What the daemon is doing now: the status file's content, field for field."""

    state: str
    updated_at: str
    source: str = "?"
    frames: int = 0
    last_frame_age_s: float | None = None
    decisions: int = 0
    errors: int = 0
    showing: str | None = None
    last_verdicts: tuple[VerdictSummary, ...] = ()
    faults: tuple[str, ...] = ()
    clock_trusted: bool = False
    reopen_failures: int = 0
    device: DeviceStatus = field(default_factory=DeviceStatus)
    #: seconds (monotonic) since the last decision: the screen holds a verdict by this, not by wall time
    last_decision_age_s: float | None = None
    today: DayCounts = field(default_factory=DayCounts)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StatusSnapshot:
        """Read back what :meth:`to_json` wrote; raises ValueError on anything else."""
        try:
            return cls(**{**data, "last_verdicts": tuple(VerdictSummary(**v) for v in data.get("last_verdicts", ())),
                          "faults": tuple(data.get("faults", ())),
                          "device": DeviceStatus(**data.get("device", {})),
                          "today": DayCounts(**data.get("today", {}))})
        except TypeError as exc:
            raise ValueError(f"not a status snapshot: {exc}") from None


class StatusFile:
    """Atomically replaced JSON file; ``write`` is the daemon's ``status_writer``."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def write(self, snapshot: StatusSnapshot) -> None:
        """Replace the file with the snapshot as JSON, atomically (no fsync: a live view, not a record)."""
        body = json.dumps(snapshot.to_json(), ensure_ascii=False, sort_keys=True).encode()
        write_atomic(self.path, body, durable=False)

    __call__ = write

    def read(self) -> StatusSnapshot:
        """The last snapshot; raises FileNotFoundError, or ValueError (not JSON, not a snapshot)."""
        data = json.loads(self.path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return StatusSnapshot.from_json(data)

    def age_s(self) -> float:
        """Seconds since the daemon last wrote the file."""
        return max(0.0, time.time() - self.path.stat().st_mtime)


#: why a clock is untrusted -> what staff and the operator read in ``checkpoint status``
CLOCK_DOUBTS = {
    "jump": "the wall clock jumped against the monotonic clock; trusted again after the next sync",
    "before_floor": "earlier than the newest signed time seen; trusted again after the next sync",
    "no_time_source": "no signed server time, RTC or NTP since boot; sync to fix",
    "state_damaged": "the clock file was unreadable; trusted again after the next sync",
    "before_build": "earlier than this software's release; sync to fix",
}


def _fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.1f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def format_status(snapshot: StatusSnapshot, file_age_s: float | None = None) -> str:
    """A short human-readable report of a snapshot."""
    lines = [f"state:            {snapshot.state} (source {snapshot.source})"]
    if file_age_s is not None and file_age_s > STALE_AFTER_S:
        lines.append(f"WARNING:          status written {_fmt_age(file_age_s)}: is the daemon running? "
                     "(systemctl status checkpoint)")
    lines.append(f"last frame:       {_fmt_age(snapshot.last_frame_age_s)}, {snapshot.frames} frames")
    lines.append(f"decisions:        {snapshot.decisions} (errors {snapshot.errors})")
    lines.append(f"faults:           {', '.join(snapshot.faults) if snapshot.faults else 'none'}")
    device = snapshot.device
    clock = "yes" if snapshot.clock_trusted else "NO"
    if not snapshot.clock_trusted and device.clock_untrusted_because:
        clock += f" ({CLOCK_DOUBTS.get(device.clock_untrusted_because, device.clock_untrusted_because)})"
    lines.append(f"clock trusted:    {clock}")
    if device.clock_floor is not None:
        lines.append(f"clock floor:      {device.clock_floor} (newest signed time seen)")
    if device.device_id is not None:
        lines.append(f"device:           {device.device_id}")
    if device.policy_version is not None:
        lines.append(f"policy:           version {device.policy_version}")
    if device.risk_version is not None:
        age = device.risk_age_s(datetime.fromisoformat(snapshot.updated_at))
        lines.append(f"risk list:        version {device.risk_version}, published {_fmt_age(age)}")
    else:
        lines.append("risk list:        none installed (waiting for the first sync)")
    if device.unsynced_records is not None:
        lines.append(f"unsynced records: {device.unsynced_records}")
    if device.disk is not None:
        lines.append(f"DISK:             {device.disk}")
    for verdict in snapshot.last_verdicts[:5]:
        lines.append(f"  {verdict.at}  {verdict.verdict:<6}  {verdict.reason}  {verdict.kind or ''}  "
                     f"{verdict.latency_ms} ms")
    return "\n".join(lines)
