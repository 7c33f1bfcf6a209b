"""The lists a device decides with, attacked as an attacker would: every pass format meets the risk
list, holder ids do not enumerate, an edited store is refused at open and repaired by the next sync,
nothing older than what was installed is installed again, and a policy is only for its checkpoints.

Everything here runs on real files (the device's store, list files and floor on disk) and, for the
sync paths, a real central server on loopback.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import token_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.cli.provision import ServerKeys, device_config, write_bundle
from edge.config import load_config
from edge.device.appliance import Appliance
from edge.devtools.hc1_issuer import DocumentSigner, issue_hc1, vaccination_payload
from edge.devtools.memory_risk import MemoryRiskList
from edge.lists.policy import default_policy, sign_policy
from edge.lists.risk_store import RiskStore
from edge.lists.version_floor import VersionFloor
from edge.passes.cp1 import issue_cp1
from edge.passes.credential import PassKind, Vaccination
from edge.passes.issuer import IssuerKey
from edge.passes.trust import TrustStore, build_trust_envelope
from edge.scan.clock import FixedClock
from edge.scan.light import Fault
from edge.scan.verifier import Verifier
from edge.verdict import Decision, Reason
from sync.server.app import create_app
from sync.server.publish.risk import RiskPublisher
from sync.server.publish.risk_inputs import parse_row
from sync.server.runner import ServerThread
from sync.server.settings import ServerSettings, init_data_dir
from sync.wire.identifiers import IdentifierKey, holder_hash
from sync.wire.protocol import API
from sync.wire.risk.segment import Segment
from sync.wire.risk.types import Coverage

NOW = datetime.now(UTC).replace(microsecond=0)
F0_ID = "001090123456"  # province 001, century/sex 0, born '90, serial 123456
F0_UCI = "URN:UVCI:01:VN:7Q3K9M2X8D4F1B6C"
COVERS_VN = Coverage.parse(["CP1:*", "HC1:VN"])
SINCE = NOW - timedelta(days=30)
ISSUER = IssuerKey.generate("VN-HN-CDC", "EdDSA", not_before=SINCE)
DSC_VN = DocumentSigner.generate("VN", "ES256", not_before=SINCE)
DSC_DE = DocumentSigner.generate("DE", "ES256", not_before=SINCE)


def _cp1(id_key: IdentifierKey, citizen: str, zone: str = "hn-zone-1", kind: PassKind = PassKind.RESIDENT) -> str:
    return issue_cp1(ISSUER, kind, holder_hash(citizen, id_key), expires_at=NOW + timedelta(days=30),
                     issued_at=NOW - timedelta(days=1), zones=(zone,),
                     vaccination=Vaccination(2, 2, (NOW - timedelta(days=60)).date()))


def _dcc(dsc: DocumentSigner, uci: str | None = None) -> str:
    payload = vaccination_payload(family_name="Lê", given_name="Văn Cường", date_of_birth=date(1990, 2, 9), dose=2,
                                  series=2, last_dose=(NOW - timedelta(days=90)).date(), country=dsc.country)
    if uci:
        payload["v"][0]["ci"] = uci
    return issue_hc1(dsc, payload, issued_at=NOW - timedelta(days=10))


def _f0_rows() -> list[dict[str, str]]:
    return [{"id": F0_ID, "uci": F0_UCI, "status": "F0"}]


def _publish_f0(publisher: RiskPublisher, id_key: IdentifierKey, at: datetime = NOW) -> int:
    changes = [c for n, row in enumerate(_f0_rows(), 1) for c in parse_row(row, f"row {n}", [id_key])]
    return publisher.publish(changes, at)


def _device_store(tmp_path: Path, publisher: RiskPublisher, key: Ed25519PrivateKey) -> RiskStore:
    store = RiskStore.open(tmp_path / "card" / "risk", [key.public_key()], VersionFloor(tmp_path / "card/v.json"))
    for blob in publisher.updates_for(store.version):
        store.apply(blob)
    return store


def _verifier(risk, policy=None) -> Verifier:
    trust = TrustStore([ISSUER.trusted_key(), DSC_VN.trusted_key(), DSC_DE.trusted_key()])
    return Verifier(trust=trust, risk=risk, policy=policy or default_policy(), clock=FixedClock(NOW))


# ---------------------------------------------------------------------------- every format meets the list
def test_f0_person_is_refused_with_cp1_and_with_their_vaccine_passport(tmp_path: Path) -> None:
    """Vietnam 2022: the same F0 person got REFUSE with the CP1 pass and PASS with the HC1 passport."""
    key, id_key = Ed25519PrivateKey.generate(), IdentifierKey.generate()
    publisher = RiskPublisher(tmp_path / "central", key, coverage=COVERS_VN)
    _publish_f0(publisher, id_key)
    verifier = _verifier(_device_store(tmp_path, publisher, key))
    cp1 = verifier.verify(_cp1(id_key, F0_ID))
    hc1 = verifier.verify(_dcc(DSC_VN, F0_UCI))
    assert (cp1.decision, cp1.reason) == (Decision.REFUSE, Reason.RISK_F0)
    assert (hc1.decision, hc1.reason, hc1.format) == (Decision.REFUSE, Reason.RISK_F0, "HC1")
    other = verifier.verify(_dcc(DSC_VN))  # someone else's VN passport: covered, not listed
    assert (other.decision, other.reason) == (Decision.PASS, Reason.OK)


def test_a_pass_the_list_does_not_cover_is_check_unless_the_policy_says_otherwise(tmp_path: Path) -> None:
    key, id_key = Ed25519PrivateKey.generate(), IdentifierKey.generate()
    publisher = RiskPublisher(tmp_path / "central", key, coverage=COVERS_VN)
    _publish_f0(publisher, id_key)
    store = _device_store(tmp_path, publisher, key)
    assert store.coverage == COVERS_VN  # what the list covers comes from its signed head
    german = _dcc(DSC_DE)
    verdict = _verifier(store).verify(german)
    assert (verdict.decision, verdict.reason) == (Decision.CHECK, Reason.RISK_NOT_COVERED)
    waiving = default_policy().model_copy(update={"risk_coverage_waived_for": ["HC1:DE"]})
    assert _verifier(store, waiving).verify(german).decision is Decision.PASS
    # a list that says nothing about DCCs: never PASS by omission
    cp1_only = MemoryRiskList({}, published_at=NOW, coverage=Coverage.parse(["CP1:*"]))
    assert _verifier(cp1_only).verify(_dcc(DSC_VN)).reason is Reason.RISK_NOT_COVERED


def test_a_list_must_say_what_it_covers(tmp_path: Path) -> None:
    from sync.server.publish.risk import RiskPublishError

    with pytest.raises(RiskPublishError, match="covers"):
        RiskPublisher(tmp_path / "central", Ed25519PrivateKey.generate()).publish([], NOW)


# ---------------------------------------------------------------------------- keyed identifiers
def _old_unkeyed(citizen_id: str) -> bytes:
    return hashlib.sha256(f"CP1-holder-v1:{citizen_id}".encode()).digest()[:16]


def test_enumerating_citizen_ids_against_a_card_finds_nobody_without_the_key(tmp_path: Path) -> None:
    """The attack: province, century and birth-year prefix, then every serial, hashed and compared
    with the keys in the card's risk segments. Without the identifier key nothing matches."""
    key, id_key = Ed25519PrivateKey.generate(), IdentifierKey.generate()
    publisher = RiskPublisher(tmp_path / "central", key, coverage=COVERS_VN)
    _publish_f0(publisher, id_key)
    _device_store(tmp_path, publisher, key)
    on_card = set()
    for path in (tmp_path / "card" / "risk").glob("seg-*.bin"):
        on_card |= {bytes(k) for k in Segment(path).records()["key"]}
    assert len(on_card) == 2  # the F0 id and the F0 passport's UCI
    candidates = [f"0010 90{serial:06d}".replace(" ", "") for serial in range(100_000, 200_000)]
    assert F0_ID in candidates
    guessed_key = IdentifierKey.generate()
    assert not any(_old_unkeyed(c) in on_card for c in candidates)
    assert not any(holder_hash(c, guessed_key) in on_card for c in candidates)
    # the same enumeration with the key finds the person: the test would notice an unkeyed scheme
    assert [c for c in candidates if holder_hash(c, id_key) in on_card] == [F0_ID]


