"""Shared, generic fixtures: keys, a fresh scan log, a server on loopback."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edge.verdict import Decision, Reason, Verdict
from sync.wire.identifiers import IdentifierKey, holder_hash
from sync.wire.risk.types import Coverage

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
#: the identifier key of the tests' issuing authority and central server (never on a device)
ID_KEY = IdentifierKey.generate()
#: what the tests' risk lists cover: every CP1 and every EU DCC issuer
COVERS = Coverage.parse(["CP1:*", "HC1:*"])


@pytest.fixture(scope="session")
def server_x25519() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


@pytest.fixture(scope="session")
def publisher_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def device_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def sample_verdict(i: int) -> Verdict:
    """A varied but deterministic verdict for scan-log tests."""
    kinds = [(Decision.PASS, Reason.OK), (Decision.REFUSE, Reason.RISK_F1), (Decision.CHECK, Reason.NOT_A_PASS)]
    decision, reason = kinds[i % 3]
    hh = None if reason is Reason.NOT_A_PASS else holder_hash(f"0790{i:08d}", ID_KEY)
    return Verdict(decision=decision, reason=reason, format=None if hh is None else "CP1",
                   kind=None if hh is None else "resident", holder_hash=hh)


def append_samples(log, n: int, start: int = 0, at: datetime | None = None) -> list[int]:
    """Append ``n`` sample verdicts to a ScanLog (scanned at ``at``); return their sequence numbers."""
    at = at or datetime(2026, 3, 1, tzinfo=UTC)
    return [log.append(sample_verdict(i), wall_time=at, monotonic=float(i), clock_trusted=True,
                       policy_version=3, risk_version=12) for i in range(start, start + n)]


@pytest.fixture
def scanlog(tmp_path: Path, server_x25519):
    from edge.scan.scanlog import ScanLog
    log = ScanLog(tmp_path / "scanlog.sqlite", device_id="dev-1", boot_id="boot-a",
                  server_encryption_key=server_x25519.public_key())
    yield log
    log.close()


def require_dgc_testdata() -> None:
    """The public EU DCC vectors are needed: fail under CI (which promises them), skip elsewhere."""
    from edge.devtools.dgc_testdata import ENV, dgc_testdata_dir

    if (dgc_testdata_dir() / "common").is_dir():
        return
    message = f"EU DCC test vectors not found at {dgc_testdata_dir()} (set {ENV}; scripts/test.sh does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("dgc") is not None:
        require_dgc_testdata()


def _pg_available() -> bool:
    try:
        import psycopg
        with psycopg.connect(PG_DSN, connect_timeout=2):
            return True
    except Exception:
        return False


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path: Path) -> Iterator[str]:
    """A server database URL: a fresh SQLite file, or a unique PostgreSQL schema dropped afterwards."""
    from sync.server.storage import open_storage
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'server.sqlite'}"
        open_storage(url, create=True).close()  # what 'checkpoint server init' does
        yield url
        return
    if not _pg_available():
        if os.environ.get("CI"):  # CI promises PostgreSQL: a missing server is a failure, not a skip
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is not reachable (CI must test the production back-end)")
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    import psycopg
    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = f"{PG_DSN}?schema={schema}"
    open_storage(url, create=True).close()
    yield url
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def token_for(db_url: str, device_id: str = "dev-1", **kw) -> str:
    """A one-time enrollment token for ``device_id``, made as ``checkpoint provision`` makes it."""
    from sync.server.enrollment import issue_token
    from sync.server.storage import open_storage
    storage = open_storage(db_url)
    try:
        return issue_token(storage, device_id, **kw)
    finally:
        storage.close()
