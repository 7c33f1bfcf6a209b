"""The cached risk list: 16-byte identifier hashes -> F0 / F1 / revoked, signed and versioned.

``edge.risk.store.RiskStore`` is the device side (lookups, ``apply`` of signed updates),
``edge.risk.publish.RiskPublisher`` the central side (authoritative set, snapshots and deltas),
``edge.risk.wire`` the signed wire form and ``edge.risk.inputs`` the CSV/JSON publisher input.
Those modules need numpy and are imported explicitly; this package only exports the light types.
"""

from edge.risk.types import Change, RiskEntry, RiskLookup, RiskStatus, RiskUpdateError

__all__ = ["Change", "RiskEntry", "RiskLookup", "RiskStatus", "RiskUpdateError"]
