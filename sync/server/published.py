"""What the server publishes from its data directory: versions for the dashboard, and uploads."""

from __future__ import annotations

from pathlib import Path

import cbor2

from sync.server.registry import Registry
from sync.server.settings import ServerSettings

#: envelopes an operator may upload through the admin API (the risk list has its own publisher)
UPLOADABLE = ("trust", "policy", "valuesets")
#: each checkpoint's own sealed policy (``checkpoint policy publish``), beside the fleet-wide one
POLICIES_DIR = "published/policies"


def fleet_policy_path(data_dir: Path) -> Path:
    """The fleet-wide policy: for devices whose checkpoint has no policy of its own."""
    return data_dir / "published" / "policy.cpenv"


def checkpoint_policy_path(data_dir: Path, checkpoint_id: str) -> Path:
    """A checkpoint's own policy (registry ids are safe file names)."""
    return data_dir / POLICIES_DIR / f"{checkpoint_id}.cpenv"


def policy_path_for(data_dir: Path, registry: Registry, device_id: str) -> Path:
    """The policy a device downloads: its registry checkpoint's own once published, else the fleet's."""
    checkpoint = registry.checkpoint_of(device_id)
    if checkpoint is not None:
        own = checkpoint_policy_path(data_dir, checkpoint.checkpoint_id)
        if own.is_file():
            return own
    return fleet_policy_path(data_dir)


def published_version(path: Path) -> int | None:
    """Version in an envelope file's header (the device verifies the signature itself)."""
    try:
        header, _payload, _sig = cbor2.loads(path.read_bytes())
        return int(cbor2.loads(header)["version"])
    except (OSError, ValueError, KeyError, TypeError, cbor2.CBORDecodeError):
        return None


def published_lists(settings: ServerSettings) -> dict[str, tuple[int | None, str]]:
    """What the devices can download now: trust list, policy, value sets and risk list versions (dashboard)."""
    if settings.data_dir is None:
        return {}
    out: dict[str, tuple[int | None, str]] = {}
    for kind in ("trust", "policy", "valuesets"):
        path = settings.data_dir / "published" / f"{kind}.cpenv"
        version = published_version(path)
        out[kind] = (version, str(path) if version is not None else f"not published ({path})")
    own = sorted((settings.data_dir / POLICIES_DIR).glob("*.cpenv"))
    if own:
        versions = [v for v in map(published_version, own) if v is not None]
        out["policy"] = (out["policy"][0], f"{out['policy'][1]}; {len(own)} checkpoint(s) with their own policy "
                         f"(versions {min(versions, default=0)}..{max(versions, default=0)})")
    risk_dir = settings.data_dir / "risk"
    if settings.publisher_key is not None and risk_dir.is_dir():
        from sync.server.publish.risk import RiskPublisher

        publisher = RiskPublisher(risk_dir, settings.publisher_key)
        at = publisher.published_at
        out["risk"] = (publisher.latest_version or None,
                       f"{publisher.entries:,} entries, published {at.isoformat() if at else 'never'}")
    else:
        out["risk"] = (None, f"not published ({risk_dir})")
    return out
