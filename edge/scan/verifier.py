"""The Verifier: QR text -> Verdict, using trust store, risk list, policy and clock.

``verify`` never raises: any unexpected error becomes CHECK / INTERNAL_ERROR with a log line.
Trust store, risk list and policy are held in one immutable snapshot that ``install`` swaps
atomically, so the sync client can update them while the daemon is verifying.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from edge.lists.policy import Policy
from edge.passes.credential import Credential
from edge.passes.reader import read_pass
from edge.passes.trust import TrustStore
from edge.passes.valuesets import ValueSets
from edge.scan.clock import Clock
from edge.verdict import Decision, PassRejected, Reason, Verdict, decision_for, refuse_or_check
from sync.wire.risk.types import RiskLookup, RiskStatus

log = logging.getLogger(__name__)

#: reasons that depend on the wall clock: with an untrusted clock they become CHECK
_TIME_REASONS = frozenset({Reason.ISSUER_KEY_EXPIRED, Reason.EXPIRED, Reason.NOT_YET_VALID})
_RISK_REASONS = {RiskStatus.F0: Reason.RISK_F0, RiskStatus.F1: Reason.RISK_F1,
                 RiskStatus.REVOKED: Reason.RISK_REVOKED}


@dataclass(frozen=True)
class _State:
    trust: TrustStore
    risk: RiskLookup | None
    policy: Policy
    value_sets: ValueSets | None = None


class Verifier:
    """Verifies scanned QR texts into Verdicts; thread-safe, hot-swappable inputs."""

    def __init__(self, *, trust: TrustStore, risk: RiskLookup | None, policy: Policy, clock: Clock,
                 value_sets: ValueSets | None = None):
        self._state = _State(trust, risk, policy, value_sets)
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def policy_version(self) -> int:
        return self._state.policy.version

    @property
    def trust_version(self) -> int:
        return self._state.trust.version

    @property
    def risk_version(self) -> int | None:
        risk = self._state.risk
        return None if risk is None else risk.version

    @property
    def policy(self) -> Policy:
        return self._state.policy

    @property
    def value_sets_version(self) -> int:
        """Version of the EU value sets in use (0: the ones shipped with the software)."""
        sets = self._state.value_sets
        return 0 if sets is None else sets.version

    def install(self, *, trust: TrustStore | None = None, risk: RiskLookup | None = None,
                policy: Policy | None = None, value_sets: ValueSets | None = None) -> None:
        """Atomically replace any of trust store, risk list, policy and value sets (others are kept)."""
        with self._lock:
            old = self._state
            self._state = _State(trust or old.trust, risk if risk is not None else old.risk, policy or old.policy,
                                 value_sets or old.value_sets)
        log.info("event=verifier_installed trust_version=%s risk_version=%s policy_version=%s valuesets_version=%s",
                 self.trust_version, self.risk_version, self.policy_version, self.value_sets_version)

    def verify(self, text: str) -> Verdict:
        """The verdict for one scanned QR text. Never raises."""
        try:
            return self._verify(text, self._state)
        except Exception as exc:  # the device path must never crash on a scan
            log.exception("event=verify_internal_error error=%r action=report_this_scan_to_maintainers",
                          type(exc).__name__)
            return Verdict(Decision.CHECK, Reason.INTERNAL_ERROR, detail=type(exc).__name__)

    def _verify(self, text: str, state: _State) -> Verdict:
        now = self._clock.now()
        trusted = self._clock.trusted()
        try:
            cred = read_pass(text, state.trust, now, state.value_sets)
        except PassRejected as exc:
            if exc.reason in _TIME_REASONS and not trusted:
                return Verdict(Decision.CHECK, Reason.CLOCK_UNTRUSTED, format=exc.format, detail=exc.detail)
            return Verdict(refuse_or_check(exc.reason), exc.reason, format=exc.format,
                           detail=exc.detail[:200])
        reason = self._decide(cred, state, now, trusted)
        decision = decision_for(reason)
        # ``_value_`` is the enum's plain value attribute (``.value`` is a slower descriptor)
        return Verdict(decision, reason, format=cred.format._value_, kind=cred.kind._value_, pass_id=cred.pass_id,
                       issuer=cred.issuer, holder_hash=cred.holder_hash)

    @staticmethod
    def _decide(cred: Credential, state: _State, now: datetime, trusted: bool) -> Reason:
        """Definite refusals first, then doubts (CHECK); PASS only when nothing is in doubt."""
        if state.trust.is_revoked(cred.pass_id):
            return Reason.PASS_REVOKED
        risk = state.risk
        if risk is not None:
            today = now.date()
            for key in cred.risk_keys:
                entry = risk.lookup(key, today)
                if entry is not None:
                    return _RISK_REASONS.get(entry.status, Reason.RISK_REVOKED)
            if risk.refused is not None:  # the card's list was edited or damaged: it serves nothing
                return Reason.RISK_LIST_DAMAGED
        if not trusted:
            return Reason.CLOCK_UNTRUSTED
        if cred.valid_from is not None and now < cred.valid_from:
            return Reason.NOT_YET_VALID
        if cred.expires_at is not None and now > cred.expires_at:
            return Reason.EXPIRED
        reason = state.policy.evaluate(cred, now)
        if reason != Reason.OK:
            return reason
        if risk is None:
            return Reason.RISK_LIST_MISSING
        published = risk.published_at
        max_age = timedelta(hours=state.policy.max_risk_list_age_hours)
        if published is None or now - published > max_age:
            return Reason.RISK_LIST_STALE
        if (not risk.coverage.includes(cred.format._value_, cred.issuer)
                and not state.policy.risk_coverage_waived(cred.format._value_, cred.issuer)):
            return Reason.RISK_NOT_COVERED  # never PASS by omission: this holder may be listed unseen
        return Reason.OK