def test_identifier_key_file_is_private_and_checked(tmp_path: Path) -> None:
    from sync.wire.identifiers import IdentifierKeyError

    key = IdentifierKey.generate()
    key.save(tmp_path / "holder_id.key")
    assert (tmp_path / "holder_id.key").stat().st_mode & 0o777 == 0o600
    assert IdentifierKey.load(tmp_path / "holder_id.key") == key
    (tmp_path / "holder_id.key").chmod(0o644)
    with pytest.raises(IdentifierKeyError, match="readable by others"):
        IdentifierKey.load(tmp_path / "holder_id.key")
    (tmp_path / "bad.key").write_text("not a key\n")
    (tmp_path / "bad.key").chmod(0o600)
    with pytest.raises(IdentifierKeyError, match="not an identifier key"):
        IdentifierKey.load(tmp_path / "bad.key")


# ---------------------------------------------------------------------------- a device on loopback
@dataclass
class World:
    settings: ServerSettings
    url: str
    config_path: Path
    published: Path

    @property
    def key(self) -> Ed25519PrivateKey:
        assert self.settings.publisher_key is not None
        return self.settings.publisher_key

    @property
    def id_key(self) -> IdentifierKey:
        assert self.settings.identifier_key is not None
        return self.settings.identifier_key

    def publish_trust(self, version: int, issuers: list[IssuerKey]) -> None:
        keys = [i.trusted_key() for i in issuers] + [DSC_VN.trusted_key()]
        (self.published / "trust.cpenv").write_bytes(build_trust_envelope(keys, self.key, version=version))

    def publish_policy(self, version: int, zone: str, checkpoints: tuple[str, ...]) -> None:
        (self.published / "policy.cpenv").write_bytes(
            sign_policy(default_policy(zone, version, checkpoints), self.key))

    def appliance(self) -> Appliance:
        appliance = Appliance(load_config(self.config_path))
        assert appliance.sync is not None
        return appliance


