"""Prometheus ``/metrics`` over real HTTP: ingest counters, fleet gauges, errors by code."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import requests
from conftest import append_samples
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client.parser import text_string_to_metric_families
from test_server_migrations import device_log, raw
from test_sync_push import make_client

from edge.devtools.server_procs import raw_public_key
from edge.verdict import Decision, Reason, Verdict
from sync.server.app import create_app
from sync.server.ingest import ingest
from sync.server.runner import ServerThread
from sync.server.settings import ServerSettings
from sync.server.storage import open_storage
from sync.wire.protocol import API, HEADER_DEVICE, HEADER_SIGNATURE, b64, request_signing_bytes
from sync.wire.sealed import HolderOpener


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    resp = requests.get(url + "/metrics", timeout=5)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(resp.text) for s in fam.samples}


def signed_push(url: str, key, body: bytes, device: str = "dev-1") -> requests.Response:
    sig = b64(key.sign(request_signing_bytes("POST", f"{API}/push", body)))
    return requests.post(url + f"{API}/push", data=body, timeout=5, headers={HEADER_DEVICE: device,
                                                                             HEADER_SIGNATURE: sig})


def test_metrics_count_ingest_fleet_backlog_and_errors(db_url, server_x25519, scanlog, device_key):
    settings = ServerSettings(db_url=db_url, encryption_key=server_x25519)
    with ServerThread(create_app(settings)) as srv:
        before = scrape(srv.url)
        assert before[("checkpoint_devices_enrolled", ())] == 0
        assert before[("checkpoint_ingest_records_total", ())] == 0

        storage = srv._server.config.app.state.storage
        storage.enroll("dev-1", raw_public_key(device_key))
        client = make_client(srv.url, scanlog, device_key)
        append_samples(scanlog, 30)
        client.push()
        # a second, silent device: enrolled, never pushed
        storage.enroll("dev-2", raw_public_key(Ed25519PrivateKey.generate()))
        records = scanlog.records()
        # resent batch: duplicates, not stored again
        assert signed_push(srv.url, device_key, json.dumps({"device_id": "dev-1", "records": records[:10]})
                           .encode()).json()["duplicates"] == 10
        # records 36..40 arrive while 31..35 are still on the device: held beyond a gap (the backlog)
        append_samples(scanlog, 10, start=30)
        later = scanlog.records(36)
        assert signed_push(srv.url, device_key, json.dumps({"device_id": "dev-1", "records": later}).encode()).ok
        # errors: a forged signature, an altered record
        forged = requests.post(srv.url + f"{API}/push", data=b"{}", timeout=5,
                               headers={HEADER_DEVICE: "dev-1", HEADER_SIGNATURE: b64(bytes(64))})
        assert forged.status_code == 401
        altered = [dict(records[0], reason="forged")]
        assert signed_push(srv.url, device_key, json.dumps({"device_id": "dev-1", "records": altered})
                           .encode()).status_code == 409
        assert requests.get(srv.url + "/no-such-page", timeout=5).status_code == 404

        m = scrape(srv.url)
    assert m[("checkpoint_ingest_records_total", ())] == 35
    assert m[("checkpoint_ingest_duplicates_total", ())] == 10
    assert m[("checkpoint_ingest_batches_total", ())] >= 3
    assert m[("checkpoint_devices_enrolled", ())] == 2
    assert m[("checkpoint_devices_online", ())] == 1
    assert m[("checkpoint_devices_silent", ())] == 1
    assert m[("checkpoint_records_held_beyond_gap", ())] == 5
    assert m[("checkpoint_records_ingested", ())] == 35
    push = f"{API}/push"
    assert m[("checkpoint_http_errors_total", (("error", "unauthorized"), ("route", push)))] == 1
    assert m[("checkpoint_http_errors_total", (("error", "record_altered"), ("route", push)))] == 1
    assert m[("checkpoint_http_requests_total", (("route", push), ("status", "401")))] == 1
    # an unknown URL is counted under one bounded label, not one label per URL
    assert m[("checkpoint_http_requests_total", (("route", "other"), ("status", "404")))] == 1
    assert m[("checkpoint_http_request_seconds_count", (("route", push),))] >= 5


def test_backlog_counts_the_current_epoch_only(db_url, tmp_path, server_x25519):
    """After a fork (a restored card), the records of the earlier epoch are not a backlog: the gauge
    reads the current epoch beyond its acked seq, not records - acked_seq (which would say 5 here)."""
    opener = HolderOpener(server_x25519)
    storage = open_storage(db_url)
    everyone = {"online_since": "2000-01-01", "silent_before": "2000-01-01"}
    try:
        storage.enroll("dev-f", raw(Ed25519PrivateKey.generate()))
        first = device_log(tmp_path, "dev-f", server_x25519, datetime(2026, 3, 1, tzinfo=UTC), 5)
        (tmp_path / "restored").mkdir()
        restored = device_log(tmp_path / "restored", "dev-f", server_x25519, datetime(2026, 4, 1, tzinfo=UTC), 5)
        ingest(storage, opener, "dev-f", first.records())
        assert ingest(storage, opener, "dev-f", restored.records()).epoch == 1
        stats = storage.ops_stats(**everyone)
        assert (stats.records, stats.held_beyond_gap) == (10, 0)
        restored.append_many([(Verdict(Decision.CHECK, Reason.NOT_A_PASS), datetime(2026, 4, 9, tzinfo=UTC),
                               9.0 + i, True, 1, 2) for i in range(3)])
        ingest(storage, opener, "dev-f", restored.records(7))  # seqs 7, 8 arrive while 6 is missing
        assert storage.ops_stats(**everyone).held_beyond_gap == 2
    finally:
        storage.close()
