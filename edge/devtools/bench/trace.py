"""``checkpoint bench trace``: F1 trace latency on a PostgreSQL database of N synthetic scan records.

The bench makes its own database, brings it to the server's schema with the server's own
migrations and monthly partitions (``open_storage``), and loads the records with text COPY from a
generator, one day at a time in time order (as devices push them). The secondary indexes are
dropped for the load and built once after it from the definitions the migrations use (an index
kept up row by row in random key order made a 20M load take an hour), then ``VACUUM (ANALYZE)``
sets the visibility map the index-only trace scans need; the schema is then checked to be the
migrations' own, index for index. Holders follow a realistic mix:
commuters scanned at their home checkpoint morning and evening on working days, occasional
travellers drawn from a heavy-tailed population at popular checkpoints by a day-shaped clock, and
re-scans of the same person a minute or two later. Then it times ``sync.server.trace.trace`` (the
code the API and the CLI run) for many random holders over the last 14 days with ± the window,
prints the plans (which partitions and indexes serve each query) and the disk they take, and
extrapolates to 1,000,000,000 records. The database is dropped at the end.

How the figures scale to 1e9: disk grows with the records (bytes per record, measured, times
1e9). A trace's work does not: it is its visits times the scans of one checkpoint in ± the window,
plus one index descent per visit and partition read; a national fleet has more checkpoints, not
busier ones, and the scan-time bounds keep the partitions read to the months of the period. What
changes is memory: once the month's trace indexes outgrow RAM, each page a trace touches
(``trace_pages_per_trace_est``) may be a random read from disk.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from edge.devtools.bench.report import median, percentile

log = logging.getLogger(__name__)

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
#: share of the records that are commuters' (two scans per working day at their home checkpoint)
COMMUTER_SHARE = 0.45
#: share of the other scans that are followed by a re-scan of the same pass at the same device
RESCAN_SHARE = 0.04
#: occasional travellers: population per record of a day (a heavy tail: a few travel a lot)
OCCASIONAL_PEOPLE_PER_DAILY_RECORD = 3
MAX_TRAVEL = 50
#: local time (Viet Nam) is UTC+7: hour-of-day weights of occasional scans, local hours 0..23
LOCAL_OFFSET_H = 7
HOUR_WEIGHTS = np.array([1, 1, 1, 1, 2, 5, 9, 12, 11, 9, 8, 8, 8, 8, 9, 10, 12, 12, 10, 7, 5, 3, 2, 1], float)
DECISIONS = (("PASS", "ok", 0.93), ("CHECK", "repeat_pass", 0.02), ("CHECK", "not_a_pass", 0.02),
             ("REFUSE", "expired", 0.02), ("REFUSE", "risk_f1", 0.01))
TRACE_DAYS = 14
NATIONAL = 1_000_000_000
_HEX = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2")


@dataclass(frozen=True)
class Fleet:
    """The synthetic checkpoints: device counts and how busy each is."""

    devices: np.ndarray      # devices per checkpoint (1..3)
    first_device: np.ndarray  # index of the checkpoint's first device in the flat device list
    popularity: np.ndarray   # cumulative weights for drawing a checkpoint
    device_ids: list[str]

    @classmethod
    def make(cls, checkpoints: int, rng: np.random.Generator) -> Fleet:
        devices = 1 + (np.arange(checkpoints) % 3)
        first = np.concatenate([[0], np.cumsum(devices)[:-1]])
        weights = rng.lognormal(0.0, 1.0, checkpoints)
        ids = [f"TB-{c:05d}-{n}" for c in range(checkpoints) for n in range(1, int(devices[c]) + 1)]
        return cls(devices, first, np.cumsum(weights) / weights.sum(), ids)

    def registry_csv(self) -> str:
        rows = [f"TB-{c:05d},Trạm {c},Bench,{int(n)}" for c, n in enumerate(self.devices)]
        return "checkpoint_id,name,province,devices\n" + "\n".join(rows) + "\n"

    def pick(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.searchsorted(self.popularity, rng.random(n), side="right").clip(0, len(self.devices) - 1)

    def device_of(self, rng: np.random.Generator, checkpoint: np.ndarray) -> np.ndarray:
        return self.first_device[checkpoint] + (rng.random(len(checkpoint)) * self.devices[checkpoint]).astype(int)


@dataclass(frozen=True)
class Population:
    """Holders: commuters (with a home checkpoint) first, then occasional travellers."""

    values: np.ndarray        # (people, 16) uint8 holder values as the server stores them (keyed)
    commuters: int
    commuter_home: np.ndarray
    occasional_cdf: np.ndarray

    @classmethod
    def make(cls, records: int, days: int, fleet: Fleet, rng: np.random.Generator) -> Population:
        working_days = sum(1 for d in range(days) if d % 7 < 5)
        commuters = max(1, round(COMMUTER_SHARE * records / (2 * 0.9 * max(1, working_days))))
        occasional = max(10, OCCASIONAL_PEOPLE_PER_DAILY_RECORD * records // max(1, days))
        # how often each one travels: heavy-tailed, but nobody more than MAX_TRAVEL times the average
        weights = rng.lognormal(0.0, 1.2, occasional).clip(max=MAX_TRAVEL * np.exp(1.2**2 / 2))
        return cls(rng.integers(0, 256, (commuters + occasional, 16), dtype=np.uint8), commuters,
                   fleet.pick(rng, commuters), np.cumsum(weights) / weights.sum())

    def occasional(self, rng: np.random.Generator, n: int) -> np.ndarray:
        drawn = np.searchsorted(self.occasional_cdf, rng.random(n), side="right").clip(0, len(self.occasional_cdf) - 1)
        return self.commuters + drawn


def _hex_rows(values: np.ndarray) -> list[str]:
    """Hex text of each row of a uint8 matrix (vectorised: one lookup, one decode)."""
    width = values.shape[1] * 2
    flat = _HEX[values].tobytes().decode("ascii")
    return [flat[i:i + width] for i in range(0, len(flat), width)]


def day_records(day: int, start: datetime, per_day: int, fleet: Fleet, people: Population,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One day's scans sorted by time: (microseconds since ``start``, device index, holder index, decision index)."""
    day_us = 86_400 * 10**6
    base = day * day_us
    parts_t, parts_c, parts_h = [], [], []
    if (start + timedelta(days=day)).weekday() < 5:  # working day: commuters out in the morning, back at night
        going = np.flatnonzero(rng.random(people.commuters) < 0.9)
        for local_h, spread_min in ((7.5, 25), (17.5, 40)):
            at = (local_h - LOCAL_OFFSET_H) % 24 * 3600 + rng.normal(0, spread_min * 60, len(going))
            parts_t.append((at.clip(0, 86_399) * 10**6).astype(np.int64))
            parts_c.append(people.commuter_home[going])
            parts_h.append(going)
    taken = sum(len(t) for t in parts_t)
    others = max(0, per_day - taken)
    fresh = int(others / (1 + RESCAN_SHARE))
    hours = rng.choice(24, fresh, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    local_s = hours * 3600 + rng.random(fresh) * 3600
    parts_t.append((((local_s - LOCAL_OFFSET_H * 3600) % 86_400) * 10**6).astype(np.int64))
    parts_c.append(fleet.pick(rng, fresh))
    parts_h.append(people.occasional(rng, fresh))
    t, checkpoint, holder = (np.concatenate(p) for p in (parts_t, parts_c, parts_h))
    device = fleet.device_of(rng, checkpoint)
    again = rng.choice(len(t), others - fresh, replace=False) if others > fresh else np.zeros(0, int)
    t = np.concatenate([t, (t[again] + rng.integers(20, 180, len(again)) * 10**6).clip(0, day_us - 1)])
    device, holder = np.concatenate([device, device[again]]), np.concatenate([holder, holder[again]])
    order = np.argsort(t, kind="stable")
    probs = np.array([p for *_x, p in DECISIONS])
    decision = rng.choice(len(DECISIONS), len(t), p=probs / probs.sum())
    return base + t[order], device[order], holder[order], decision[order]


def copy_lines(start: datetime, t_us: np.ndarray, device: np.ndarray, holder: np.ndarray, decision: np.ndarray,
               next_seq: np.ndarray, fleet: Fleet, people: Population, rng: np.random.Generator) -> str:
    """COPY text of the records (columns of the server's ``records`` plus ``scanned_at``)."""
    n = len(t_us)
    counts = np.bincount(device, minlength=len(next_seq))
    by_device = np.argsort(device, kind="stable")
    group_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n, np.int64)
    rank[by_device] = np.arange(n) - np.repeat(group_start, counts)
    seq = next_seq[device] + rank
    next_seq += counts
    stamps = np.datetime64(start.replace(tzinfo=None), "us") + t_us.astype("timedelta64[us]")
    walls = [w + "+00:00" for w in np.datetime_as_string(stamps, unit="us").tolist()]
    holders = _hex_rows(people.values[holder])
    hashes = _hex_rows(rng.integers(0, 256, (n, 64), dtype=np.uint8))
    monotonic = (t_us % (86_400 * 10**6) / 1e6).tolist()
    ids, labels = fleet.device_ids, [f"{d}\t{r}" for d, r, _p in DECISIONS]
    return "".join(
        f"{ids[d]}\t0\t{s}\t{w}\t{m:.6f}\tboot-{d}\tt\tCP1\tresident\t\\\\x{h}\t\\N\t{labels[k]}\t1\t1\t"
        f"\\\\x{x[:64]}\t\\\\x{x[64:]}\t{w}\n"
        for d, s, w, m, h, k, x in zip(device.tolist(), seq.tolist(), walls, monotonic, holders, decision.tolist(),
                                       hashes, strict=True))


