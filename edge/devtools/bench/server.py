"""``checkpoint bench server``: a fleet of devices pushing signed batches over loopback HTTP into
two real server processes sharing one database (PostgreSQL, and SQLite for comparison).

Phases, each with every device on its own keep-alive connection (devices alternate between the
two processes, as behind a load balancer):

* **drain** (closed loop): every device sends its backlog batch after batch, as after an outage;
  accepted records/s is the server tier's throughput.
* **steady** (open loop): each device sends one batch at a fixed interval, random phase, offered
  rate = the goal (20,000 records/s) or 80 % of the drain rate if that is lower; p50/p99 request
  latency at that load, counted from when each batch was due (a send this simulator made late
  counts whole; ``send_late_p99_ms_pg`` says how late its sends were).
* **attack**: the steady load again while one client streams a 512 MiB body at a server;
  peak server RSS and latency then.

The client is a minimal asyncio HTTP/1.1 writer over pre-built, pre-signed bodies (a general HTTP
client would cost more CPU than the servers on a 2-core machine, and measure itself).

Where the CPU goes during the drain is reported per accepted record: the two server processes,
this simulator, and the PostgreSQL backends of the bench's database; ``cpu_bound_pg_per_s`` is the
rate the host's cores would sustain for the servers and those backends alone (the simulator shares the cores
here; a real fleet does not). At the end the rows in the database are counted: every accepted
record is stored exactly once (``exactly_once_*``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.devtools.bench.report import median, percentile
from edge.devtools.server_procs import ServerProcess, new_server_data_dir, new_server_database, raw_public_key
from sync.wire.protocol import API, GENESIS, b64, canonical_values, record_hash, request_signing_bytes
from sync.wire.sealed import HolderSealer, holder_aad

#: the PostgreSQL server (a database of its own is made there per run); over TCP on loopback unless
#: ``$CHECKPOINT_BENCH_PG_URL`` says otherwise (e.g. ``postgresql://postgres@%2Fvar%2Frun%2Fpostgresql/test``,
#: the Unix socket, as a server sharing the database's host would connect)
PG_URL = os.environ.get("CHECKPOINT_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PUSH = f"{API}/push"
GOAL_PER_S = 20_000
HOSTILE_BYTES = 512 * 1024 * 1024


@dataclass
class Device:
    device_id: str
    key: Ed25519PrivateKey
    requests: list[bytes] = field(default_factory=list)  # whole HTTP requests, one per batch


def _records(device_id: str, sealer: HolderSealer, start_seq: int, n: int, prev: bytes,
             at: datetime) -> tuple[list[dict], bytes]:
    out = []
    for seq in range(start_seq, start_seq + n):
        sealed = sealer.seal(seq.to_bytes(16, "big"), holder_aad(device_id, seq)).hex() if seq % 5 else None
        rec = {"seq": seq, "wall_time": (at + timedelta(seconds=seq)).isoformat(timespec="microseconds"),
               "monotonic": float(seq), "boot_id": "bench", "clock_trusted": True,
               "format": "CP1" if sealed else None, "kind": "resident" if sealed else None, "holder_enc": sealed,
               "decision": "PASS" if sealed else "CHECK", "reason": "ok" if sealed else "not_a_pass",
               "policy_version": "1", "risk_version": "1"}
        digest = record_hash(prev, canonical_values(*rec.values()))
        rec["prev_hash"], rec["hash"] = prev.hex(), digest.hex()
        prev = digest
        out.append(rec)
    return out, prev


def _http_request(device: Device, body: bytes) -> bytes:
    signature = b64(device.key.sign(request_signing_bytes("POST", PUSH, body)))
    head = (f"POST {PUSH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Device-Id: {device.device_id}\r\nX-Signature: {signature}\r\n\r\n")
    return head.encode() + body


def make_fleet(server_public_key, devices: int, batches: int, per_batch: int) -> list[Device]:
    """Every device's chained, sealed, signed batches, ready to write to a socket."""
    fleet = []
    at = datetime.now(UTC) - timedelta(hours=1)
    for i in range(devices):
        device = Device(f"bench-{i:05d}", Ed25519PrivateKey.generate())
        sealer = HolderSealer(server_public_key)
        prev, seq = GENESIS, 1
        for _ in range(batches):
            recs, prev = _records(device.device_id, sealer, seq, per_batch, prev, at)
            seq += per_batch
            body = json.dumps({"device_id": device.device_id, "records": recs}, separators=(",", ":")).encode()
            device.requests.append(_http_request(device, body))
        fleet.append(device)
    return fleet