@pytest.fixture
def world(tmp_path: Path):
    settings = init_data_dir(tmp_path / "server")
    token = token_for(settings.db_url, "DEV-1")
    published = tmp_path / "server" / "published"
    published.mkdir(parents=True)
    (tmp_path / "frames").mkdir()
    assert settings.publisher_key is not None and settings.identifier_key is not None
    _publish_f0(RiskPublisher(tmp_path / "server" / "risk", settings.publisher_key, coverage=COVERS_VN),
                settings.identifier_key)
    with ServerThread(create_app(settings)) as server:
        config = device_config("DEV-1", checkpoint="red-gate-1", server_url=server.url, etc_dir=tmp_path / "device",
                               data_dir=tmp_path / "device", overrides={
                                   "device": {"groups": ["hn-red"]},
                                   "camera": {"source": "replay", "path": str(tmp_path / "frames")},
                                   "light": {"backend": "none"},
                                   "clock": {"backend": "fixed", "fixed_at": NOW.isoformat()}})
        write_bundle(tmp_path / "device", config, ServerKeys.from_server_data(tmp_path / "server"), token)
        w = World(settings, server.url, tmp_path / "device" / "config.toml", published)
        w.publish_trust(1, [ISSUER])
        w.publish_policy(1, "hn-red", ("hn-red",))
        first = w.appliance()
        first.sync.enroll(token)
        synced = first.sync.sync_until_done(deadline_s=30)
        assert synced.errors == [] and len(synced.installed) == 3, synced
        first.close()
        yield w


def _risk_manifest(world: World) -> Path:
    config = load_config(world.config_path)
    return config.resolve(config.risk.path) / "manifest.json"


def _edit_manifest(world: World, **changes: object) -> None:
    path = _risk_manifest(world)
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _swap_two_records(world: World) -> None:
    segment = next(_risk_manifest(world).parent.glob("seg-*.bin"))
    raw = bytearray(segment.read_bytes())
    size = len(raw)
    first, second = size - 2 * 19, size - 19  # the last two records (19 bytes each)
    raw[first:second], raw[second:] = raw[second:], raw[first:second]
    segment.write_bytes(bytes(raw))


def _shorten_the_index(world: World) -> None:
    """The prefix index says the last bucket ends one record early: a lookup would miss that key."""
    segment = next(_risk_manifest(world).parent.glob("seg-*.bin"))
    raw = bytearray(segment.read_bytes())
    entries = int.from_bytes(raw[8:16], "little")
    bits = raw[16]
    last = 32 + 4 * (1 << bits)  # the index's final offset (= entries)
    raw[last:last + 4] = (entries - 1).to_bytes(4, "little")
    segment.write_bytes(bytes(raw))


