"""Verdicts: the one decision a scan produces, with a stable reason code and bilingual message."""

from __future__ import annotations

from dataclasses import dataclass

from sync.wire.errors import CheckpointError
from sync.wire.reasons import MESSAGES, Decision, Reason

__all__ = [
    "CHECK_REASONS",
    "MESSAGES",
    "Decision",
    "PassRejected",
    "Reason",
    "Verdict",
    "decision_for",
    "refuse_or_check",
]


@dataclass(frozen=True)
class Verdict:
    """The outcome of one scan. ``holder_hash`` is the 16-byte hash, never a plain ID."""

    decision: Decision
    reason: Reason
    format: str | None = None
    kind: str | None = None
    pass_id: str | None = None
    issuer: str | None = None
    holder_hash: bytes | None = None
    detail: str | None = None

    @property
    def message_vi(self) -> str:
        return MESSAGES[self.reason][0]

    @property
    def message_en(self) -> str:
        return MESSAGES[self.reason][1]

    def to_json(self) -> dict:
        """A JSON-ready dict (the shape ``checkpoint verify --json`` prints)."""
        return {
            "verdict": self.decision.value,
            "reason": self.reason.value,
            "format": self.format,
            "kind": self.kind,
            "pass_id": self.pass_id,
            "issuer": self.issuer,
            "holder_hash": self.holder_hash.hex() if self.holder_hash else None,
            "message_vi": self.message_vi,
            "message_en": self.message_en,
            "detail": self.detail,
        }


class PassRejected(CheckpointError):
    """Raised by pass readers for any input that is not a valid, authentic pass."""

    def __init__(self, reason: Reason, detail: str = "", *, format: str | None = None):
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
        self.format = format


#: reasons for which staff check by hand (amber) instead of refusing: doubt, not a bad pass
CHECK_REASONS = frozenset({Reason.NO_RULE, Reason.RISK_LIST_STALE, Reason.RISK_LIST_MISSING,
                           Reason.CLOCK_UNTRUSTED, Reason.INTERNAL_ERROR, Reason.NOT_A_PASS,
                           Reason.DEVICE_NOT_READY, Reason.UNKNOWN_CODE, Reason.RISK_NOT_COVERED,
                           Reason.RISK_LIST_DAMAGED, Reason.REPEAT_PASS})


def refuse_or_check(reason: Reason) -> Decision:
    """The default decision for a reason when no pass could be accepted."""
    return Decision.CHECK if reason in CHECK_REASONS else Decision.REFUSE


def decision_for(reason: Reason) -> Decision:
    """The lamp for a final reason: PASS only for ``ok``."""
    return Decision.PASS if reason is Reason.OK else refuse_or_check(reason)