#: every index on ``records`` that backs no constraint (the primary key stays: it is the table's identity)
SECONDARY_INDEXES = ("SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = "
                     "i.indexrelid WHERE i.indrelid = 'records'::regclass AND NOT EXISTS "
                     "(SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) ORDER BY 1")


@dataclass(frozen=True)
class LoadTimes:
    """Where the load's time went: COPY without secondary indexes, building them, VACUUM (ANALYZE)."""

    copy_s: float
    index_s: float
    vacuum_s: float

    @property
    def total_s(self) -> float:
        return self.copy_s + self.index_s + self.vacuum_s


def build_indexes_after_load(db, dropped: dict[str, str], progress: bool) -> tuple[float, float]:
    """Build the trace indexes from the migrations' definitions, check that the secondary indexes are
    again exactly those the load dropped, and VACUUM (ANALYZE); return (index, vacuum) seconds."""
    from sync.server.trace import covering_trace_indexes

    began = time.perf_counter()
    if progress:
        print(f"  bench trace: building {', '.join(dropped)}", file=sys.stderr, flush=True)
    # the COPYs committed asynchronously: a synchronous commit flushes their commit records, without
    # which VACUUM may not mark their rows visible to all (no hint bits before the flush)
    db.execute("SET synchronous_commit = on")
    db.execute("SET maintenance_work_mem = '512MB'")
    db.execute(covering_trace_indexes("postgresql"))
    rebuilt = dict(db.execute(SECONDARY_INDEXES).fetchall())
    if rebuilt != dropped:
        raise RuntimeError(f"the bench's indexes differ from the migrations': {rebuilt} != {dropped}")
    indexed = time.perf_counter()
    if progress:
        print(f"  bench trace: indexes built in {indexed - began:,.0f} s; VACUUM (ANALYZE)", file=sys.stderr,
              flush=True)
    db.execute("VACUUM (ANALYZE) records")  # the visibility map: without it an index-only scan reads the heap
    return indexed - began, time.perf_counter() - indexed


