"""Per-checkpoint policy: which passes are accepted and what health evidence each kind needs.

The policy is a versioned, signed envelope of kind ``policy``. Its rules never turn doubt into
PASS: a kind without a rule is CHECK (NO_RULE); stale risk lists and untrusted clocks are
handled by the verifier as CHECK before a PASS can be given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from edge.passes.credential import Credential, PassFormat, PassKind
from edge.verdict import Reason
from sync.wire.envelope import EnvelopeError, open_envelope, sign_envelope
from sync.wire.errors import CheckpointError
from sync.wire.risk.types import Coverage

ENVELOPE_KIND = "policy"
ALL_ZONES = "*"
Evidence = Literal["vaccinated", "tested", "recovered", "none"]
CheckpointName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class PolicyError(CheckpointError, ValueError):
    """A policy file or envelope is missing, forged, or does not validate."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Zone(_Model):
    """A zone of the city (Hanoi 2021: zones 1, 2, 3 and locked-down red areas)."""

    id: str = Field(min_length=1, max_length=64)
    name: str = ""
    #: a red area (vùng đỏ): only kinds whose rule has ``red_area = true`` may cross
    red: bool = False


class KindRule(_Model):
    """What a pass kind needs at this checkpoint: any one of ``accept`` suffices."""

    kind: PassKind
    accept: list[Evidence] = Field(min_length=1)
    red_area: bool = False


@dataclass(frozen=True)
class CheckpointIdentity:
    """Who a device is, for policy: its checkpoint id and the groups it belongs to (device config)."""

    checkpoint: str
    groups: tuple[str, ...] = ()


