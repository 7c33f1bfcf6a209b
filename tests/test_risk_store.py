"""Device risk store: updates, rejection of bad updates, atomicity, expiry and concurrency."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import COVERS, ID_KEY
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edge.lists.risk_store as store_module
from edge.lists.risk_store import RiskStore
from sync.server.publish.risk import RiskPublisher
from sync.wire.identifiers import holder_hash
from sync.wire.risk.digest import SetDigest
from sync.wire.risk.records import RECORD, decode_until
from sync.wire.risk.types import RiskEntry, RiskStatus, RiskUpdateError
from sync.wire.risk.updates import DELTA, encode_update

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()


def keys(n: int, prefix: str = "id") -> list[bytes]:
    return [holder_hash(f"{prefix}{i}", ID_KEY) for i in range(n)]


@pytest.fixture
def publisher(tmp_path: Path) -> RiskPublisher:
    return RiskPublisher(tmp_path / "central", KEY, coverage=COVERS)


def open_store(path: Path) -> RiskStore:
    return RiskStore.open(path, [KEY.public_key()])


def sync(store: RiskStore, publisher: RiskPublisher) -> None:
    for blob in publisher.updates_for(store.version):
        store.apply(blob)


def test_snapshot_then_deltas(tmp_path: Path, publisher: RiskPublisher) -> None:
    ids = keys(500)
    publisher.publish([(k, RiskStatus.F0, None) for k in ids], T0)
    store = open_store(tmp_path / "dev")
    assert store.version == 0 and store.needs_snapshot
    sync(store, publisher)
    assert store.version == 1 and not store.needs_snapshot
    assert store.published_at == T0
    assert store.lookup(ids[7], T0.date()) == RiskEntry(RiskStatus.F0)
    assert store.lookup(holder_hash("nobody", ID_KEY), T0.date()) is None
    publisher.publish([(ids[7], None, None), (ids[8], RiskStatus.F1, date(2024, 4, 1))], T0 + timedelta(hours=1))
    updates = publisher.updates_for(1)
    assert len(updates) == 1
    assert store.apply(updates[0]) == 2
    assert store.lookup(ids[7], T0.date()) is None
    assert store.lookup(ids[8], T0.date()) == RiskEntry(RiskStatus.F1, date(2024, 4, 1))
    assert store.status().entries == 499
    reopened = open_store(tmp_path / "dev")
    assert reopened.version == 2 and reopened.lookup(ids[8], T0.date()) is not None
    assert reopened.status().bytes_on_disk > 499 * 19


def test_expired_entries_count_as_absent_and_drop_out(tmp_path: Path, publisher: RiskPublisher) -> None:
    ids = keys(3)
    publisher.publish([(ids[0], RiskStatus.F1, date(2024, 3, 5)), (ids[1], RiskStatus.F0, None)], T0)
    store = open_store(tmp_path / "dev")
    sync(store, publisher)
    assert store.lookup(ids[0], date(2024, 3, 5)) is not None
    assert store.lookup(ids[0], date(2024, 3, 6)) is None
    assert store.status().entries == 2
    publisher.publish([], datetime(2024, 3, 6, tzinfo=UTC))
    sync(store, publisher)
    assert store.status().entries == 1 and publisher.entries == 1
    assert store.lookup(ids[0], date(2024, 3, 1)) is None


def test_forged_replayed_and_truncated_updates_keep_old_list(tmp_path: Path, publisher: RiskPublisher) -> None:
    ids = keys(50)
    publisher.publish([(k, RiskStatus.F0, None) for k in ids], T0)
    store = open_store(tmp_path / "dev")
    snapshot = publisher.updates_for(0)[0]
    store.apply(snapshot)
    forger = RiskPublisher(tmp_path / "forger", Ed25519PrivateKey.generate(), coverage=COVERS)
    forger.publish([(ids[0], None, None)], T0)
    forger.publish([(ids[1], None, None)], T0)
    with pytest.raises(RiskUpdateError, match="pinned"):
        store.apply(forger.updates_for(1)[0])
    with pytest.raises(RiskUpdateError, match="replayed or older"):
        store.apply(snapshot)
    publisher.publish([(ids[2], None, None)], T0)
    delta = publisher.updates_for(1)[0]
    with pytest.raises(RiskUpdateError):
        store.apply(delta[: len(delta) // 2])
    store.apply(delta)
    with pytest.raises(RiskUpdateError, match="replayed or older"):
        store.apply(delta)
    with pytest.raises(RiskUpdateError, match="replayed or older"):
        store.apply(snapshot)
    assert not store.needs_snapshot
    assert store.version == 2
    assert store.lookup(ids[0], T0.date()) is not None and store.lookup(ids[2], T0.date()) is None


def test_chain_gap_asks_for_snapshot(tmp_path: Path, publisher: RiskPublisher) -> None:
    ids = keys(20)
    publisher.publish([(k, RiskStatus.F0, None) for k in ids], T0)
    store = open_store(tmp_path / "dev")
    sync(store, publisher)
    publisher.publish([(ids[0], None, None)], T0)
    publisher.publish([(ids[1], None, None)], T0)
    third = publisher.updates_for(2)[0]
    with pytest.raises(RiskUpdateError, match="chain mismatch"):
        store.apply(third)
    assert store.needs_snapshot and store.version == 1
    assert store.lookup(ids[0], T0.date()) is not None
    assert open_store(tmp_path / "dev").needs_snapshot, "the flag survives a restart"
    store.apply(publisher.snapshot())
    assert store.version == 3 and not store.needs_snapshot
    assert store.lookup(ids[1], T0.date()) is None


def test_digest_mismatch_sets_needs_snapshot(tmp_path: Path, publisher: RiskPublisher) -> None:
    ids = keys(20)
    publisher.publish([(k, RiskStatus.F0, None) for k in ids], T0)
    store = open_store(tmp_path / "dev")
    sync(store, publisher)
    change = np.zeros(1, RECORD)
    change["key"] = np.frombuffer(holder_hash("new", ID_KEY), "V16")
    change["status"] = RiskStatus.F1
    wrong = SetDigest.of(change).bytes  # the digest of a set without the 20 entries
    with pytest.raises(RiskUpdateError, match="digest"):
        store.apply(encode_update(DELTA, 1, 2, wrong, change, KEY, T0, coverage=COVERS))
    assert store.needs_snapshot and store.version == 1
    assert store.lookup(holder_hash("new", ID_KEY), T0.date()) is None
    assert store.lookup(ids[3], T0.date()) is not None
    # the same version as a snapshot is accepted now that a snapshot is needed
    store.apply(publisher.snapshot())
    assert not store.needs_snapshot


def test_failure_mid_apply_leaves_old_list(tmp_path: Path, publisher: RiskPublisher,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    ids = keys(30)
    publisher.publish([(k, RiskStatus.F0, None) for k in ids], T0)
    store = open_store(tmp_path / "dev")
    sync(store, publisher)
    publisher.publish([(ids[0], None, None)], T0)
    delta = publisher.updates_for(1)[0]
    real_write = store_module.write_segment

    def half_write(path: Path, recs: np.ndarray) -> str:
        real_write(path, recs)
        with open(path, "r+b") as fh:
            fh.truncate(10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module, "write_segment", half_write)
    with pytest.raises(RiskUpdateError, match="could not write"):
        store.apply(delta)
    monkeypatch.undo()

    def failing_manifest(self: RiskStore, state: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(RiskStore, "_write_manifest", failing_manifest)
    with pytest.raises(RiskUpdateError, match="could not write"):
        store.apply(delta)
    monkeypatch.undo()
    assert store.version == 1 and store.lookup(ids[0], T0.date()) is not None
    files = sorted(p.name for p in (tmp_path / "dev").iterdir())
    assert len([f for f in files if f.startswith("seg-")]) == 1, files
    reopened = open_store(tmp_path / "dev")
    assert reopened.version == 1 and reopened.lookup(ids[0], T0.date()) is not None
    reopened.apply(delta)
    assert reopened.lookup(ids[0], T0.date()) is None


def test_damaged_segment_is_not_trusted(tmp_path: Path, publisher: RiskPublisher) -> None:
    publisher.publish([(k, RiskStatus.F0, None) for k in keys(40)], T0)
    store = open_store(tmp_path / "dev")
    sync(store, publisher)
    segment = next((tmp_path / "dev").glob("seg-*.bin"))
    raw = bytearray(segment.read_bytes())
    raw[-5] ^= 0xFF
    segment.write_bytes(bytes(raw))
    (tmp_path / "dev" / "seg-9999999999-stray.bin").write_bytes(b"left by a crash")
    reopened = open_store(tmp_path / "dev")
    assert reopened.version == 0 and reopened.needs_snapshot and "content hash" in reopened.refused
    reopened.apply(publisher.snapshot())
    assert reopened.status().entries == 40 and reopened.refused is None
    assert not (tmp_path / "dev" / "seg-9999999999-stray.bin").exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=10_000), flips=st.lists(st.integers(0, 10_000), max_size=4),
       use_delta=st.booleans())
def test_garbled_blob_only_raises_risk_update_error(tmp_path_factory: pytest.TempPathFactory, cut: int,
                                                   flips: list[int], use_delta: bool) -> None:
    root = tmp_path_factory.mktemp("garble")
    publisher = RiskPublisher(root / "central", KEY, coverage=COVERS)
    ids = keys(30)
    publisher.publish([(k, RiskStatus.F0, None) for k in ids], T0)
    store = open_store(root / "dev")
    sync(store, publisher)
    publisher.publish([(ids[0], None, None), (holder_hash("n", ID_KEY), RiskStatus.F1, None)], T0)
    blob = bytearray(publisher.updates_for(1)[0] if use_delta else publisher.snapshot())
    for flip in flips:
        blob[flip % len(blob)] ^= 0x5A
    blob = bytes(blob[: min(cut, len(blob))]) if cut < len(blob) else bytes(blob)
    try:
        store.apply(blob)
    except RiskUpdateError:
        assert store.version == 1 and store.lookup(ids[0], T0.date()) is not None
    else:
        assert store.version == 2 and store.lookup(ids[0], T0.date()) is None


changes_strategy = st.lists(
    st.lists(st.tuples(st.integers(0, 40), st.sampled_from([None, *RiskStatus]),
                       st.one_of(st.none(), st.integers(0, 20))), max_size=25),
    min_size=1, max_size=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=changes_strategy)
def test_device_set_equals_publisher_set(tmp_path_factory: pytest.TempPathFactory,
                                         monkeypatch: pytest.MonkeyPatch, batches: list) -> None:
    monkeypatch.setattr(store_module, "L0_MIN", 3)  # force overlays to fold and compact
    root = tmp_path_factory.mktemp("prop")
    publisher = RiskPublisher(root / "central", KEY, coverage=COVERS)
    universe = keys(41, "u")
    publisher.publish([(universe[0], RiskStatus.F0, None)], T0)
    store = open_store(root / "dev")
    sync(store, publisher)
    for day, batch in enumerate(batches, 1):
        now = T0 + timedelta(days=day)
        publisher.publish([(universe[i], status, None if status is None or d is None else
                            now.date() + timedelta(days=d - 3)) for i, status, d in batch], now)
        updates = publisher.updates_for(store.version)
        assert len(updates) == 1
        store.apply(updates[0])
        assert store.version == publisher.latest_version
        assert store.status().entries == publisher.entries
        expected = {bytes(r["key"]): (int(r["status"]), int(r["until"])) for r in publisher.records()}
        for key in universe:
            got = store.lookup(key, date(2020, 1, 2))
            want = expected.get(key)
            assert (got is None) == (want is None)
            if got is not None:
                assert int(got.status) == want[0]
                assert got.until == decode_until(want[1])
    assert len(list((root / "dev").glob("seg-*.bin"))) == store.status().segments <= 3


def test_lookups_stay_consistent_while_updates_swap(tmp_path: Path, publisher: RiskPublisher) -> None:
    ids = keys(2000)
    publisher.publish([(k, RiskStatus.F0, None) for k in ids], T0)
    store = open_store(tmp_path / "dev")
    sync(store, publisher)
    probe = ids[:20]
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                for key in probe:
                    entry = store.lookup(key, T0.date())
                    assert entry is None or entry.status in (RiskStatus.F0, RiskStatus.F1)
                assert store.lookup(ids[-1], T0.date()) == RiskEntry(RiskStatus.F0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(15):
        status = None if i % 2 else RiskStatus.F1
        publisher.publish([(k, status, None) for k in probe], T0)
        sync(store, publisher)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    assert store.version == 16
    assert store.lookup(probe[0], T0.date()) == RiskEntry(RiskStatus.F1)  # the last publish (i=14)


def test_compact_folds_overlays_and_keeps_answers(tmp_path: Path, publisher: RiskPublisher) -> None:
    ids = keys(100)
    publisher.publish([(k, RiskStatus.F0, None) for k in ids], T0)
    store = open_store(tmp_path / "dev")
    sync(store, publisher)
    publisher.publish([(ids[0], None, None), (holder_hash("late", ID_KEY), RiskStatus.REVOKED, None)], T0)
    sync(store, publisher)
    assert store.status().segments == 2
    store.compact()
    status = store.status()
    assert status.segments == 1 and status.entries == 100 and status.version == 2
    assert store.lookup(ids[0], T0.date()) is None
    assert store.lookup(holder_hash("late", ID_KEY), T0.date()) == RiskEntry(RiskStatus.REVOKED)
    assert len(list((tmp_path / "dev").glob("seg-*.bin"))) == 1
    reopened = open_store(tmp_path / "dev")
    assert reopened.status() == status
    publisher.publish([(ids[1], None, None)], T0)
    sync(reopened, publisher)
    assert reopened.lookup(ids[1], T0.date()) is None


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), base_n=st.integers(0, 300), over_n=st.integers(0, 120))
def test_streamed_served_hash_equals_the_hash_of_the_merged_set(seed: int, base_n: int, over_n: int) -> None:
    """The open-time check hashes base + overlays without building the merged set: same answer."""
    from edge.lists.risk_store import _served_hash
    from sync.wire.risk.digest import content_hash
    from sync.wire.risk.records import REMOVED, merge, sort_unique

    rng = np.random.default_rng(seed)
    base = np.zeros(base_n, RECORD)
    base["key"] = np.frombuffer(rng.bytes(16 * base_n), "V16")
    base["status"] = rng.integers(1, 4, base_n)
    base = sort_unique(base)
    newer = np.zeros(over_n, RECORD)
    reuse = rng.random(over_n) < 0.5
    keys = [bytes(base["key"][rng.integers(0, len(base))]) if r and len(base) else rng.bytes(16) for r in reuse]
    newer["key"] = np.frombuffer(b"".join(keys), "V16") if keys else newer["key"]
    newer["status"] = rng.integers(0, 4, over_n)  # 0 = removal
    newer = sort_unique(newer)
    merged = merge(base, newer)
    merged = merged[merged["status"] != REMOVED]
    assert _served_hash(base, newer) == (len(merged), content_hash(merged))