def generate(db_url: str, records: int, checkpoints: int, days: int, end: datetime, seed: int,
             progress: bool) -> tuple[Fleet, Population, datetime, LoadTimes]:
    """Load ``records`` scan records over ``days`` days ending at ``end``; return the world and the load times."""
    import psycopg

    from sync.server import partitions
    from sync.server.store_pg import split_schema

    rng = np.random.default_rng(seed)
    fleet = Fleet.make(checkpoints, rng)
    people = Population.make(records, days, fleet, rng)
    start = end - timedelta(days=days)
    conninfo, _schema = split_schema(db_url)
    next_seq = np.ones(len(fleet.device_ids), np.int64)
    loaded, began = 0, time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as db:
        partitions.ensure(db, [start + timedelta(days=d) for d in range(days + 1)])  # as maintain() would
        db.execute("SET synchronous_commit = off")
        dropped = dict(db.execute(SECONDARY_INDEXES).fetchall())
        for index in dropped:
            db.execute(f'DROP INDEX "{index}"')
        for day in range(days):
            target = records * (day + 1) // days - records * day // days
            t_us, device, holder, decision = day_records(day, start, target, fleet, people, rng)
            text = copy_lines(start, t_us, device, holder, decision, next_seq, fleet, people, rng)
            with db.cursor() as cur, cur.copy("COPY records (device_id, epoch, seq, wall_time, monotonic, boot_id, "
                                              "clock_trusted, format, kind, holder_hash, holder_enc, decision, "
                                              "reason, policy_version, risk_version, prev_hash, hash, scanned_at) "
                                              "FROM STDIN") as copy:
                for offset in range(0, len(text), 1 << 22):
                    copy.write(text[offset:offset + (1 << 22)])
            loaded += len(t_us)
            if progress:
                spent = time.perf_counter() - began
                print(f"  bench trace: day {day + 1}/{days}: {loaded:,} records loaded, {loaded / spent:,.0f}/s, "
                      f"about {spent / loaded * (records - loaded):,.0f} s to go", file=sys.stderr, flush=True)
        copied = time.perf_counter() - began
        index_s, vacuum_s = build_indexes_after_load(db, dropped, progress)
    return fleet, people, start, LoadTimes(copied, index_s, vacuum_s)


