"""What a commander needs at a glance: is each checkpoint working, and if not, what is wrong.

A checkpoint's health comes from its devices' last heartbeats (``sync.wire.protocol.Heartbeat``),
judged against the server's clock: a device never heard from, one silent for longer than
``down_after``, one reporting faults, stale lists or an untrusted clock. The worst device decides
the checkpoint's colour; every problem is listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sync.server.registry import Checkpoint
from sync.wire.protocol import Heartbeat

#: silent for longer than this: down (devices sync every minute; a cut cable shows within minutes)
DOWN_AFTER = timedelta(minutes=15)
#: a risk list published longer ago than this is stale on the dashboard (the device's policy may
#: be stricter: its own ``risk_stale`` fault is reported too)
RISK_STALE_AFTER = timedelta(hours=24)


class Health(StrEnum):
    """From worst to best; the order is the order of ``SEVERITY``."""

    DOWN = "down"
    NEVER_SEEN = "never_seen"
    FAULTY = "faulty"
    STALE_LISTS = "stale_lists"
    CLOCK_UNTRUSTED = "clock_untrusted"
    OK = "ok"


SEVERITY = {h: i for i, h in enumerate(Health)}


@dataclass(frozen=True)
class DeviceHealth:
    device_id: str
    health: Health
    problems: tuple[Health, ...]
    heartbeat: Heartbeat | None
    last_seen: datetime | None


@dataclass(frozen=True)
class CheckpointHealth:
    checkpoint: Checkpoint
    health: Health
    devices: tuple[DeviceHealth, ...] = field(default=())

    @property
    def last_seen(self) -> datetime | None:
        seen = [d.last_seen for d in self.devices if d.last_seen is not None]
        return max(seen) if seen else None

    @property
    def problems(self) -> tuple[Health, ...]:
        found = {p for d in self.devices for p in d.problems}
        return tuple(sorted(found, key=SEVERITY.__getitem__))


def device_health(device_id: str, heartbeat: Heartbeat | None, received_at: datetime | None, now: datetime, *,
                  down_after: timedelta = DOWN_AFTER, risk_stale_after: timedelta = RISK_STALE_AFTER) -> DeviceHealth:
    """One device's problems, worst first (OK when it has none)."""
    if heartbeat is None or received_at is None:
        return DeviceHealth(device_id, Health.NEVER_SEEN, (Health.NEVER_SEEN,), None, None)
    problems: list[Health] = []
    if now - received_at > down_after:
        problems.append(Health.DOWN)
    faults = set(heartbeat.faults) - {"risk_stale", "clock_untrusted"}
    if faults or heartbeat.state not in ("running", "starting"):
        problems.append(Health.FAULTY)
    if "risk_stale" in heartbeat.faults or heartbeat.risk_version is None or _older(
            heartbeat.risk_published_at, now, risk_stale_after):
        problems.append(Health.STALE_LISTS)
    if not heartbeat.clock_trusted or "clock_untrusted" in heartbeat.faults:
        problems.append(Health.CLOCK_UNTRUSTED)
    problems.sort(key=SEVERITY.__getitem__)
    return DeviceHealth(device_id, problems[0] if problems else Health.OK, tuple(problems), heartbeat, received_at)


def _older(iso: str | None, now: datetime, limit: timedelta) -> bool:
    if iso is None:
        return True
    try:
        return now - datetime.fromisoformat(iso.replace("Z", "+00:00")) > limit
    except (ValueError, TypeError):
        return True  # an unreadable time is not evidence of a fresh list


def checkpoint_health(checkpoint: Checkpoint, devices: list[DeviceHealth]) -> CheckpointHealth:
    """The checkpoint is as healthy as its worst device (never seen if it has none)."""
    if not devices:
        return CheckpointHealth(checkpoint, Health.NEVER_SEEN, ())
    worst = min((d.health for d in devices), key=SEVERITY.__getitem__)
    return CheckpointHealth(checkpoint, worst, tuple(devices))