class PolicyProfile(_Model):
    """A policy's rules without whom they are for: authored once per profile (zone-1 entry, red
    area, province border) and sealed for each checkpoint that uses it (``Policy``)."""

    name: str = "checkpoint policy"
    checkpoint_zone: str
    zones: list[Zone]
    accepted_formats: list[PassFormat]
    accepted_kinds: list[PassKind]
    rules: list[KindRule] = []
    doses_required: int = Field(default=2, ge=0, le=10)
    #: a completed series (e.g. one dose of a one-dose vaccine) also counts as enough doses
    accept_completed_series: bool = True
    days_after_last_dose: int = Field(default=14, ge=0)
    test_validity_hours: float = Field(default=72, gt=0)
    recovery_validity_days: int = Field(default=180, gt=0)
    #: a risk list older than this (by its publication time) yields CHECK instead of PASS
    max_risk_list_age_hours: float = Field(default=24, gt=0)
    #: CP1 passes must name the checkpoint's zone (or "*") in their allowed zones
    cp1_zone_required: bool = True
    #: FORMAT:ISSUER items (``HC1:DE``, ``HC1:*``) this checkpoint lets PASS although the risk list
    #: does not cover them; by default such a pass is CHECK (``risk_not_covered``), never PASS by omission
    risk_coverage_waived_for: list[str] = []

    @model_validator(mode="after")
    def _consistent(self) -> PolicyProfile:
        ids = [z.id for z in self.zones]
        if len(ids) != len(set(ids)):
            raise ValueError("zone ids must be unique")
        if self.checkpoint_zone not in ids:
            raise ValueError(f"checkpoint_zone {self.checkpoint_zone!r} is not one of the zones {ids}")
        kinds = [r.kind for r in self.rules]
        if len(kinds) != len(set(kinds)):
            raise ValueError("at most one rule per pass kind")
        Coverage.parse(self.risk_coverage_waived_for)
        return self

    def risk_coverage_waived(self, fmt: str, issuer: str | None) -> bool:
        """Whether this policy explicitly lets a pass the risk list does not cover PASS."""
        waived = self.risk_coverage_waived_for
        return bool(waived) and (f"{fmt}:*" in waived or f"{fmt}:{issuer}" in waived)

    def zone(self) -> Zone:
        for z in self.zones:  # a plain loop: this runs on every scan
            if z.id == self.checkpoint_zone:
                return z
        raise LookupError(self.checkpoint_zone)  # the validator makes this unreachable

    def rule_for(self, kind: PassKind) -> KindRule | None:
        for r in self.rules:
            if r.kind == kind:
                return r
        return None

    def evaluate(self, cred: Credential, now: datetime) -> Reason:
        """OK when this checkpoint's rules admit ``cred`` at ``now``; otherwise the first reason why not."""
        if cred.format not in self.accepted_formats:
            return Reason.FORMAT_NOT_ACCEPTED
        if cred.kind not in self.accepted_kinds:
            return Reason.KIND_NOT_ACCEPTED
        rule = self.rule_for(cred.kind)
        if rule is None:
            return Reason.NO_RULE
        if self.zone().red and not rule.red_area:
            return Reason.ZONE_NOT_ALLOWED
        if (cred.format == PassFormat.CP1 and self.cp1_zone_required
                and self.checkpoint_zone not in cred.zones and ALL_ZONES not in cred.zones):
            return Reason.ZONE_NOT_ALLOWED
        return self._evidence(cred, rule, now)

    def _evidence(self, cred: Credential, rule: KindRule, now: datetime) -> Reason:
        """OK when any accepted evidence holds; else the failure of the first evidence the pass
        carries (or, carrying none, of the first accepted)."""
        accept = rule.accept
        first = self._check(accept[0], cred, now)
        if first is Reason.OK or len(accept) == 1:
            return first  # a single failure is the answer either way: no need to ask what it carries
        failures = [first]
        for evidence in accept[1:]:
            reason = self._check(evidence, cred, now)
            if reason is Reason.OK:
                return Reason.OK
            failures.append(reason)
        for reason, evidence in zip(failures, accept, strict=True):
            if self._has(evidence, cred):
                return reason
        return failures[0]

    @staticmethod
    def _has(evidence: str, cred: Credential) -> bool:
        if evidence == "vaccinated":
            return cred.vaccination is not None
        if evidence == "tested":
            return cred.test is not None
        if evidence == "recovered":
            return cred.recovery is not None
        return False

    def _check(self, evidence: str, cred: Credential, now: datetime) -> Reason:
        today = now.date()
        if evidence == "none":
            return Reason.OK
        if evidence == "vaccinated":
            v = cred.vaccination
            if v is None:
                return Reason.INSUFFICIENT_VACCINATION
            enough = v.doses >= self.doses_required or (
                self.accept_completed_series and v.series_doses > 0 and v.doses >= v.series_doses)
            # subtracting dates never overflows; adding days to a signed 9999-12-31 would
            waited = v.last_dose is None or (today - v.last_dose).days >= self.days_after_last_dose
            return Reason.OK if enough and waited and v.doses > 0 else Reason.INSUFFICIENT_VACCINATION
        if evidence == "tested":
            t = cred.test
            if t is None:
                return Reason.TEST_TOO_OLD
            if not t.negative:
                return Reason.TEST_POSITIVE
            age = now - t.taken_at
            ok = timedelta(minutes=-5) <= age <= timedelta(hours=self.test_validity_hours)
            return Reason.OK if ok else Reason.TEST_TOO_OLD
        r = cred.recovery
        if r is None:
            return Reason.RECOVERY_NOT_VALID
        if (r.valid_from and today < r.valid_from) or (r.valid_until and today > r.valid_until):
            return Reason.RECOVERY_NOT_VALID
        if r.first_positive and (today - r.first_positive).days > self.recovery_validity_days:
            return Reason.RECOVERY_NOT_VALID
        return Reason.OK if (r.first_positive or r.valid_until) else Reason.RECOVERY_NOT_VALID

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(indent=2).encode()


class Policy(PolicyProfile):
    """One checkpoint's rules (versioned; newer versions replace older ones atomically)."""

    version: int = Field(ge=1)
    #: the checkpoint ids or checkpoint groups this policy is for; a device installs a policy only
    #: when it names the device's checkpoint or one of its groups (no wildcard)
    checkpoints: list[CheckpointName] = Field(min_length=1)

    def applies_to(self, checkpoint: CheckpointIdentity) -> bool:
        """Whether this policy names ``checkpoint`` (its id or one of its groups)."""
        return checkpoint.checkpoint in self.checkpoints or any(g in self.checkpoints for g in checkpoint.groups)