def sample_holders(people: Population, rng: np.random.Generator, n: int) -> Iterator[bytes]:
    """Random holders to trace: half commuters, half occasional travellers (drawn as they scan)."""
    for i in range(n):
        index = int(rng.integers(people.commuters)) if i % 2 == 0 else int(people.occasional(rng, 1)[0])
        yield people.values[index].tobytes()


def _plan(db, sql: str, params: tuple) -> tuple[list[str], list[str], int]:
    """(partition scans "index on table", the plan as text, shared buffers touched) of one query."""
    text = [r[0] for r in db.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql.replace("?", "%s"), params)]
    plan = db.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql.replace("?", "%s"), params).fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    scans: list[str] = []

    def walk(node: dict) -> None:
        if "Relation Name" in node:
            fetches = f" (heap fetches {node['Heap Fetches']})" if "Heap Fetches" in node else ""
            scans.append(f"{node['Node Type']} {node.get('Index Name', '-')} on {node['Relation Name']}{fetches}")
        for child in node.get("Plans", []):
            walk(child)
    walk(plan[0]["Plan"])
    top = plan[0]["Plan"]
    return scans, text, int(top.get("Shared Hit Blocks", 0)) + int(top.get("Shared Read Blocks", 0))


def disk(db) -> dict[str, int]:
    """Bytes of the records' partitions (heap) and of each index over all partitions."""
    heap = db.execute("SELECT COALESCE(sum(pg_relation_size(inhrelid)), 0) FROM pg_inherits "
                      "WHERE inhparent = 'records'::regclass").fetchone()[0]
    out = {"heap": int(heap)}
    for name in ("records_pkey", "records_by_holder_cover", "records_by_device_time_cover"):
        size = db.execute("SELECT COALESCE(sum(pg_relation_size(inhrelid)), 0) FROM pg_inherits "
                          "WHERE inhparent = %s::regclass", (name,)).fetchone()[0]
        out[name] = int(size)
    out["all_indexes"] = int(db.execute("SELECT COALESCE(sum(pg_indexes_size(inhrelid)), 0) FROM pg_inherits "
                                        "WHERE inhparent = 'records'::regclass").fetchone()[0])
    return out


