"""The cached risk list: 16-byte identifier hashes -> F0 / F1 / revoked, signed and versioned."""

from edge.risk.types import RiskEntry, RiskLookup, RiskStatus

__all__ = ["RiskEntry", "RiskLookup", "RiskStatus"]
