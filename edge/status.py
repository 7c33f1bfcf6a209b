"""The daemon's local status file and ``checkpoint status``.

The daemon writes its :meth:`Daemon.snapshot` here about once a second (atomic: temp file +
rename, so a reader never sees half a file). Put it on tmpfs (``/run/checkpoint/status.json``,
the unit's RuntimeDirectory) to spare the SD card. Keys the composition may add through
``status_extra``: ``risk_list_version``, ``risk_list_age_s``, ``unsynced_records``, ``last_sync_at``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from edge.fsutil import write_atomic

DEFAULT_CONFIG = Path("/etc/checkpoint/config.toml")
#: older than this, the daemon is probably not running
STALE_AFTER_S = 10.0


class StatusFile:
    """Atomically replaced JSON file; ``write`` is the daemon's ``status_writer``."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def write(self, data: dict) -> None:
        """Replace the file with ``data`` as JSON, atomically (no fsync: it is a live view, not a record)."""
        write_atomic(self.path, json.dumps(data, ensure_ascii=False, sort_keys=True).encode(), durable=False)

    __call__ = write

    def read(self) -> dict:
        """The last status; raises FileNotFoundError or ValueError (not JSON)."""
        return json.loads(self.path.read_text(encoding="utf-8"))

    def age_s(self) -> float:
        """Seconds since the daemon last wrote the file."""
        return max(0.0, time.time() - self.path.stat().st_mtime)


def _fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.1f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def format_status(data: dict, file_age_s: float | None = None) -> str:
    """A short human-readable report of a status dict."""
    lines = [f"state:            {data.get('state', '?')} (source {data.get('source', '?')})"]
    if file_age_s is not None and file_age_s > STALE_AFTER_S:
        lines.append(f"WARNING:          status written {_fmt_age(file_age_s)}: is the daemon running? "
                     "(systemctl status checkpoint)")
    lines.append(f"last frame:       {_fmt_age(data.get('last_frame_age_s'))}, {data.get('frames', 0)} frames")
    lines.append(f"decisions:        {data.get('decisions', 0)} (errors {data.get('errors', 0)})")
    faults = data.get("faults") or []
    lines.append(f"faults:           {', '.join(faults) if faults else 'none'}")
    lines.append(f"clock trusted:    {'yes' if data.get('clock_trusted') else 'NO'}")
    if "risk_list_version" in data:
        lines.append(f"risk list:        version {data['risk_list_version']}, "
                     f"published {_fmt_age(data.get('risk_list_age_s'))}")
    if "unsynced_records" in data:
        lines.append(f"unsynced records: {data['unsynced_records']}")
    for verdict in (data.get("last_verdicts") or [])[:5]:
        lines.append(f"  {verdict.get('at', '?')}  {verdict.get('verdict', '?'):<6}  {verdict.get('reason', '')}"
                     f"  {verdict.get('kind') or ''}  {verdict.get('latency_ms', '')} ms")
    return "\n".join(lines)


def status_path(config_path: Path | None) -> Path:
    """Where the config puts the status file."""
    from edge.config import load_config

    config = load_config(config_path or DEFAULT_CONFIG)
    return config.resolve(config.status.path)


@click.command("status")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"Device config (default {DEFAULT_CONFIG}).")
@click.option("--json", "as_json", is_flag=True, help="Print the raw status JSON.")
def status_command(config_path: Path | None, as_json: bool) -> None:
    """What the daemon is doing: last frame age, verdicts, faults, risk list, clock, unsynced records.

    Exit 0 when the status is fresh, 1 when there is none, 2 when it is stale (daemon down?).
    """
    from edge.config import ConfigError

    try:
        path = status_path(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    status = StatusFile(path)
    try:
        data, age = status.read(), status.age_s()
    except FileNotFoundError:
        click.echo(f"no status at {path}: the daemon has not run yet (systemctl status checkpoint)", err=True)
        raise SystemExit(1) from None
    except ValueError as exc:
        click.echo(f"status file {path} is not valid JSON ({exc}): wait a second and retry", err=True)
        raise SystemExit(1) from None
    if as_json:
        click.echo(json.dumps({**data, "status_file_age_s": round(age, 3)}, ensure_ascii=False, sort_keys=True))
    else:
        click.echo(format_status(data, age))
    if age > STALE_AFTER_S:
        raise SystemExit(2)
