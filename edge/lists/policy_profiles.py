"""Policy profiles: rules authored once (zone-1 entry, red area, province border), sealed per checkpoint.

A profile is a policy without ``version`` and ``checkpoints`` (``<profile>.json`` in a folder the
provincial IT keeps). Publishing seals, for every checkpoint that uses a profile, a policy naming
that checkpoint alone, so a device refuses any other checkpoint's rules. A checkpoint's sealed
policy gets a new version only when its rules change: changing one profile reaches exactly the
checkpoints that use it, and the others' devices download nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from edge.lists.policy import (
    CheckpointIdentity,
    Policy,
    PolicyError,
    PolicyProfile,
    parse_policy_envelope,
    sign_policy,
)

#: a profile's name is its file's stem (the registry's ``policy`` column names it)
PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_PROFILE_BYTES = 1024 * 1024


def parse_profile(data: bytes, source: str, default_name: str) -> PolicyProfile:
    """Validate one profile; its ``name`` defaults to ``default_name`` (the file's stem)."""
    try:
        profile = PolicyProfile.model_validate_json(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc'])) or '(file)'}: {e['msg']}" for e in exc.errors()]
        raise PolicyError(f"{source}: invalid policy profile: " + "; ".join(lines)) from None
    return profile if "name" in profile.model_fields_set else profile.model_copy(update={"name": default_name})


def load_profiles(directory: Path) -> dict[str, PolicyProfile]:
    """Every ``<name>.json`` in ``directory``; PolicyError naming each bad file (none is used then)."""
    if not directory.is_dir():
        raise PolicyError(f"{directory}: no such folder of policy profiles (one <profile>.json per profile)")
    profiles: dict[str, PolicyProfile] = {}
    problems: list[str] = []
    for path in sorted(directory.glob("*.json")):
        if not PROFILE_NAME.fullmatch(path.stem):
            problems.append(f"{path.name}: a profile name is letters, digits, '.', '_' or '-' (at most 64)")
            continue
        try:
            if path.stat().st_size > MAX_PROFILE_BYTES:
                problems.append(f"{path.name}: larger than {MAX_PROFILE_BYTES} bytes")
                continue
            profiles[path.stem] = parse_profile(path.read_bytes(), path.name, path.stem)
        except PolicyError as exc:
            problems.append(str(exc))
        except OSError as exc:
            problems.append(f"{path.name}: cannot read ({exc.strerror})")
    if problems:
        raise PolicyError(f"{directory}: {len(problems)} bad profile(s), nothing published:\n  "
                          + "\n  ".join(problems))
    if not profiles:
        raise PolicyError(f"{directory}: no policy profiles (<profile>.json) in it")
    return profiles


@dataclass(frozen=True)
class SealedPolicy:
    """What publishing does for one checkpoint: ``blob`` is the new signed policy, None if unchanged."""

    checkpoint_id: str
    profile: str
    version: int
    previous: int | None
    blob: bytes | None

    @property
    def changed(self) -> bool:
        return self.blob is not None


def _seal_one(checkpoint_id: str, profile_name: str, profile: PolicyProfile, current: bytes | None,
              key: Ed25519PrivateKey, floor: int) -> SealedPolicy:
    held: Policy | None = None
    if current is not None:
        try:
            held = parse_policy_envelope(current, [key.public_key()], CheckpointIdentity(checkpoint_id))
        except PolicyError as exc:
            raise PolicyError(f"checkpoint {checkpoint_id}: its published policy is unusable ({exc}); move the "
                              "file aside and publish again") from None
    candidate = Policy(version=max(held.version if held else 0, floor) + 1, checkpoints=[checkpoint_id],
                       **profile.model_dump())
    if held is not None and held.model_dump(exclude={"version"}) == candidate.model_dump(exclude={"version"}):
        return SealedPolicy(checkpoint_id, profile_name, held.version, held.version, None)
    return SealedPolicy(checkpoint_id, profile_name, candidate.version, held.version if held else None,
                        sign_policy(candidate, key))


def seal_per_checkpoint(assignments: Iterable[tuple[str, str]], profiles: dict[str, PolicyProfile],
                        current: Callable[[str], bytes | None], key: Ed25519PrivateKey,
                        floor: int = 0) -> list[SealedPolicy]:
    """Seal each ``(checkpoint id, profile name)``'s policy naming that checkpoint.

    ``current(checkpoint_id)`` is its published policy (None if none). A new version is above both
    its current one and ``floor`` (the fleet-wide policy's version, which its devices may have
    installed before per-checkpoint policies). Every profile name is checked before anything is sealed.
    """
    pairs = list(assignments)
    missing: dict[str, list[str]] = {}
    for checkpoint_id, name in pairs:
        if name not in profiles:
            missing.setdefault(name, []).append(checkpoint_id)
    if missing:
        lines = [f"profile {name!r} (used by {', '.join(ids[:5])}{' …' if len(ids) > 5 else ''})"
                 for name, ids in sorted(missing.items())]
        raise PolicyError(f"{len(missing)} profile(s) named in the registry do not exist (known: "
                          f"{', '.join(sorted(profiles))}), nothing published:\n  " + "\n  ".join(lines))
    return [_seal_one(cid, name, profiles[name], current(cid), key, floor) for cid, name in pairs]
