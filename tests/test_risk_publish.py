"""Publisher: versions, effective deltas, expiry, update chains, wire sizes and wire validation."""

from __future__ import annotations

import zlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import cbor2
import numpy as np
import pytest
from conftest import COVERS, ID_KEY
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync.server.publish.risk import RiskPublisher, RiskPublishError
from sync.wire.envelope import sign_envelope
from sync.wire.identifiers import holder_hash
from sync.wire.risk.digest import SetDigest
from sync.wire.risk.records import RECORD, sort_unique
from sync.wire.risk.types import RiskStatus, RiskUpdateError
from sync.wire.risk.updates import DELTA, KIND, decode_update, encode_update, sign_head

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()


def ids(n: int) -> list[bytes]:
    return [holder_hash(f"p{i}", ID_KEY) for i in range(n)]


def test_versions_increase_and_digest_matches_set(tmp_path: Path) -> None:
    pub = RiskPublisher(tmp_path, KEY, coverage=COVERS)
    assert pub.latest_version == 0 and pub.updates_for(0) == []
    with pytest.raises(RiskPublishError):
        pub.snapshot()
    assert pub.publish([(k, RiskStatus.F0, None) for k in ids(10)], T0) == 1
    assert pub.publish([], T0 + timedelta(hours=1)) == 2
    update = decode_update(pub.snapshot(), [KEY.public_key()])
    assert update.version == 2 and update.published_at == T0 + timedelta(hours=1)
    assert update.digest == SetDigest.of(pub.records()).bytes
    reopened = RiskPublisher(tmp_path, KEY, coverage=COVERS)
    assert reopened.latest_version == 2 and reopened.entries == 10
    with pytest.raises(RiskPublishError, match="before the last"):
        reopened.publish([], T0)


def test_delta_holds_only_effective_changes(tmp_path: Path) -> None:
    pub = RiskPublisher(tmp_path, KEY, coverage=COVERS)
    keys = ids(5)
    pub.publish([(k, RiskStatus.F0, None) for k in keys[:3]], T0)
    pub.publish([(keys[0], RiskStatus.F0, None),           # unchanged
                 (keys[1], RiskStatus.F1, None),           # changed
                 (keys[2], None, None),                    # removed
                 (keys[3], None, None),                    # removal of an absent key
                 (keys[4], RiskStatus.F0, None), (keys[4], RiskStatus.REVOKED, date(2024, 5, 1))], T0)
    delta = decode_update(pub.updates_for(1)[0], [KEY.public_key()])
    assert delta.base_version == 1 and delta.version == 2
    got = {bytes(r["key"]): (int(r["status"]), int(r["until"])) for r in delta.records}
    assert set(got) == {keys[1], keys[2], keys[4]}
    assert got[keys[2]] == (0, 0) and got[keys[4]][0] == RiskStatus.REVOKED
    assert pub.entries == 3


def test_expired_entries_are_removed_on_the_next_publication(tmp_path: Path) -> None:
    pub = RiskPublisher(tmp_path, KEY, coverage=COVERS)
    keys = ids(3)
    pub.publish([(keys[0], RiskStatus.F1, date(2024, 3, 2)), (keys[1], RiskStatus.F1, date(2024, 3, 10))], T0)
    pub.publish([(keys[2], RiskStatus.F0, date(2024, 3, 1))], datetime(2024, 3, 3, tzinfo=UTC))
    remaining = {bytes(k) for k in pub.records()["key"]}
    assert remaining == {keys[1]}, "lapsed entry dropped, already-lapsed new entry never added"
    delta = decode_update(pub.updates_for(1)[0], [KEY.public_key()])
    assert [bytes(r["key"]) for r in delta.records if r["status"] == 0] == [keys[0]]


def test_updates_for_chain_and_snapshot_fallbacks(tmp_path: Path) -> None:
    pub = RiskPublisher(tmp_path, KEY, max_chain=3, coverage=COVERS)
    keys = ids(200)
    pub.publish([(k, RiskStatus.F0, None) for k in keys], T0)
    for i in range(5):
        pub.publish([(keys[i], None, None)], T0)
    opened = [decode_update(b, [KEY.public_key()]) for b in pub.updates_for(4)]
    assert [(u.base_version, u.version) for u in opened] == [(4, 5), (5, 6)]
    assert pub.updates_for(6) == []
    for behind in (0, 1, 2, 99):
        (only,) = pub.updates_for(behind)
        assert decode_update(only, [KEY.public_key()]).is_snapshot


