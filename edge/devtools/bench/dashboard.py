"""``checkpoint bench dashboard``: render time of the commanders' pages over a national-scale database.

A PostgreSQL schema of its own is filled the way a year of a province's fleet would leave it, but in
minutes: ``devices`` enrolled devices (two per checkpoint, in the registry with district, zone and
place), ``records`` scan records over the last 30 days bulk-loaded with COPY in arrival (time)
order into the monthly partitions, the hourly roll-up made from them as migration step 6 makes it,
and a heartbeat per device (some never seen, down, faulty, clock-untrusted, stale). Then a real
``checkpoint server --serve admin`` process answers a logged-in viewer over loopback HTTP: the
fleet view (``/fleet``) and random checkpoint pages (``/checkpoints/ID``), each timed from request
to the last byte. The records are synthetic (random hashes; no chain is verified by the pages).

The PostgreSQL server is ``$CHECKPOINT_BENCH_PG_URL`` (default: the local ``test`` database); the
schema is dropped at the end.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from edge.devtools.bench.report import median, percentile
from edge.devtools.server_procs import ServerProcess, new_server_data_dir

PG_URL = os.environ.get("CHECKPOINT_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
GOAL_P95_MS = 300.0
DAYS = 30
PASSWORD = "bench viewer password"
#: (decision, reason, weight): most passes are fine; refusals and checks by their usual reasons
OUTCOMES = (("PASS", "ok", 880), ("REFUSE", "risk_f0", 6), ("REFUSE", "risk_f1", 14), ("REFUSE", "expired", 8),
            ("REFUSE", "test_too_old", 25), ("REFUSE", "insufficient_vaccination", 12),
            ("REFUSE", "zone_not_allowed", 5), ("REFUSE", "bad_signature", 3), ("CHECK", "not_a_pass", 20),
            ("CHECK", "risk_not_covered", 10), ("CHECK", "clock_untrusted", 4), ("CHECK", "unknown_issuer", 13))
COPY_COLUMNS = ("device_id, epoch, seq, wall_time, monotonic, boot_id, clock_trusted, format, kind, holder_hash, "
                "holder_enc, decision, reason, policy_version, risk_version, prev_hash, hash, scanned_at")


def _say(message: str) -> None:
    print(f"bench dashboard: {message}", file=sys.stderr, flush=True)


def _registry(devices: int, rng: random.Random):
    from sync.server.registry import Checkpoint

    districts = ("Ba Đình", "Hoàn Kiếm", "Đống Đa", "Cầu Giấy", "Thanh Xuân", "Hà Đông", "Long Biên", "Tây Hồ")
    zones = ("hn-zone-1", "hn-zone-2", "hn-zone-3", "hn-red")
    return [Checkpoint(f"HN-{n:04d}", f"Chốt kiểm soát số {n}", "Hà Nội", district=rng.choice(districts),
                       zone=rng.choice(zones), latitude=round(20.9 + rng.random() * 0.2, 5),
                       longitude=round(105.7 + rng.random() * 0.2, 5), policy="", devices=2)
            for n in range(1, devices // 2 + 1)]


def _heartbeat(device_id: str, now: datetime, rng: random.Random) -> tuple[datetime, str] | None:
    from sync.wire.protocol import Heartbeat

    roll = rng.random()
    if roll < 0.03:
        return None  # never seen
    received = now - (timedelta(hours=3) if roll < 0.05 else timedelta(seconds=rng.uniform(5, 90)))
    beat = Heartbeat(device_id=device_id, sent_at=received.isoformat(), software_version="0.1.0",
                     uptime_s=rng.uniform(600, 9e5), state="camera_lost" if 0.05 <= roll < 0.07 else "running",
                     faults=["camera_lost"] if 0.05 <= roll < 0.07 else [], clock_trusted=not 0.07 <= roll < 0.09,
                     trust_version=3, policy_version=5, risk_version=120,
                     risk_published_at=(now - timedelta(days=3 if 0.09 <= roll < 0.1 else 0, hours=2)).isoformat(),
                     backlog=rng.randrange(0, 40), disk_free_mb=rng.uniform(2000, 20000), cpu_temp_c=52.0,
                     decisions=rng.randrange(0, 5000))
    return received, beat.model_dump_json()


def _copy_records(db, device_ids: list[str], records: int, now: datetime, rng: random.Random) -> None:
    """COPY ``records`` rows, hour by hour from 30 days ago (the order devices push them in)."""
    hours = DAYS * 24
    first_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    # busier by day (06:00-22:00 in Vietnam, UTC+7) than by night
    weights = [4 if 6 <= ((first_hour + timedelta(hours=h)).hour + 7) % 24 < 22 else 1 for h in range(hours)]
    total_weight = sum(weights)
    outcomes = [f"{d}\t{r}" for d, r, _w in OUTCOMES]
    outcome_weights = [w for _d, _r, w in OUTCOMES]
    seqs = dict.fromkeys(device_ids, 0)
    holders = max(records // 5, 1)
    done = cumulative = 0
    started = time.perf_counter()
    with db.cursor().copy(f"COPY records ({COPY_COLUMNS}) FROM STDIN") as copy:
        for h in range(hours):
            cumulative += weights[h]
            n = round(records * cumulative / total_weight) - done  # ends at exactly ``records``
            start = first_hour + timedelta(hours=h)
            prefix = start.strftime("%Y-%m-%dT%H")
            stamp = start.strftime("%Y-%m-%d %H")
            lines = []
            chosen = rng.choices(outcomes, outcome_weights, k=n)
            for i, offset in enumerate(sorted(rng.randrange(3_600_000_000) for _ in range(n))):
                device = rng.choice(device_ids)
                seq = seqs[device] = seqs[device] + 1
                minute, rest = divmod(offset, 60_000_000)
                second, micro = divmod(rest, 1_000_000)
                clock = f"{minute:02d}:{second:02d}.{micro:06d}"
                holder = rng.randrange(holders).to_bytes(16, "big").hex()
                lines.append(f"{device}\t0\t{seq}\t{prefix}:{clock}+00:00\t{seq}.0\tbench\tt\tCP1\tresident\t"
                             f"\\\\x{holder}\t\\N\t{chosen[i]}\t5\t120\t\\\\x{rng.randbytes(32).hex()}\t"
                             f"\\\\x{rng.randbytes(32).hex()}\t{stamp}:{clock}+00\n")
            copy.write("".join(lines))
            done += n
            if h % 48 == 47:
                rate = done / (time.perf_counter() - started)
                _say(f"records {done:,} of {records:,} ({rate:,.0f}/s)")
    db.execute("UPDATE devices d SET acked_seq = s.n, records = s.n FROM (SELECT device_id, COUNT(*) AS n FROM "
               "records GROUP BY device_id) s WHERE s.device_id = d.device_id")


def fill(db_url: str, data_dir: Path, devices: int, records: int, now: datetime, seed: int = 7) -> list[str]:
    """Enroll the fleet, load the records, roll them up, store heartbeats; return the checkpoint ids."""
    import psycopg

    from sync.server import partitions
    from sync.server.accounts import add_user
    from sync.server.fleet.store import ROLLUP_FILL
    from sync.server.registry import Registry
    from sync.server.storage import open_storage
    from sync.server.store_pg import split_schema
    from sync.server.trace import covering_trace_indexes

    rng = random.Random(seed)
    checkpoints = _registry(devices, rng)
    Registry(checkpoints).save(data_dir)
    device_ids = [d for c in checkpoints for d in c.device_ids]
    storage = open_storage(db_url, create=True)
    try:
        add_user(storage, "bench-viewer", PASSWORD, "viewer")
        for device_id in device_ids:
            beat = _heartbeat(device_id, now, rng)
            if beat is not None:
                storage.record_heartbeat(device_id, *beat)
    finally:
        storage.close()
    conninfo, schema = split_schema(db_url)
    with psycopg.connect(conninfo, autocommit=True) as db:
        db.execute(f'SET search_path TO "{schema}"')
        with db.transaction():
            partitions.ensure(db, [partitions.add_months(partitions.month_start(now), -n) for n in range(3)])
            enrolled = (now - timedelta(days=DAYS + 1)).isoformat(timespec="seconds")
            with db.cursor().copy("COPY devices (device_id, public_key, enrolled_at, last_seen) FROM STDIN") as copy:
                for device_id in device_ids:
                    copy.write_row((device_id, rng.randbytes(32), enrolled, now.isoformat(timespec="seconds")))
            # a bulk load builds the holder index once afterwards, not row by row in random order
            db.execute("DROP INDEX IF EXISTS records_by_holder_cover")
            _copy_records(db, device_ids, records, now, rng)
        _say("indexing holders")
        db.execute(covering_trace_indexes("postgresql"))
        _say("rolling up and analysing")
        with db.transaction():
            db.execute("DELETE FROM hourly_activity")
            db.execute(ROLLUP_FILL)
        db.execute("ANALYZE")
    return [c.checkpoint_id for c in checkpoints]


def _timed_get(session: requests.Session, url: str) -> float:
    t0 = time.perf_counter()
    resp = session.get(url, timeout=120)
    elapsed = (time.perf_counter() - t0) * 1000
    if resp.status_code != 200 or "<table" not in resp.text:
        raise RuntimeError(f"GET {url}: {resp.status_code} {resp.text[:200]!r}")
    return elapsed


def measure(base_url: str, checkpoint_ids: list[str], requests_each: int, seed: int = 11) -> dict[str, float]:
    """Log in as a viewer, then time the fleet view and random checkpoint pages (after one warm-up each)."""
    rng = random.Random(seed)
    session = requests.Session()
    resp = session.post(base_url + "/login", data={"username": "bench-viewer", "password": PASSWORD}, timeout=30,
                        allow_redirects=False)
    if resp.status_code != 303 or not session.cookies:
        raise RuntimeError(f"login refused: {resp.status_code}")
    _timed_get(session, base_url + "/fleet")
    _timed_get(session, f"{base_url}/checkpoints/{checkpoint_ids[0]}")
    fleet = [_timed_get(session, base_url + "/fleet") for _ in range(requests_each)]
    pages = [_timed_get(session, f"{base_url}/checkpoints/{rng.choice(checkpoint_ids)}") for _ in range(requests_each)]
    return {"fleet_p50_ms": round(median(fleet), 1), "fleet_p95_ms": round(percentile(fleet, 95), 1),
            "checkpoint_p50_ms": round(median(pages), 1), "checkpoint_p95_ms": round(percentile(pages, 95), 1)}


def run(quick: bool = False, devices: int | None = None, records: int | None = None,
        requests_each: int | None = None, **_opts) -> dict[str, float | int | str]:
    """Figures: fleet_p50_ms / fleet_p95_ms (``/fleet``), checkpoint_p50_ms / checkpoint_p95_ms
    (``/checkpoints/ID``), against ``dashboard_goal_p95_ms``; plus the database's size."""
    import psycopg

    devices = devices or (40 if quick else 1000)
    records = records or (20_000 if quick else 10_000_000)
    requests_each = requests_each or (10 if quick else 60)
    schema = f"bench_dash_{uuid.uuid4().hex[:10]}"
    db_url = f"{PG_URL}?schema={schema}"
    now = datetime.now(UTC)
    figures: dict[str, float | int | str] = {"dashboard_devices": devices, "dashboard_records": records,
                                             "dashboard_goal_p95_ms": GOAL_P95_MS}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as d:
            data_dir = Path(d) / "data"
            new_server_data_dir(data_dir, db_url)
            t0 = time.perf_counter()
            checkpoint_ids = fill(db_url, data_dir, devices, records, now)
            figures["dashboard_fill_s"] = round(time.perf_counter() - t0, 1)
            with ServerProcess(data_dir, db_url, options=("--serve", "admin", "--insecure-cookies"),
                               ready_path="/login") as srv:
                _say(f"timing {requests_each} fleet views and {requests_each} checkpoint pages")
                figures.update(measure(srv.url, checkpoint_ids, requests_each))
            with psycopg.connect(PG_URL) as db:
                figures["dashboard_rollup_rows"] = db.execute(
                    f'SELECT COUNT(*) FROM "{schema}".hourly_activity').fetchone()[0]
                figures["dashboard_db_mb"] = round(float(db.execute(
                    "SELECT SUM(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = "
                    "c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'm')", (schema,)).fetchone()[0])
                    / 2**20, 1)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as db:
            db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return figures
