"""Downloads in the sync cycle: server time, trust list, policy, risk updates, verified before install."""

from datetime import UTC, datetime

import pytest
from conftest import COVERS, ID_KEY, append_samples, token_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.device.sync_client import SyncClient, backoff_delay, parse_retry_after
from edge.device.transport import Answer
from edge.lists.policy import CheckpointIdentity, default_policy, sign_policy
from edge.lists.risk_store import RiskStore
from edge.lists.version_floor import VersionFloor
from edge.passes.trust import TrustStore, build_trust_envelope
from edge.scan.clock import SystemClock
from sync.server.app import create_app
from sync.server.publish.risk import RiskPublisher
from sync.server.runner import ServerThread
from sync.server.settings import ServerSettings
from sync.server.storage import open_storage
from sync.wire.envelope import sign_envelope
from sync.wire.identifiers import holder_hash
from sync.wire.risk.types import RiskStatus


@pytest.fixture
def world(tmp_path, scanlog, device_key, server_x25519, publisher_key):
    data = tmp_path / "server"
    (data / "published").mkdir(parents=True)
    settings = ServerSettings(db_url=f"sqlite:///{data / 'db.sqlite'}", encryption_key=server_x25519,
                              publisher_key=publisher_key, data_dir=data)
    open_storage(settings.db_url, create=True).close()
    publisher = RiskPublisher(data / "risk", publisher_key, coverage=COVERS)
    installed: list[tuple[str, int]] = []
    with ServerThread(create_app(settings)) as srv:
        risk = RiskStore.open(tmp_path / "device-risk", [publisher_key.public_key()])
        clock = SystemClock(timesync_flag=tmp_path / "no-such-flag")
        client = SyncClient(srv.url, scanlog, device_key, checkpoint=CheckpointIdentity("cp-1", ("hn-zone-1",)),
                            floor=VersionFloor(tmp_path / "dev/list-versions.json"),
                            publisher_keys=[publisher_key.public_key()], clock=clock,
                            trust_path=tmp_path / "dev/trust.cpenv", policy_path=tmp_path / "dev/policy.cpenv",
                            risk_store=risk, on_installed=lambda k, v: installed.append((k, v)), timeout_s=5)
        client.enroll(token_for(settings.db_url))
        yield {"data": data, "client": client, "publisher": publisher, "risk": risk, "clock": clock,
               "installed": installed, "tmp": tmp_path}


def test_full_cycle_installs_verified_lists_and_time(world, publisher_key, scanlog):
    data, client = world["data"], world["client"]
    assert not world["clock"].trusted()
    (data / "published/trust.cpenv").write_bytes(build_trust_envelope([], publisher_key, version=4))
    (data / "published/policy.cpenv").write_bytes(sign_policy(default_policy(version=2), publisher_key))
    key = holder_hash("001099000123", ID_KEY)
    world["publisher"].publish([(key, RiskStatus.F1, None)])
    append_samples(scanlog, 3)
    result = client.run_once()
    assert result.pushed == 3 and result.errors == []
    assert sorted(result.installed) == [("policy", 2), ("risk", 1), ("trust", 4)]
    assert sorted(world["installed"]) == sorted(result.installed)
    assert world["clock"].trusted()  # signed server time accepted
    trust_blob = (world["tmp"] / "dev/trust.cpenv").read_bytes()
    installed_trust = TrustStore.from_envelope(trust_blob, [publisher_key.public_key()])
    assert installed_trust.version == 4
    assert world["risk"].lookup(key).status is RiskStatus.F1
    # a second cycle installs nothing new; a newer risk version arrives as a delta
    assert client.run_once().installed == []
    world["publisher"].publish([(key, None, None)])
    assert client.run_once().installed == [("risk", 2)] and world["risk"].lookup(key) is None
    assert client.unreachable_for() < 5


def test_forged_or_older_lists_are_not_installed(world, publisher_key):
    data, client, tmp = world["data"], world["client"], world["tmp"]
    (data / "published/policy.cpenv").write_bytes(sign_policy(default_policy(version=3), publisher_key))
    client.run_once()
    good = (tmp / "dev/policy.cpenv").read_bytes()
    forged = Ed25519PrivateKey.generate()
    (data / "published/policy.cpenv").write_bytes(sign_policy(default_policy(version=9), forged))
    (data / "published/trust.cpenv").write_bytes(sign_envelope("trust", 5, b"not a trust list", publisher_key))
    result = client.run_once()
    assert result.installed == [] and len(result.errors) == 2
    assert (tmp / "dev/policy.cpenv").read_bytes() == good and not (tmp / "dev/trust.cpenv").exists()


def test_replayed_time_envelope_rejected(world, publisher_key, monkeypatch):
    client = world["client"]
    old = sign_envelope("time", 1, b'{"now": "2020-01-01T00:00:00+00:00", "nonce": "abc"}', publisher_key)

    monkeypatch.setattr(client, "_request", lambda *a, **k: Answer(200, {}, old))
    with pytest.raises(Exception, match="another request"):
        client._download_time()
    assert not world["clock"].trusted()


def test_retry_after_and_full_jitter():
    assert parse_retry_after("7") == 7.0
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now) == 30.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert backoff_delay(3, base=1, cap=300, retry_after=12) == 12
    assert backoff_delay(3, base=1, cap=300, retry_after=1e6) == 300
    assert backoff_delay(3, base=1, cap=300, rng=lambda: 1.0) == 8
    assert backoff_delay(20, base=1, cap=300, rng=lambda: 1.0) == 300
    assert backoff_delay(20, base=1, cap=300, rng=lambda: 0.0) == 0