@pytest.mark.parametrize("tamper", [
    pytest.param(lambda w: _edit_manifest(w, segments=[]), id="empty segment list"),
    pytest.param(lambda w: _edit_manifest(w, published_at=int((NOW + timedelta(days=400)).timestamp())),
                 id="published_at edited"),
    pytest.param(lambda w: _edit_manifest(w, version=2**62), id="huge version"),
    pytest.param(_swap_two_records, id="records reordered"),
    pytest.param(_shorten_the_index, id="prefix index edited"),
])
def test_an_edited_store_is_refused_loudly_and_repaired_by_the_next_sync(world: World, tamper, caplog) -> None:
    """One edit of the card's risk store used to make the demo device PASS the F0 case with nothing
    logged, keep a stale list looking fresh, or block every later update."""
    tamper(world)
    f0_pass = _cp1(world.id_key, F0_ID, zone="hn-red", kind=PassKind.OFFICIAL)
    caplog.set_level(logging.ERROR)
    appliance = world.appliance()
    try:
        verdict = appliance.verifier.verify(f0_pass)
        assert (verdict.decision, verdict.reason) == (Decision.CHECK, Reason.RISK_LIST_DAMAGED)
        assert Fault.LIST_DAMAGED in {f for probe in appliance.health_probes() for f in probe()}
        refused = [r.getMessage() for r in caplog.records if "event=risk_store_refused" in r.getMessage()]
        assert refused and "action=" in refused[0] and "next sync" in refused[0]
        result = appliance.sync.run_once()  # the next sync repairs it with a full signed snapshot
        assert ("risk", 1) in result.installed
        assert appliance.verifier.risk.refused is None
        verdict = appliance.verifier.verify(f0_pass)
        assert (verdict.decision, verdict.reason) == (Decision.REFUSE, Reason.RISK_F0)
        assert Fault.LIST_DAMAGED not in {f for probe in appliance.health_probes() for f in probe()}
        # and later updates still arrive (a huge version in the manifest used to block them forever)
        _publish_f0(RiskPublisher(world.settings.data_dir / "risk", world.key), world.id_key,
                    at=NOW + timedelta(minutes=5))
        assert ("risk", 2) in appliance.sync.run_once().installed
    finally:
        appliance.close()


# ---------------------------------------------------------------------------- anti-rollback
class ManInTheMiddle:
    """A hostile HTTP server on loopback: answers ``GET <path>`` with a fixed blob whatever the
    device says it has (``?have=``), and 204 to every other request."""

    def __init__(self, path: str, blob: bytes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == path:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(blob)))
                    self.end_headers()
                    self.wfile.write(blob)
                else:
                    self.send_response(204)
                    self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_damaged_trust_file_does_not_let_an_older_signed_list_back_in(world: World) -> None:
    """Trust v2 withdrew a leaked issuer key. The device's trust file is then damaged, and the
    server (or a man in the middle) serves the older, validly signed v1 again."""
    leaked = ISSUER
    replacement = IssuerKey.generate("VN-HN-CDC-2", "EdDSA", not_before=SINCE)
    world.publish_trust(1, [leaked])
    v1 = (world.published / "trust.cpenv").read_bytes()
    world.publish_trust(2, [replacement])
    appliance = world.appliance()
    try:
        assert ("trust", 2) in appliance.sync.run_once().installed
        config = appliance.config
        trust_file = config.resolve(config.trust.path)
        trust_file.write_bytes(trust_file.read_bytes()[:40])  # damaged on the card
        mitm = ManInTheMiddle(f"{API}/trust", v1)  # the old list is served again, whatever the device has
        appliance.sync.server_url = mitm.url
        try:
            result = appliance.sync.run_once()
        finally:
            mitm.close()
            appliance.sync.server_url = world.url
        assert ("trust", 1) not in result.installed
        assert any("trust" in e and "older than version 2" in e for e in result.errors)
        assert trust_file.read_bytes() != v1
        assert VersionFloor(config.resolve(config.lists.versions_path)).get("trust") == 2
    finally:
        appliance.close()
    # a card restored with the old v1 file is refused at load as well: the leaked key signs nothing
    trust_file.write_bytes(v1)
    restarted = world.appliance()
    try:
        leaked_pass = _cp1(world.id_key, "001090000042", zone="hn-red", kind=PassKind.OFFICIAL)
        assert restarted.verifier.verify(leaked_pass).decision is not Decision.PASS
        assert restarted.verifier.lists_refused is not None and "older" in restarted.verifier.lists_refused
        assert Fault.LIST_DAMAGED in {f for probe in restarted.health_probes() for f in probe()}
        (world.published / "trust.cpenv").write_bytes(build_trust_envelope(
            [replacement.trusted_key(), DSC_VN.trusted_key()], world.key, version=2))
        assert ("trust", 2) in restarted.sync.run_once().installed  # repaired by the same version
        assert restarted.verifier.lists_refused is None
    finally:
        restarted.close()