class Connection:
    """One device's keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Send on the open connection; one new connection and resend if the server had closed an idle
        one (its keep-alive timeout), as any HTTP client does."""
        if self.writer is not None:
            try:
                return await self._exchange(request)
            except (OSError, asyncio.IncompleteReadError):
                self.close()
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return await self._exchange(request)

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await self.reader.readexactly(length) if length else b""
        if b"connection: close" in head.lower():
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@dataclass
class PhaseResult:
    seconds: float
    stored: int
    latencies_ms: list[float]
    errors: int
    peak_rss_mb: float


class RssSampler:
    """Peak resident memory of the server processes while a phase runs (sampled every 50 ms)."""

    def __init__(self, servers: list[ServerProcess]):
        self.servers = servers
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, *(s.rss_mb() for s in self.servers))
            self._stop.wait(0.05)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def _push(conn: Connection, request: bytes, latencies: list[float], due: float | None = None) -> tuple[int, int]:
    """(records stored, 1 if an error answer else 0). The latency counts from ``due``, when the
    request was to be sent (open loop), if given: a send this simulator made late still counts
    whole; else from now (closed loop)."""
    start = time.perf_counter() if due is None else due
    try:
        status, body = await conn.send(request)
    except (OSError, asyncio.IncompleteReadError):
        conn.close()
        return 0, 1
    latencies.append((time.perf_counter() - start) * 1000)
    if status != 200:
        return 0, 1
    return json.loads(body).get("stored", 0), 0


async def drain(fleet: list[Device], conns: list[Connection], batches: range) -> tuple[float, int, list[float], int]:
    latencies: list[float] = []
    stored = errors = 0

    async def device_loop(device: Device, conn: Connection) -> None:
        nonlocal stored, errors
        for b in batches:
            s, e = await _push(conn, device.requests[b], latencies)
            stored += s
            errors += e
    start = time.perf_counter()
    await asyncio.gather(*(device_loop(d, c) for d, c in zip(fleet, conns, strict=True)))
    return time.perf_counter() - start, stored, latencies, errors


async def steady(fleet: list[Device], conns: list[Connection], batches: range, interval_s: float,
                 hostile_port: int | None = None) -> tuple[float, int, list[float], int, list[float]]:
    """Each device sends batch after batch every ``interval_s`` (random phase); optionally a 512 MiB
    body streams into ``hostile_port`` meanwhile. Latencies count from each batch's due time, so
    that neither a late answer (the next batch waits for it) nor this simulator's own lag (a send
    made late) hides time from the figure; ``late_ms`` holds how late each send was."""
    latencies: list[float] = []
    late_ms: list[float] = []
    stored = errors = 0
    rng = random.Random(1)

    async def device_loop(device: Device, conn: Connection) -> None:
        nonlocal stored, errors
        due = time.perf_counter() + rng.random() * interval_s
        for b in batches:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            late_ms.append((time.perf_counter() - due) * 1000)
            s, e = await _push(conn, device.requests[b], latencies, due)
            stored += s
            errors += e
            due += interval_s

    tasks = [device_loop(d, c) for d, c in zip(fleet, conns, strict=True)]
    hostile = asyncio.ensure_future(_hostile_body(hostile_port)) if hostile_port else None
    start = time.perf_counter()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    if hostile is not None:
        hostile.cancel()
        await asyncio.gather(hostile, return_exceptions=True)
    return elapsed, stored, latencies, errors, late_ms