def test_bad_changes_are_refused_without_a_new_version(tmp_path: Path) -> None:
    pub = RiskPublisher(tmp_path, KEY, coverage=COVERS)
    with pytest.raises(RiskPublishError, match="change #2"):
        pub.publish([(holder_hash("a", ID_KEY), RiskStatus.F0, None), (b"short", RiskStatus.F0, None)], T0)
    with pytest.raises(RiskPublishError, match="outside"):
        pub.publish([(holder_hash("a", ID_KEY), RiskStatus.F0, date(2019, 1, 1))], T0)
    assert pub.latest_version == 0


def test_ten_thousand_change_delta_fits_wire_budget(tmp_path: Path) -> None:
    pub = RiskPublisher(tmp_path, KEY, coverage=COVERS)
    rng = np.random.default_rng(1)
    base = np.zeros(30_000, RECORD)
    base["key"] = np.frombuffer(rng.bytes(16 * len(base)), "V16")
    base["status"] = 1
    pub.publish(sort_unique(base), T0)
    changes = [(rng.bytes(16), RiskStatus.F1, date(2024, 4, 1)) for _ in range(10_000)]
    pub.publish(changes, T0)
    (delta,) = pub.updates_for(1)
    assert len(delta) <= 200_000
    assert len(decode_update(delta, [KEY.public_key()]).records) == 10_000


def _signed(payload: dict, version: int = 2) -> bytes:
    return sign_envelope(KIND, version, cbor2.dumps(payload), KEY, issued_at=T0)


def _payload(**overrides: object) -> dict:
    body = {"type": DELTA, "from": 1, "to": 2, "n": 2, "digest": bytes(32),
            "keys": bytes(range(32)), "meta": zlib.compress(b"\x01\x01\x00\x00\x00\x00"),
            "head": sign_head(2, T0, bytes(32), 2, COVERS, bytes(32), KEY)}
    body.update(overrides)
    return body


@pytest.mark.parametrize(("overrides", "message"), [
    ({"keys": bytes(range(16)) * 2}, "sorted and unique"),
    ({"keys": bytes(range(16, 32)) + bytes(range(16))}, "sorted and unique"),
    ({"n": 3}, "truncated"),
    ({"meta": b"not zlib"}, "corrupt"),
    ({"type": "patch"}, "unknown risk update type"),
    ({"to": 3}, "does not match envelope"),
    ({"from": 2}, "below the new version"),
    ({"digest": b"x"}, "truncated"),
    ({"n": "2"}, "not int"),
])
def test_wire_rejects_malformed_payloads(overrides: dict, message: str) -> None:
    with pytest.raises(RiskUpdateError, match=message):
        decode_update(_signed(_payload(**overrides)), [KEY.public_key()])


def test_wire_rejects_bad_status_and_dated_removal() -> None:
    with pytest.raises(RiskUpdateError, match="unknown status"):
        decode_update(_signed(_payload(meta=zlib.compress(b"\x01\x07\x00\x00\x00\x00"))), [KEY.public_key()])
    with pytest.raises(RiskUpdateError, match="end date"):
        decode_update(_signed(_payload(meta=zlib.compress(b"\x00\x01\x05\x00\x00\x00"))), [KEY.public_key()])
    recs = np.zeros(1, RECORD)
    snapshot_with_removal = encode_update("snapshot", 0, 1, bytes(32), recs, KEY, T0, coverage=COVERS)
    with pytest.raises(RiskUpdateError, match="unknown status"):
        decode_update(snapshot_with_removal, [KEY.public_key()])
    assert decode_update(_signed(_payload()), [KEY.public_key()]).records["status"].tolist() == [1, 1]


def test_two_publisher_instances_share_one_history(tmp_path: Path) -> None:
    first, second = RiskPublisher(tmp_path, KEY, coverage=COVERS), RiskPublisher(tmp_path, KEY, coverage=COVERS)
    keys = ids(3)
    assert first.publish([(keys[0], RiskStatus.F0, None)], T0) == 1
    assert second.publish([(keys[1], RiskStatus.F1, None)], T0) == 2
    assert first.publish([(keys[2], RiskStatus.REVOKED, None)], T0) == 3
    assert {bytes(k) for k in RiskPublisher(tmp_path, KEY, coverage=COVERS).records()["key"]} == set(keys)
    chain = [decode_update(b, [KEY.public_key()]) for b in second.updates_for(1)]
    assert [u.version for u in chain] == [2, 3]
    assert not list(tmp_path.glob("*.tmp"))
