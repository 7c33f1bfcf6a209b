"""The format-neutral view of a pass, produced by every pass reader and consumed by policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class PassFormat(StrEnum):
    """Wire formats the appliance reads, named by their QR prefix."""

    CP1 = "CP1"
    HC1 = "HC1"


class PassKind(StrEnum):
    """What a pass entitles its holder to. EU DCCs are classed by their content."""

    RESIDENT = "resident"
    TRAVEL_PERMIT = "travel_permit"
    CROSS_PROVINCE_WORKER = "cross_province_worker"
    STUDENT = "student"
    GOODS_DRIVER = "goods_driver"
    OFFICIAL = "official"
    DCC_VACCINATION = "dcc_vaccination"
    DCC_TEST = "dcc_test"
    DCC_RECOVERY = "dcc_recovery"


@dataclass(frozen=True)
class Vaccination:
    """Vaccination facts: doses received of the doses the series needs, and the last dose date."""

    doses: int
    series_doses: int
    last_dose: date | None = None
    product: str | None = None


@dataclass(frozen=True)
class TestResult:
    """A test: when the sample was taken and whether it was negative."""

    __test__ = False  # not a pytest class

    taken_at: datetime
    negative: bool
    test_type: str | None = None


@dataclass(frozen=True)
class Recovery:
    """A recovery statement: first positive test and the window it is valid for."""

    first_positive: date | None
    valid_from: date | None
    valid_until: date | None


@dataclass(frozen=True)
class Credential:
    """A pass whose signature has been verified; everything policy needs and nothing more.

    ``risk_keys`` lists every 16-byte key to look up in the risk list (holder hash for CP1;
    the EU revocation hashes UCI / COUNTRYCODEUCI / SIGNATURE for HC1).
    """

    format: PassFormat
    kind: PassKind
    pass_id: str
    issuer: str
    kid: bytes
    holder_hash: bytes
    issued_at: datetime | None = None
    expires_at: datetime | None = None
    valid_from: datetime | None = None
    vaccination: Vaccination | None = None
    test: TestResult | None = None
    recovery: Recovery | None = None
    zones: tuple[str, ...] = ()
    risk_keys: tuple[bytes, ...] = field(default_factory=tuple)