async def _hostile_body(port: int) -> None:
    """Stream a 512 MiB body (unauthenticated) at full speed until sent or the server hangs up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {PUSH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {HOSTILE_BYTES}\r\nX-Device-Id: nobody\r\nX-Signature: AAAA\r\n\r\n".encode())
    chunk = b"0" * (1024 * 1024)
    try:
        for _ in range(HOSTILE_BYTES // len(chunk)):
            writer.write(chunk)
            await writer.drain()
        await reader.read(1024)
    except (OSError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


def _enroll(db_url: str, fleet: list[Device]) -> None:
    """Initialise the database and enroll every device by the administrator's path."""
    from sync.server.storage import open_storage
    storage = open_storage(new_server_database(db_url))
    try:
        for d in fleet:
            storage.enroll(d.device_id, raw_public_key(d.key))
    finally:
        storage.close()


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 if it has ended)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PostgresCpu:
    """CPU time of the PostgreSQL backends serving one database (the server processes'
    connections; other users of a shared PostgreSQL are not counted, nor are its shared WAL
    writer and checkpointer). Needs PostgreSQL on this host; 0 elsewhere."""

    def __init__(self, db_url: str):
        self.db_url = db_url
        self._start: dict[int, float] = {}

    def _backends(self) -> list[int]:
        import psycopg
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            return [row[0] for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]

    def start(self) -> None:
        self._start = {pid: _proc_cpu_seconds(pid) for pid in self._backends()}

    def seconds(self) -> float:
        """CPU seconds since ``start`` (of backends that began since too)."""
        return sum(_proc_cpu_seconds(pid) - self._start.get(pid, 0.0) for pid in self._backends())


def _stored_rows(db_url: str) -> int:
    """Rows in the server's ``records`` table, counted in the database."""
    from sync.server.storage import open_storage
    storage = open_storage(db_url)
    try:
        return storage.count_records()
    finally:
        storage.close()


def run_engine(db_url: str, data_dir: Path, fleet: list[Device], drain_batches: int, steady_s: float,
               with_steady: bool) -> dict[str, float]:
    _enroll(db_url, fleet)
    servers = [ServerProcess(data_dir, db_url), ServerProcess(data_dir, db_url)]
    out: dict[str, float] = {}
    try:
        for s in servers:
            s.wait_ready()
        loop = asyncio.new_event_loop()
        conns = [Connection(servers[i % 2].port) for i in range(len(fleet))]
        cpu_before = sum(s.cpu_seconds() for s in servers)
        pg_cpu_meter = PostgresCpu(db_url) if db_url.startswith("postgresql://") else None
        if pg_cpu_meter is not None:
            pg_cpu_meter.start()
        client_before = time.process_time()
        with RssSampler(servers) as rss:
            seconds, stored, lat, errors = loop.run_until_complete(drain(fleet, conns, range(drain_batches)))
        cpu = sum(s.cpu_seconds() for s in servers) - cpu_before
        client_cpu = time.process_time() - client_before
        pg_cpu = pg_cpu_meter.seconds() if pg_cpu_meter is not None else 0.0
        accepted = stored
        per_batch = stored / max(1, len(fleet) * drain_batches)
        out.update(drain_per_s=stored / seconds, cpu_us_per_record=cpu * 1e6 / max(1, stored),
                   client_cpu_us_per_record=client_cpu * 1e6 / max(1, stored),
                   postgres_cpu_us_per_record=pg_cpu * 1e6 / max(1, stored),
                   drain_p50_ms=median(lat), drain_p99_ms=percentile(lat, 99),
                   drain_errors=errors, drain_records=stored, rss_mb=rss.peak)
        if with_steady:
            rate = min(GOAL_PER_S, 0.8 * out["drain_per_s"])
            interval = len(fleet) * per_batch / rate
            rounds = max(1, min(2, int(steady_s / interval)))
            steady_range = range(drain_batches, drain_batches + rounds)
            with RssSampler(servers) as rss:
                seconds, stored, lat, errors, late = loop.run_until_complete(
                    steady(fleet, conns, steady_range, interval))
            accepted += stored
            out.update(offered_per_s=rate, steady_records=stored, steady_s=seconds, p50_ms=median(lat),
                       p99_ms=percentile(lat, 99), send_late_p99_ms=percentile(late, 99), steady_errors=errors,
                       rss_mb=max(out["rss_mb"], rss.peak))
            attack_range = range(steady_range.stop, steady_range.stop + rounds)
            with RssSampler(servers) as rss:
                seconds, stored, lat, errors, _late = loop.run_until_complete(
                    steady(fleet, conns, attack_range, interval, hostile_port=servers[0].port))
            accepted += stored
            out.update(attack_p99_ms=percentile(lat, 99), attack_errors=errors,
                       rss_mb_under_attack=rss.peak)
        for c in conns:
            c.close()
        loop.close()
    finally:
        for s in servers:
            s.stop()
    out.update(accepted=accepted, stored_rows=_stored_rows(db_url))
    return out


