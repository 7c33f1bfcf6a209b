"""The device's heartbeat: what it reports about itself to the central server on every sync.

Built from the same typed status snapshot the status file and staff screen show, plus what only
the host knows (disk, CPU temperature, uptime). Readings that a machine does not offer (no thermal
zone in a container, say) are left out, not guessed.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from edge import __version__
from edge.device.status import StatusSnapshot
from sync.wire.protocol import Heartbeat

#: the SoC temperature on a Raspberry Pi (millidegrees Celsius)
CPU_THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")


def cpu_temperature_c(path: Path = CPU_THERMAL_ZONE) -> float | None:
    """The CPU temperature, or None where the machine has no readable thermal zone."""
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def disk_free_mb(path: Path) -> float | None:
    try:
        return round(shutil.disk_usage(path).free / 2**20, 1)
    except OSError:
        return None


def build_heartbeat(snapshot: StatusSnapshot, *, trust_version: int | None, data_dir: Path,
                    uptime_s: float | None = None, thermal_zone: Path = CPU_THERMAL_ZONE) -> Heartbeat:
    """One heartbeat from the daemon's snapshot and the host's readings."""
    device = snapshot.device
    return Heartbeat(
        device_id=device.device_id or "unknown",
        sent_at=snapshot.updated_at,
        software_version=__version__,
        uptime_s=round(time.monotonic() if uptime_s is None else uptime_s, 1),  # CLOCK_MONOTONIC: since boot
        state=snapshot.state,
        faults=list(snapshot.faults),
        clock_trusted=snapshot.clock_trusted,
        trust_version=trust_version,
        policy_version=device.policy_version,
        risk_version=device.risk_version,
        risk_published_at=device.risk_published_at,
        backlog=device.unsynced_records or 0,
        disk_free_mb=disk_free_mb(data_dir),
        cpu_temp_c=cpu_temperature_c(thermal_zone),
        last_frame_age_s=snapshot.last_frame_age_s,
        decisions=snapshot.decisions,
    )


HeartbeatSource = Callable[[], Heartbeat]