def run(quick: bool = False, records: int | None = None, checkpoints: int | None = None, days: int | None = None,
        queries: int | None = None, window_min: int = 30, pg_url: str = PG_URL, seed: int = 16,
        progress: bool = True, **_opts) -> dict[str, object]:
    """Figures: trace_p50_ms / trace_p99_ms (14-day traces, ± window_min), plans, disk, 1e9 extrapolation."""
    import psycopg

    from sync.server.registry import Registry, parse_checkpoints
    from sync.server.storage import open_storage
    from sync.server.trace import near_sql, trace, visits_sql

    records = records or (200_000 if quick else 20_000_000)
    checkpoints = checkpoints or (50 if quick else 1_000)
    days = days or 30
    queries = queries or (20 if quick else 300)
    name = f"trace_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(pg_url, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    db_url = f"{pg_url.rsplit('/', 1)[0]}/{name}"
    try:
        storage = open_storage(db_url, create=True)  # the server's migrations and partitions
        storage.close()
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        fleet, people, _start, load = generate(db_url, records, checkpoints, days, end, seed, progress)
        registry = Registry(parse_checkpoints(fleet.registry_csv()))
        rng = np.random.default_rng(seed + 1)
        since, window = end - timedelta(days=min(TRACE_DAYS, days)), timedelta(minutes=window_min)
        storage = open_storage(db_url)
        latencies, visits, contacts = [], [], []
        try:
            for holder in sample_holders(people, rng, 5):  # warm the connection and the catalogue
                trace(storage, registry, holder, since, end, window)
            for holder in sample_holders(people, rng, queries):
                began = time.perf_counter()
                result = trace(storage, registry, holder, since, end, window)
                latencies.append((time.perf_counter() - began) * 1000)
                visits.append(len(result.visits))
                contacts.append(len(result.contacts))
                if progress and len(latencies) % 50 == 0:
                    print(f"  bench trace: {len(latencies)}/{queries} traces, median so far "
                          f"{median(latencies):.0f} ms", file=sys.stderr, flush=True)
        finally:
            storage.close()
        with psycopg.connect(db_url, autocommit=True) as db:
            commuter = people.values[0].tobytes()
            lo, hi = since.isoformat(), end.isoformat()
            visit = db.execute(visits_sql(True).replace("?", "%s"), (commuter, lo, hi, lo, hi, 1)).fetchone()
            visit_scans, visit_text, visit_buffers = _plan(db, visits_sql(True), (commuter, lo, hi, lo, hi, 2000))
            near_scans, near_text, near_buffers = [], [], 0
            if visit is not None:
                at = datetime.fromisoformat(visit[1])
                checkpoint = registry.checkpoint_of(visit[0])
                devices = checkpoint.device_ids if checkpoint else [visit[0]]
                start, stop = (at - window).isoformat(), (at + window).isoformat()
                near_scans, near_text, near_buffers = _plan(db, near_sql(len(devices), True),
                                                            (*devices, start, stop, start, stop, 5000))
            sizes = disk(db)
            stored = db.execute("SELECT count(*) FROM records").fetchone()[0]
            partitions_used = [r[0] for r in db.execute(
                "SELECT c.relname || ' ' || pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'records'::regclass ORDER BY 1")]
            depth = db.execute("SELECT max(level) FROM (SELECT (bt_metap(inhrelid::regclass::text)).level FROM "
                               "pg_inherits WHERE inhparent = 'records_by_holder_cover'::regclass) m").fetchone()[0] \
                if _has_pageinspect(db) else None
        if progress:
            print("  bench trace: visits query plan (a commuter):\n    " + "\n    ".join(visit_text),
                  file=sys.stderr)
            print("  bench trace: contacts query plan (one ± window):\n    " + "\n    ".join(near_text),
                  file=sys.stderr)
        per_record = {k: v / records for k, v in sizes.items()}
        scale = NATIONAL / records
        p99 = percentile(latencies, 99)
        figures: dict[str, object] = {
            "trace_records": records, "trace_records_stored": stored, "trace_database": name,
            "trace_checkpoints": checkpoints, "trace_days": days,
            "trace_load_s": round(load.total_s, 1), "trace_load_per_s": int(records / load.total_s),
            "trace_load_copy_s": round(load.copy_s, 1), "trace_load_index_build_s": round(load.index_s, 1),
            "trace_load_vacuum_analyze_s": round(load.vacuum_s, 1),
            # the secondary indexes were dropped for the COPY and rebuilt from the migrations' definitions
            "trace_schema_same_as_migrations": True,
            "trace_queries": queries, "trace_period_days": min(TRACE_DAYS, days), "trace_window_min": window_min,
            "trace_p50_ms": round(median(latencies), 1), "trace_p99_ms": round(p99, 1),
            "trace_max_ms": round(max(latencies), 1),
            "trace_visits_median": median(visits), "trace_visits_max": max(visits),
            "trace_contacts_median": median(contacts), "trace_contacts_max": max(contacts),
            "trace_goal_p99_ms": 1000, "trace_goal_met": p99 <= 1000,
            "trace_visits_plan": "; ".join(visit_scans), "trace_contacts_plan": "; ".join(near_scans),
            "trace_visits_buffers": visit_buffers, "trace_contacts_buffers_per_window": near_buffers,
            # pages a median trace reads: what it costs from disk once the indexes outgrow memory
            "trace_pages_per_trace_est": int(visit_buffers + median(visits) * near_buffers),
            "trace_partitions": "; ".join(partitions_used),
            "trace_heap_mb": round(sizes["heap"] / 2**20, 1),
            "trace_index_pkey_mb": round(sizes["records_pkey"] / 2**20, 1),
            "trace_index_by_holder_mb": round(sizes["records_by_holder_cover"] / 2**20, 1),
            "trace_index_by_device_time_mb": round(sizes["records_by_device_time_cover"] / 2**20, 1),
            "trace_indexes_mb": round(sizes["all_indexes"] / 2**20, 1),
            "trace_bytes_per_record": round(per_record["heap"] + per_record["all_indexes"], 1),
            "trace_1e9_heap_gb": round(per_record["heap"] * NATIONAL / 2**30, 1),
            "trace_1e9_trace_indexes_gb": round((per_record["records_by_holder_cover"]
                                                 + per_record["records_by_device_time_cover"])
                                                * NATIONAL / 2**30, 1),
            "trace_1e9_all_indexes_gb": round(per_record["all_indexes"] * NATIONAL / 2**30, 1),
            "trace_1e9_scale": round(scale, 1),
        }
        if depth is not None:
            figures["trace_by_holder_btree_levels"] = depth
        return figures
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _has_pageinspect(db) -> bool:
    try:
        db.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        return True
    except Exception:  # not installed on this server: the depth is left out
        return False