def _database_url(url: str, database: str) -> str:
    """``url`` naming another database on the same server (host, socket and options kept)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def _connection_kind(url: str) -> str:
    """How the servers reach PostgreSQL: "tcp" or "unix socket" (a host that is a directory)."""
    import psycopg
    with psycopg.connect(url, connect_timeout=3) as conn:
        return "unix socket" if conn.info.host.startswith("/") else "tcp"


def _pg_available() -> bool:
    try:
        import psycopg
        with psycopg.connect(PG_URL, connect_timeout=3):
            return True
    except Exception:
        return False


def run(quick: bool = False, devices: int | None = None, **_opts) -> dict[str, float | int | str]:
    """Figures: http_ingest_pg_per_s / http_ingest_sqlite_per_s (drain phase), p50_ms_pg / p99_ms_pg
    (steady phase at the offered rate), rss_mb (peak of either server process), rss_mb_under_attack.
    ``devices``: the fleet size (1,000; 100 with ``quick``)."""
    _raise_fd_limit()
    devices = devices or (100 if quick else 1000)
    drain_batches, steady_s = (2, 4.0) if quick else (3, 8.0)
    figures: dict[str, float | int | str] = {"server_devices": devices, "server_records_per_batch": 100}
    with tempfile.TemporaryDirectory(prefix="bench-server-") as d:
        tmp = Path(d)
        settings = new_server_data_dir(tmp / "data")
        t0 = time.perf_counter()
        fleet = make_fleet(settings.encryption_key.public_key(), devices, drain_batches + 4, 100)
        figures["server_fleet_build_s"] = round(time.perf_counter() - t0, 1)
        if _pg_available():
            import psycopg
            # a database of its own: its backends' CPU is told apart from other users of the server
            database = f"bench_server_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{database}"')
            try:
                pg = run_engine(_database_url(PG_URL, database), tmp / "data", fleet, drain_batches, steady_s, True)
            finally:
                with psycopg.connect(PG_URL, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            figures.update({
                "pg_connection": _connection_kind(PG_URL),
                "http_ingest_pg_per_s": round(pg["drain_per_s"], 1),
                "drain_p99_ms_pg": round(pg["drain_p99_ms"], 1),
                "server_cpu_us_per_record_pg": round(pg["cpu_us_per_record"], 1),
                "client_cpu_us_per_record_pg": round(pg["client_cpu_us_per_record"], 1),
                "postgres_cpu_us_per_record": round(pg["postgres_cpu_us_per_record"], 1),
                "cpu_bound_pg_per_s": round(os.cpu_count() * 1e6 / max(
                    1.0, pg["cpu_us_per_record"] + pg["postgres_cpu_us_per_record"]), 1),
                "accepted_pg": int(pg["accepted"]),
                "exactly_once_pg": pg["stored_rows"] == pg["accepted"],
                "drain_errors_pg": int(pg["drain_errors"]),
                "offered_pg_per_s": round(pg["offered_per_s"], 1),
                "steady_pg_records": int(pg["steady_records"]),
                "steady_pg_seconds": round(pg["steady_s"], 2),
                "p50_ms_pg": round(pg["p50_ms"], 1),
                "p99_ms_pg": round(pg["p99_ms"], 1),
                "send_late_p99_ms_pg": round(pg["send_late_p99_ms"], 1),
                "steady_errors_pg": int(pg["steady_errors"]),
                "rss_mb": round(pg["rss_mb"], 1),
                "attack_errors_pg": int(pg["attack_errors"]),
                "p99_ms_pg_under_attack": round(pg["attack_p99_ms"], 1),
                "rss_mb_under_attack": round(pg["rss_mb_under_attack"], 1),
            })
        else:
            figures.update(http_ingest_pg_per_s="unavailable", p99_ms_pg="unavailable")
        lite = run_engine(f"sqlite:///{tmp / 'data' / 'server.sqlite'}", tmp / "data", fleet, drain_batches,
                          steady_s, False)
        figures.update({"http_ingest_sqlite_per_s": round(lite["drain_per_s"], 1),
                        "drain_p99_ms_sqlite": round(lite["drain_p99_ms"], 1),
                        "server_cpu_us_per_record_sqlite": round(lite["cpu_us_per_record"], 1),
                        "exactly_once_sqlite": lite["stored_rows"] == lite["accepted"],
                        "drain_errors_sqlite": int(lite["drain_errors"]),
                        "rss_mb_sqlite": round(lite["rss_mb"], 1)})
        figures.setdefault("rss_mb", round(lite["rss_mb"], 1))
    return figures
