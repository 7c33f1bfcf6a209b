"""F1 tracing over real scan records: devices push over loopback, a tracer asks (API and CLI),
contacts come from the same checkpoint within the window only, every trace is audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.cli import main
from edge.device.sync_client import SyncClient
from edge.scan.scanlog import ScanLog
from edge.verdict import Decision, Reason, Verdict
from sync.server.accounts import add_user
from sync.server.app import create_app
from sync.server.enrollment import issue_token
from sync.server.registry import Registry, parse_checkpoints
from sync.server.runner import ServerThread
from sync.server.settings import init_data_dir
from sync.server.storage import open_storage
from sync.server.trace import TraceError, trace, traced_holder
from sync.wire.identifiers import certificate_hash, holder_hash, keyed_certificate

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)  # 08:00 in Hà Nội
DCC_UCI = "URN:UVCI:01:VN:TRACE0001"
REGISTRY = ("checkpoint_id,name,province,devices\n"
            "HN-A,Chốt A,Hà Nội,2\n"
            "HN-B,Chốt B,Hà Nội,1\n")


def _scan(log: ScanLog, person: bytes | None, at: datetime, decision=Decision.PASS, reason=Reason.OK,
          fmt: str = "CP1") -> None:
    log.append(Verdict(decision, reason, format=fmt, kind="resident", holder_hash=person),
               wall_time=at, monotonic=at.timestamp(), clock_trusted=True, policy_version=1, risk_version=1)


@pytest.fixture
def traced_server(tmp_path: Path, db_url: str):
    """On SQLite and on PostgreSQL (partitioned records), a server whose logs hold:
    the F0 case at HN-A 08:00; X at HN-A's other device 08:10; Y at HN-A 09:00;
    Z at HN-B 08:05; X again at HN-A 08:25 (a second time near the F0 case)."""
    settings = init_data_dir(tmp_path / "server", db_url=db_url)
    settings.secure_cookies = False
    Registry(parse_checkpoints(REGISTRY)).save(settings.data_dir)
    key = settings.identifier_key
    people = {name: holder_hash(f"0010900{n:05d}", key) for n, name in enumerate(("F0", "X", "Y", "Z"))}
    storage = open_storage(settings.db_url)
    tokens = {d: issue_token(storage, d) for d in ("HN-A-1", "HN-A-2", "HN-B-1")}
    add_user(storage, "tracer1", "correct horse battery", "tracer")
    add_user(storage, "viewer1", "correct horse battery", "viewer")
    add_user(storage, "operator1", "correct horse battery", "operator")
    storage.close()
    logs = {d: ScanLog(tmp_path / d / "scanlog.sqlite", device_id=d, boot_id="b",
                       server_encryption_key=settings.encryption_key.public_key()) for d in tokens}
    _scan(logs["HN-A-1"], people["F0"], T0)
    _scan(logs["HN-A-2"], people["X"], T0 + timedelta(minutes=10))
    _scan(logs["HN-A-1"], people["Y"], T0 + timedelta(minutes=60))
    _scan(logs["HN-B-1"], people["Z"], T0 + timedelta(minutes=5))
    _scan(logs["HN-A-1"], None, T0 + timedelta(minutes=1), Decision.CHECK, Reason.NOT_A_PASS)  # no holder
    _scan(logs["HN-A-1"], people["X"], T0 + timedelta(minutes=25))
    _scan(logs["HN-B-1"], certificate_hash(DCC_UCI), T0 + timedelta(minutes=15), fmt="HC1")  # a vaccine passport
    with ServerThread(create_app(settings)) as server:
        for device_id, log in logs.items():
            client = SyncClient(server.url, log, Ed25519PrivateKey.generate(), timeout_s=5)
            client.enroll(tokens[device_id])
            client.push()
        yield settings, server, people
    for log in logs.values():
        log.close()


def test_contacts_are_the_same_checkpoint_within_the_window_ranked_by_closeness(traced_server):
    settings, _server, people = traced_server
    storage = open_storage(settings.db_url)
    try:
        result = trace(storage, Registry.load(settings.data_dir), people["F0"], T0 - timedelta(days=1),
                       T0 + timedelta(days=1), timedelta(minutes=30))
        assert [(v.checkpoint_id, v.at) for v in result.visits] == [("HN-A", T0)]
        assert [c.holder for c in result.contacts] == [people["X"]]  # not Y (an hour later), not Z (HN-B)
        assert result.contacts[0].closest_s == 600 and result.contacts[0].times == 2
        wide = trace(storage, Registry.load(settings.data_dir), people["F0"], T0 - timedelta(days=1),
                     T0 + timedelta(days=1), timedelta(minutes=90))
        assert [c.holder for c in wide.contacts] == [people["X"], people["Y"]]  # closest first
        with pytest.raises(TraceError):
            trace(storage, Registry(), people["F0"], T0, T0 + timedelta(days=90), timedelta(minutes=30))
    finally:
        storage.close()
    storage = open_storage(settings.db_url)
    try:  # a DCC holder is traced by the UCI of their certificate
        by_uci = trace(storage, Registry.load(settings.data_dir),
                       traced_holder(citizen_id=None, uci=DCC_UCI, key=settings.identifier_key),
                       T0 - timedelta(days=1), T0 + timedelta(days=1), timedelta(minutes=30))
    finally:
        storage.close()
    assert [v.checkpoint_id for v in by_uci.visits] == ["HN-B"] and [c.holder for c in by_uci.contacts] == [people["Z"]]
    # the server keys the DCC certificate hashes it stores, so a trace by UCI looks the keyed value up
    assert traced_holder(citizen_id=None, uci="URN:UVCI:01:VN:ABC", key=settings.identifier_key) == \
        keyed_certificate(certificate_hash("URN:UVCI:01:VN:ABC"), settings.identifier_key)
    with pytest.raises(TraceError):
        traced_holder(citizen_id=None, uci="URN:UVCI:01:VN:ABC", key=None)
    with pytest.raises(TraceError):
        traced_holder(citizen_id="1", uci="2", key=settings.identifier_key)


class _HostileTimes:
    """The two trace queries over records a modified device wrote: wall times are the device's
    word (any printable text up to 40 characters), so one has no offset and one is not a time."""

    def visits_of(self, holder: bytes, since: str, until: str, limit: int) -> list[tuple[str, str, str]]:
        return [("HN-A-1", T0.isoformat(), "PASS"), ("HN-A-1", "2026-11-20T01:30:00", "PASS"),
                ("HN-A-1", "yesterday", "PASS")]

    def holders_near(self, devices: list[str], since: str, until: str, limit: int) -> list[tuple[bytes, str, str]]:
        return [(b"x" * 16, "HN-A-2", "2026-11-20T01:10:00"), (b"y" * 16, "HN-A-2", (T0 + timedelta(minutes=20))
                 .isoformat()), (b"z" * 16, "HN-A-2", "\u00e9t\u00e9")]


def test_a_wall_time_without_an_offset_is_read_as_utc_not_a_500():
    """Naive and aware times once met in one subtraction (TypeError: a 500 for the tracer)."""
    result = trace(_HostileTimes(), Registry(parse_checkpoints(REGISTRY)), b"f" * 16, T0 - timedelta(days=1),
                   T0 + timedelta(days=1), timedelta(minutes=30))
    assert [v.at for v in result.visits] == [T0, T0 + timedelta(minutes=30)]  # "yesterday" is no time: left out
    assert [(c.holder, c.closest_s) for c in result.contacts] == [(b"x" * 16, 600), (b"y" * 16, 600)]


def _login(server, user: str) -> dict[str, str]:
    answer = requests.post(server.url + "/admin/api/login",
                           json={"username": user, "password": "correct horse battery"}, timeout=10).json()
    return {"Authorization": f"Bearer {answer['token']}", "X-CSRF-Token": answer["csrf_token"]}


def _trail(settings) -> list:
    storage = open_storage(settings.db_url)
    try:
        return storage.audit_log(100)
    finally:
        storage.close()


def test_only_the_tracer_traces_by_citizen_id_and_every_trace_is_audited(traced_server):
    settings, server, people = traced_server
    query = {"citizen_id": "001090000000", "since": (T0 - timedelta(hours=2)).isoformat(),
             "until": (T0 + timedelta(hours=2)).isoformat(), "window_min": 30}

    def login(user: str) -> dict[str, str]:
        return _login(server, user)

    viewer = requests.post(server.url + "/admin/api/trace", json=query, headers=login("viewer1"), timeout=10)
    assert viewer.status_code == 403
    answer = requests.post(server.url + "/admin/api/trace", json=query, headers=login("tracer1"), timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["holder"] == people["F0"].hex() and "001090000000" not in answer.text  # keyed values only
    assert [c["holder"] for c in body["contacts"]] == [people["X"].hex()] and body["per_checkpoint"] == {"HN-A": 1}

    cli = CliRunner().invoke(main, ["trace", "--data-dir", str(settings.data_dir), "--db", settings.db_url,
                                    "--citizen-id", "001090000000",
                                    "--since", query["since"], "--until", query["until"], "--json"])
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.output)["contacts"] == body["contacts"]
    storage = open_storage(settings.db_url)
    try:
        trail = [(e.actor, e.action, e.outcome) for e in storage.audit_log(50)]
    finally:
        storage.close()
    assert ("user:tracer1", "trace", "ok") in trail and ("user:viewer1", "denied:trace", "denied") in trail
    assert any(actor.startswith("cli:") and action == "trace_export" for actor, action, _ in trail)


def test_traced_contacts_are_published_as_f1_after_a_dry_run(traced_server, tmp_path: Path):
    from conftest import COVERS

    from edge.lists.risk_store import RiskStore
    from sync.server.publish.risk import RiskPublisher
    from sync.wire.risk.types import RiskStatus

    settings, server, people = traced_server
    publisher = RiskPublisher(settings.data_dir / "risk", settings.publisher_key, coverage=COVERS)
    publisher.publish([(people["F0"], RiskStatus.F0, None), (people["Y"], RiskStatus.F1, None)])
    answer = requests.post(server.url + "/admin/api/login",
                           json={"username": "tracer1", "password": "correct horse battery"}, timeout=10).json()
    headers = {"Authorization": f"Bearer {answer['token']}", "X-CSRF-Token": answer["csrf_token"]}
    until = (datetime.now(UTC) + timedelta(days=14)).date().isoformat()
    dcc = traced_holder(citizen_id=None, uci=DCC_UCI, key=settings.identifier_key).hex()
    chosen = [people["X"].hex(), people["Y"].hex(), people["F0"].hex(), dcc]
    dry = requests.post(server.url + "/admin/api/trace/publish", headers=headers, timeout=10,
                        json={"holders": chosen, "until": until, "dry_run": True}).json()
    assert dry["new"] == [people["X"].hex()] and dry["changed"] == [people["Y"].hex()]  # Y gets an end date
    assert dry["unlistable"] == [dcc]  # a keyed certificate value: no device could look it up
    assert dry["kept"] == [people["F0"].hex()] and dry["version"] == 1  # F0 stays F0; nothing published yet
    done = requests.post(server.url + "/admin/api/trace/publish", headers=headers, timeout=10,
                         json={"holders": chosen, "until": until, "dry_run": False}).json()
    assert done["version"] == 2
    device = RiskStore.open(tmp_path / "device-risk", [settings.publisher_key.public_key()])
    for blob in RiskPublisher(settings.data_dir / "risk", settings.publisher_key).updates_for(0):
        device.apply(blob)  # what every checkpoint installs at its next sync
    today = datetime.now(UTC).date()
    listed = device.lookup(people["X"], today)
    assert listed is not None and listed.status == RiskStatus.F1 and listed.until.isoformat() == until
    assert device.lookup(people["F0"], today).status == RiskStatus.F0
    viewer = requests.post(server.url + "/admin/api/login",
                           json={"username": "viewer1", "password": "correct horse battery"}, timeout=10).json()
    as_viewer = {"Authorization": f"Bearer {viewer['token']}", "X-CSRF-Token": viewer["csrf_token"]}
    refused = requests.post(server.url + "/admin/api/trace/publish", timeout=10, headers=as_viewer,
                            json={"holders": chosen, "until": until, "dry_run": False})
    assert refused.status_code == 403


def _rows_of(result: dict) -> list[dict[str, str]]:
    """The CSV rows an export of this trace answer must hold, as csv.DictReader reads them."""
    visits = [{"row": "visit", "holder": result["holder"], "checkpoint_id": v["checkpoint_id"],
               "device_id": v["device_id"], "at": v["at"], "decision": v["decision"], "closest_min": "",
               "times": "", "checkpoints": ""} for v in result["visits"]]
    contacts = [{"row": "contact", "holder": c["holder"], "checkpoint_id": "", "device_id": "", "at": "",
                 "decision": "", "closest_min": str(c["closest_min"]), "times": str(c["times"]),
                 "checkpoints": " ".join(f"{k}:{n}" for k, n in c["checkpoints"].items())} for c in result["contacts"]]
    return visits + contacts


def test_export_is_the_tracers_alone_audited_and_matches_the_trace(traced_server, tmp_path: Path):
    import csv
    import io

    settings, server, people = traced_server
    query = {"citizen_id": "001090000000", "since": (T0 - timedelta(hours=2)).isoformat(),
             "until": (T0 + timedelta(hours=2)).isoformat(), "window_min": 30}
    for user in ("viewer1", "operator1"):
        refused = requests.post(server.url + "/admin/api/trace/export", json={**query, "format": "csv"},
                                headers=_login(server, user), timeout=10)
        assert refused.status_code == 403 and people["F0"].hex() not in refused.text
    tracer = _login(server, "tracer1")
    shown = requests.post(server.url + "/admin/api/trace", json=query, headers=tracer, timeout=10).json()
    exported = requests.post(server.url + "/admin/api/trace/export", json={**query, "format": "csv"},
                             headers=tracer, timeout=10)
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.headers["content-disposition"].startswith("attachment; filename=\"trace-")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows == _rows_of(shown) and [r["holder"] for r in rows] == [people["F0"].hex(), people["X"].hex()]
    assert rows[1]["closest_min"] == "10.0" and rows[1]["times"] == "2" and rows[1]["checkpoints"] == "HN-A:2"
    as_json = requests.post(server.url + "/admin/api/trace/export", json={**query, "format": "json"},
                            headers=tracer, timeout=10)
    assert as_json.status_code == 200 and as_json.json() == shown
    bad = requests.post(server.url + "/admin/api/trace/export", json={**query, "format": "xlsx"},
                        headers=tracer, timeout=10)
    assert bad.status_code == 422 and "format" in bad.json()["detail"]

    out = tmp_path / "contacts.csv"
    cli = CliRunner().invoke(main, ["trace", "--data-dir", str(settings.data_dir), "--db", settings.db_url,
                                    "--citizen-id", "001090000000",
                                    "--since", query["since"], "--until", query["until"], "--csv", str(out)])
    assert cli.exit_code == 0, cli.output
    assert list(csv.DictReader(io.StringIO(out.read_text()))) == rows and out.stat().st_mode & 0o077 == 0

    trail = _trail(settings)
    exports = [e for e in trail if e.action == "trace_export"]
    by_api = [e for e in exports if e.actor == "user:tracer1"]
    assert [e.outcome for e in by_api] == ["refused", "ok", "ok"]  # newest first: the bad format, json, csv
    for entry in by_api[1:]:
        assert entry.target == people["F0"].hex() and entry.at
        assert entry.detail == f"{query['since']}..{query['until']} ±30 min: 1 visits, 1 contacts"
    assert any(e.actor.startswith("cli:") and e.detail.endswith("1 visits, 1 contacts as CSV") for e in exports)
    denied = {e.actor for e in trail if e.action == "denied:trace" and e.target == "/admin/api/trace/export"}
    assert denied == {"user:viewer1", "user:operator1"}
    assert "001090000000" not in str([(e.target, e.detail) for e in trail])  # the citizen id is never kept
