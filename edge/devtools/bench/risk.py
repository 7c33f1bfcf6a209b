"""``checkpoint bench risk``: build a risk list of N entries, look keys up, apply 10k-change deltas.

Figures: build and snapshot-apply time, bytes per entry on disk, warm lookup µs (hit and miss,
median and p99), per-delta apply time and bytes written (from /proc/self/io ``write_bytes``,
which counts what reached the block layer, and from the sizes of the files written), the cost
of a full compaction and the write volume per delta amortised over a compaction cycle, and the
snapshot and delta sizes on the wire, and the time to open the store and check it against its
signed head (signature, segment order and index, digest of the served set), as every start does:
just after the snapshot (one segment) and after the deltas (base plus overlays).
"""

from __future__ import annotations

import gc
import os
import random
import shutil
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import edge.lists.risk_store as store_module
from edge.devtools.bench.report import median, percentile
from edge.devtools.bench.risk_publish import run_publish
from edge.lists.risk_store import RiskStore
from sync.server.publish.risk import RiskPublisher
from sync.wire.risk.records import RECORD, encode_until, sort_unique
from sync.wire.risk.types import Coverage

DELTA_CHANGES = 10_000
T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def _write_bytes() -> int:
    """Bytes this process has caused to be sent to storage (0 where /proc is unavailable)."""
    try:
        with open("/proc/self/io", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _random_records(rng: np.random.Generator, n: int, today: date) -> np.ndarray:
    recs = np.zeros(n, RECORD)
    recs["key"] = np.frombuffer(rng.bytes(16 * n), "V16")
    recs["status"] = rng.integers(1, 4, n, dtype=np.uint8)
    dated = rng.random(n) < 0.3
    first = encode_until(today + timedelta(days=1))
    recs["until"][dated] = rng.integers(first, first + 60, int(dated.sum()), dtype=np.uint16)
    return sort_unique(recs)


def _delta_changes(rng: np.random.Generator, current: np.ndarray, today: date) -> np.ndarray:
    """10k changes: 50 % new entries, 30 % removals, 20 % status changes of existing ones."""
    adds = _random_records(rng, DELTA_CHANGES // 2, today)
    picks = current[rng.choice(len(current), DELTA_CHANGES // 2, replace=False)].copy()
    removals = picks[: int(DELTA_CHANGES * 0.3)]
    removals["status"] = 0
    removals["until"] = 0
    changed = picks[int(DELTA_CHANGES * 0.3):]
    changed["status"] = changed["status"] % 3 + 1
    return sort_unique(np.concatenate([adds, removals, changed]))


def _lookups(store: RiskStore, keys: list[bytes], today: date) -> list[float]:
    timings = []
    clock = time.perf_counter_ns
    lookup = store.lookup
    for key in keys:
        start = clock()
        lookup(key, today)
        timings.append((clock() - start) / 1000)
    return timings


def _open_check_s(directory: Path, key: Ed25519PrivateKey, runs: int) -> list[float]:
    """Seconds to open the store and check it against its signed head (as at every start)."""
    times = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        reopened = RiskStore.open(directory, [key.public_key()])
        times.append(time.perf_counter() - start)
        if reopened.refused is not None:
            raise RuntimeError(f"the bench's own store was refused: {reopened.refused}")
        del reopened
    return times


def run(quick: bool = False, entries: int | None = None, deltas: int | None = None,
        publish_rows: int | None = None) -> dict[str, object]:
    """Run the benchmark in a temporary directory and return its figures.

    With ``publish_rows``, only the publisher's figures for an input of that many rows.
    """
    if publish_rows is not None:
        return run_publish(publish_rows)
    n = entries or (100_000 if quick else 10_000_000)
    deltas = deltas or (4 if quick else 8)
    samples = 5_000 if quick else 50_000
    rng = np.random.default_rng(6)
    key = Ed25519PrivateKey.generate()
    root = Path(tempfile.mkdtemp(prefix="bench-risk-"))
    today = T0.date()
    figures: dict[str, object] = {"entries": n}
    try:
        publisher = RiskPublisher(root / "central", key, coverage=Coverage.parse(["CP1:*", "HC1:*"]))
        start = time.perf_counter()
        publisher.publish(_random_records(rng, n, today), T0)
        snapshot = publisher.snapshot()
        figures["build_s"] = round(time.perf_counter() - start, 3)
        figures["snapshot_wire_bytes"] = len(snapshot)
        store = RiskStore.open(root / "device", [key.public_key()])
        start = time.perf_counter()
        store.apply(snapshot)
        figures["snapshot_apply_s"] = round(time.perf_counter() - start, 3)
        del snapshot
        gc.collect()
        status = store.status()
        figures["bytes_per_entry"] = round(status.bytes_on_disk / max(status.entries, 1), 3)
        opens = _open_check_s(root / "device", key, 3 if quick else 5)
        figures["open_check_median_s"] = round(median(opens), 3)
        figures["open_check_max_s"] = round(max(opens), 3)

        current = publisher.records()
        hits = [bytes(current["key"][i]) for i in rng.integers(0, len(current), samples)]
        misses = [os.urandom(16) for _ in range(samples)]
        hit_us = _lookups(store, hits, today)
        miss_us = _lookups(store, misses, today)
        both = hit_us + miss_us
        figures.update({
            "lookup_hit_median_us": round(median(hit_us), 2), "lookup_hit_p99_us": round(percentile(hit_us, 99), 2),
            "lookup_miss_median_us": round(median(miss_us), 2),
            "lookup_miss_p99_us": round(percentile(miss_us, 99), 2),
            "lookup_p99_us": round(percentile(both, 99), 2),
        })

        apply_s, written, file_bytes, wire = [], [], [], []
        for i in range(deltas):
            when = T0 + timedelta(hours=i + 1)
            publisher.publish(_delta_changes(rng, publisher.records(), today), when)
            (blob,) = publisher.updates_for(store.version)
            wire.append(len(blob))
            before_files = {p.name for p in store.directory.iterdir()}
            before = _write_bytes()
            start = time.perf_counter()
            store.apply(blob)
            apply_s.append(time.perf_counter() - start)
            written.append(_write_bytes() - before)
            file_bytes.append(sum(p.stat().st_size for p in store.directory.iterdir()
                                  if p.name not in before_files or p.name == "manifest.json"))
        figures.update({
            "delta_changes": DELTA_CHANGES, "delta_wire_bytes": int(median(wire)),
            "delta_apply_s": round(median(apply_s), 4), "delta_apply_max_s": round(max(apply_s), 4),
            "delta_written_bytes": int(median(written)), "delta_written_max_bytes": max(written),
            "delta_file_bytes": int(median(file_bytes)),
            "segments_after_deltas": store.status().segments,
        })
        figures["open_check_after_deltas_median_s"] = round(median(_open_check_s(root / "device", key, 3)), 3)
        hit_after = _lookups(store, random.Random(1).sample(hits, min(len(hits), 5_000)), today)
        miss_after = _lookups(store, misses[:5_000], today)
        figures["lookup_p99_after_deltas_us"] = round(percentile(hit_after + miss_after, 99), 2)

        before = _write_bytes()
        start = time.perf_counter()
        store.compact()
        figures["compaction_s"] = round(time.perf_counter() - start, 3)
        compaction_bytes = _write_bytes() - before
        figures["compaction_written_bytes"] = compaction_bytes
        base_n = store.status().entries
        l0_max = max(store_module.L0_MIN, base_n // store_module.L0_RATIO)
        l1_max = max(4 * l0_max, base_n // store_module.L1_RATIO)
        deltas_per_cycle = max(1, l1_max // DELTA_CHANGES)
        figures["delta_amortised_written_bytes"] = int(median(written) + compaction_bytes / deltas_per_cycle)
        return figures
    finally:
        shutil.rmtree(root, ignore_errors=True)