HANOI_2021_ZONES = [
    Zone(id="hn-zone-1", name="Hà Nội vùng 1 (nội thành)"),
    Zone(id="hn-zone-2", name="Hà Nội vùng 2"),
    Zone(id="hn-zone-3", name="Hà Nội vùng 3"),
    Zone(id="hn-red", name="Vùng đỏ (phong tỏa)", red=True),
]


def default_policy(checkpoint_zone: str = "hn-zone-1", version: int = 1,
                   checkpoints: tuple[str, ...] | None = None) -> Policy:
    """A sensible demo policy modelled on Hanoi's 2021 checkpoints.

    It applies to ``checkpoints`` (ids or groups; default: the group named like the zone).
    """
    any_health: list[Evidence] = ["vaccinated", "tested", "recovered"]
    rules = [
        KindRule(kind=PassKind.RESIDENT, accept=any_health),
        KindRule(kind=PassKind.TRAVEL_PERMIT, accept=["vaccinated", "tested"]),
        KindRule(kind=PassKind.CROSS_PROVINCE_WORKER, accept=["tested", "vaccinated"]),
        KindRule(kind=PassKind.STUDENT, accept=any_health),
        KindRule(kind=PassKind.GOODS_DRIVER, accept=["tested"], red_area=True),
        KindRule(kind=PassKind.OFFICIAL, accept=["none"], red_area=True),
        KindRule(kind=PassKind.DCC_VACCINATION, accept=["vaccinated"]),
        KindRule(kind=PassKind.DCC_TEST, accept=["tested"]),
        KindRule(kind=PassKind.DCC_RECOVERY, accept=["recovered"]),
    ]
    return Policy(version=version, name="Hà Nội 2021 (demo)", checkpoints=list(checkpoints or (checkpoint_zone,)),
                  checkpoint_zone=checkpoint_zone,
                  zones=HANOI_2021_ZONES, accepted_formats=list(PassFormat), accepted_kinds=list(PassKind),
                  rules=rules)


def parse_policy(data: bytes) -> Policy:
    """Validate policy JSON; PolicyError lists every bad or unknown field."""
    try:
        return Policy.model_validate_json(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise PolicyError("invalid policy: " + "; ".join(lines)) from None


def sign_policy(policy: Policy, key: Ed25519PrivateKey, issued_at: datetime | None = None) -> bytes:
    """The policy as a signed envelope (kind ``policy``, envelope version = policy version)."""
    return sign_envelope(ENVELOPE_KIND, policy.version, policy.to_json_bytes(), key, issued_at)


class PolicyNotForThisCheckpoint(PolicyError):
    """A validly signed policy names other checkpoints (another zone's, served by mistake or by an
    attacker between device and server)."""


def parse_policy_envelope(blob: bytes, keys: list[Ed25519PublicKey],
                          checkpoint: CheckpointIdentity | None) -> Policy:
    """Open a signed policy envelope with the pinned publisher keys and validate it.

    A device passes its ``checkpoint``: a policy that does not name it is refused. Only tools that
    inspect a policy for someone else (``checkpoint policy show``) pass None.
    """
    try:
        env = open_envelope(blob, ENVELOPE_KIND, keys)
    except EnvelopeError as exc:
        raise PolicyError(f"policy envelope rejected: {exc}") from None
    policy = parse_policy(env.payload)
    if policy.version != env.version:
        raise PolicyError(f"policy version {policy.version} differs from its envelope's {env.version}")
    if checkpoint is not None and not policy.applies_to(checkpoint):
        groups = f" (groups {', '.join(checkpoint.groups)})" if checkpoint.groups else ""
        raise PolicyNotForThisCheckpoint(
            f"policy version {policy.version} is for {', '.join(policy.checkpoints)}, not for checkpoint "
            f"{checkpoint.checkpoint}{groups}")
    return policy


def load_policy_file(path: Path, keys: list[Ed25519PublicKey], checkpoint: CheckpointIdentity | None) -> Policy:
    """Read a signed policy file from disk (refused unless it names ``checkpoint``, when given)."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy ({exc.strerror}); sync or provision first") from None
    return parse_policy_envelope(blob, keys, checkpoint)


def policy_json_schema() -> str:
    """The JSON schema of a policy document (for people writing one by hand)."""
    return json.dumps(Policy.model_json_schema(), indent=2)