def test_a_risk_snapshot_older_than_the_installed_version_is_refused_after_damage(world: World) -> None:
    risk_dir = world.settings.data_dir / "risk"
    old_snapshot = RiskPublisher(risk_dir, world.key).snapshot()
    _publish_f0(RiskPublisher(risk_dir, world.key), world.id_key, at=NOW + timedelta(minutes=1))
    appliance = world.appliance()
    try:
        assert ("risk", 2) in appliance.sync.run_once().installed
        _edit_manifest(world, segments=[])
    finally:
        appliance.close()
    config = load_config(world.config_path)
    store = RiskStore.open(config.resolve(config.risk.path), [world.key.public_key()],
                           VersionFloor(config.resolve(config.lists.versions_path)))
    assert store.refused and store.version == 0
    from sync.wire.risk.types import RiskUpdateError
    with pytest.raises(RiskUpdateError, match="older than version 2"):
        store.apply(old_snapshot)
    assert store.refused is not None


# ---------------------------------------------------------------------------- policies name checkpoints
def test_a_signed_policy_for_another_checkpoint_is_not_installed(world: World, caplog) -> None:
    """A red-area device was served a validly signed zone-1 policy, and passes it refused now PASSed."""
    resident = _cp1(world.id_key, "001090000077", zone="*")  # residents may not cross a red area
    appliance = world.appliance()
    try:
        assert appliance.verifier.policy_version == 1
        assert appliance.verifier.verify(resident).reason is Reason.ZONE_NOT_ALLOWED
        zone_one = sign_policy(default_policy("hn-zone-1", 2, ("hn-zone-1",)), world.key)
        caplog.set_level(logging.ERROR)
        mitm = ManInTheMiddle(f"{API}/policy", zone_one)  # validly signed, for other checkpoints
        appliance.sync.server_url = mitm.url
        try:
            result = appliance.sync.run_once()
        finally:
            mitm.close()
            appliance.sync.server_url = world.url
        assert ("policy", 2) not in result.installed
        logged = [r.getMessage() for r in caplog.records if "kind=policy" in r.getMessage()]
        assert logged and "not for checkpoint red-gate-1" in logged[0] and "action=" in logged[0]
        assert appliance.verifier.policy_version == 1
        assert appliance.verifier.verify(resident).reason is Reason.ZONE_NOT_ALLOWED
        world.publish_policy(2, "hn-zone-1", ("hn-zone-1",))  # the same from the real server
        assert ("policy", 2) not in appliance.sync.run_once().installed
        world.publish_policy(3, "hn-red", ("red-gate-1",))  # naming the checkpoint itself works too
        assert ("policy", 3) in appliance.sync.run_once().installed
    finally:
        appliance.close()
    # the zone-1 policy copied onto the card is refused at load: the device waits for a sync
    config = load_config(world.config_path)
    config.resolve(config.policy.path).write_bytes(
        sign_policy(default_policy("hn-zone-1", 4, ("hn-zone-1",)), world.key))
    restarted = world.appliance()
    try:
        assert restarted.verifier.policy_version is None  # not ready: CHECK until a sync installs one
        assert restarted.verifier.lists_refused is not None
        verdict = restarted.verifier.verify(resident)
        assert verdict.decision is not Decision.PASS
    finally:
        restarted.close()


def test_the_device_holds_no_identifier_key(world: World) -> None:
    """Passes and lists carry keyed values; the key stays with the issuer and the central server."""
    secret = world.id_key.secret
    device_dir = load_config(world.config_path).device.data_dir
    for path in device_dir.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            assert secret not in raw and secret.hex().encode() not in raw, path


def test_the_floor_only_moves_up_and_survives_two_writers(tmp_path: Path, caplog) -> None:
    path = tmp_path / "list-versions.json"
    store_side, client_side = VersionFloor(path), VersionFloor(path)
    store_side.raise_to("risk", 9)
    client_side.raise_to("trust", 4)  # its own view of "risk" is stale (0): the file must keep 9
    fresh = VersionFloor(path)
    assert (fresh.get("risk"), fresh.get("trust"), fresh.get("policy")) == (9, 4, 0)
    fresh.raise_to("risk", 3)
    assert VersionFloor(path).get("risk") == 9
    from edge.lists.version_floor import RollbackError
    with pytest.raises(RollbackError, match="older than version 9"):
        fresh.check("risk", 8)
    fresh.check("risk", 9)  # the same version may repair a damaged list
    path.write_text('{"risk": "lots"}')
    caplog.set_level(logging.ERROR)
    assert VersionFloor(path).get("risk") == 0
    assert any("event=version_floor_unreadable" in r.getMessage() and "action=" in r.getMessage()
               for r in caplog.records)
