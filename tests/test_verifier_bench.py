"""The verify benchmark measures the full path: every timed call reaches the policy (no early reject)."""

from __future__ import annotations

import pytest

from edge.devtools.bench import verify as bench
from edge.verdict import Reason

pytestmark = pytest.mark.dgc

#: a reason only the policy step gives: the timed call went through decode, signature, schema,
#: value sets and risk list before it
POLICY_REASONS = {Reason.OK, Reason.INSUFFICIENT_VACCINATION, Reason.TEST_TOO_OLD, Reason.RECOVERY_NOT_VALID,
                  Reason.RISK_LIST_STALE}


@pytest.mark.parametrize("label", sorted(bench.VECTORS))
def test_timed_hc1_calls_reach_the_policy(label: str) -> None:
    verifier, text, _ = bench._hc1(bench.VECTORS[label])
    assert verifier.verify(text).reason in POLICY_REASONS
    assert bench._rate(verifier, text, 0.02, 1) > 0
    assert bench._bare_signature(verifier, text)() is None  # cryptography's verify returns None when valid


def test_timed_cp1_call_passes() -> None:
    verifier, text = bench._cp1()
    assert verifier.verify(text).reason == Reason.OK


def test_hostile_figures_come_from_a_real_run() -> None:
    """The worst-case figure is measured on inputs that reach every stage, and none escapes."""
    figures = bench._hostile(60)
    assert figures["hostile_inputs"] == 60 and figures["hostile_internal_errors"] == 0
    assert figures["hostile_worst_cpu_ms_per_input"] > 0 and figures["hostile_median_ms_per_input"] > 0
    assert figures["hostile_worst_wall_ms_per_input"] >= figures["hostile_median_ms_per_input"]
