"""EU value sets refreshed from the publisher: sealed by the CLI, served by the real server on
loopback, installed by the device's sync client into the running verifier; never older, never forged."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import token_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.cli import main
from edge.config import Config
from edge.device.appliance import LiveVerifier, checkpoint_identity, open_floor
from edge.device.sync_client import SyncClient
from edge.devtools.hc1_issuer import DocumentSigner, issue_hc1, vaccination_payload
from edge.lists.policy import default_policy, sign_policy
from edge.passes.trust import build_trust_envelope
from edge.passes.valuesets import COUNTRIES, TEST_DEVICES, VACCINE_MAH, ValueSets, shipped
from edge.scan.clock import FixedClock
from edge.verdict import Decision, Reason
from sync.server.app import create_app
from sync.server.runner import ServerThread
from sync.server.settings import ServerSettings
from sync.server.storage import open_storage
from sync.wire.keyfiles import save_private_key, save_public_key

NOW = datetime.now(UTC).replace(microsecond=0)
NEW_VACCINE = "ORG-100099999"  # a marketing authorisation holder the shipped sets do not know


def _eu_files(folder: Path, extra_vaccine: str | None) -> Path:
    """The sets as the EU publishes them: one JSON file per set, codes as keys of valueSetValues."""
    folder.mkdir(parents=True, exist_ok=True)
    for set_id in (COUNTRIES, VACCINE_MAH, TEST_DEVICES):
        codes = set(shipped().sets[set_id]) | ({extra_vaccine} if extra_vaccine and set_id == VACCINE_MAH else set())
        body = {"valueSetId": set_id, "valueSetDate": "2026-05-01",
                "valueSetValues": {code: {"display": code, "active": True} for code in sorted(codes)}}
        (folder / f"{set_id}.json").write_text(json.dumps(body), encoding="utf-8")
    return folder


def _seal(tmp: Path, key_file: Path, version: int, out: Path, extra_vaccine: str | None = NEW_VACCINE):
    return CliRunner().invoke(main, ["valuesets", "seal", str(_eu_files(tmp / f"eu-{version}", extra_vaccine)),
                                     "--publisher-key", str(key_file), "--version", str(version),
                                     "--out", str(out)])


@pytest.fixture
def world(tmp_path, scanlog, device_key, server_x25519, publisher_key):
    data = tmp_path / "server"
    (data / "published").mkdir(parents=True)
    key_file = tmp_path / "publisher.pem"
    save_private_key(key_file, publisher_key)
    device_dir = tmp_path / "device"
    save_public_key(device_dir / "keys/publisher_ed25519.pub.pem", publisher_key.public_key())
    signer = DocumentSigner.generate("VN", "ES256", not_before=NOW - timedelta(days=30))
    (device_dir / "trust.cpenv").write_bytes(build_trust_envelope([signer.trusted_key()], publisher_key, version=1))
    (device_dir / "policy.cpenv").write_bytes(sign_policy(default_policy(version=1), publisher_key))
    config = Config.model_validate({"device": {"id": "dev-1", "data_dir": str(device_dir),
                                               "groups": ["hn-zone-1"]}})
    floor = open_floor(config)
    verifier = LiveVerifier(config, FixedClock(NOW), [publisher_key.public_key()], floor)
    settings = ServerSettings(db_url=f"sqlite:///{data / 'db.sqlite'}", encryption_key=server_x25519,
                              publisher_key=publisher_key, data_dir=data)
    open_storage(settings.db_url, create=True).close()
    with ServerThread(create_app(settings)) as srv:
        client = SyncClient(srv.url, scanlog, device_key, checkpoint=checkpoint_identity(config), floor=floor,
                            publisher_keys=[publisher_key.public_key()],
                            valuesets_path=config.resolve(config.valuesets.path), on_installed=verifier.reload,
                            timeout_s=5)
        client.enroll(token_for(settings.db_url, scanlog.device_id))
        yield {"data": data, "client": client, "verifier": verifier, "signer": signer, "key_file": key_file,
               "tmp": tmp_path, "installed": config.resolve(config.valuesets.path)}


def _pass_with_new_vaccine(signer: DocumentSigner) -> str:
    payload = vaccination_payload(family_name="Tran", given_name="Binh", date_of_birth=date(1990, 1, 1), dose=2,
                                  series=2, last_dose=(NOW - timedelta(days=60)).date())
    payload["v"][0]["ma"] = NEW_VACCINE
    return issue_hc1(signer, payload, issued_at=NOW - timedelta(days=1))


def test_new_codes_stop_being_unknown_after_a_sync(world):
    text = _pass_with_new_vaccine(world["signer"])
    before = world["verifier"].verify(text)
    assert (before.decision, before.reason) == (Decision.CHECK, Reason.UNKNOWN_CODE)
    result = _seal(world["tmp"], world["key_file"], 3, world["data"] / "published/valuesets.cpenv")
    assert result.exit_code == 0 and "valuesets version=3" in result.output, result.output
    assert ("valuesets", 3) in world["client"].run_once().installed
    assert world["verifier"].current.value_sets_version == 3
    after = world["verifier"].verify(text)
    assert after.reason != Reason.UNKNOWN_CODE, after  # the value-set stage now knows the code
    assert world["client"].run_once().installed == []  # nothing newer: nothing installed


def test_older_or_forged_value_sets_are_never_installed(world, publisher_key):
    published = world["data"] / "published/valuesets.cpenv"
    assert _seal(world["tmp"], world["key_file"], 5, published).exit_code == 0
    world["client"].run_once()
    good = world["installed"].read_bytes()
    # an older list (without the new code) served again: refused, the installed one is kept
    older = ValueSets.from_eu_files(sorted(_eu_files(world["tmp"] / "old", None).glob("*.json")), 4)
    published.write_bytes(older.sign_envelope(publisher_key))
    result = world["client"].run_once()
    assert result.installed == [] and world["installed"].read_bytes() == good
    # a newer version signed by someone else: refused with a reason
    published.write_bytes(older.__class__(older.sets, 9).sign_envelope(Ed25519PrivateKey.generate()))
    result = world["client"].run_once()
    assert result.installed == [] and any(e.startswith("valuesets:") for e in result.errors)
    assert world["installed"].read_bytes() == good
    assert world["verifier"].current.value_sets_version == 5
    # the installed file damaged, an older list served: the floor kept apart from the file (5) still
    # bars it; only version 5 or newer may repair the file
    world["installed"].write_bytes(b"damaged")
    published.write_bytes(older.sign_envelope(publisher_key))
    assert world["client"].run_once().installed == [] and world["installed"].read_bytes() == b"damaged"
    published.write_bytes(good)
    assert world["client"].run_once().installed == [("valuesets", 5)]


def test_incomplete_list_cannot_be_sealed(tmp_path, publisher_key):
    key_file = tmp_path / "publisher.pem"
    save_private_key(key_file, publisher_key)
    folder = _eu_files(tmp_path / "eu", None)
    (folder / f"{COUNTRIES}.json").unlink()
    result = CliRunner().invoke(main, ["valuesets", "seal", str(folder), "--publisher-key", str(key_file),
                                       "--version", "2", "--out", str(tmp_path / "v.cpenv")])
    assert result.exit_code == 1 and "lacks country-2-codes" in result.output
    assert not (tmp_path / "v.cpenv").exists()


def test_damaged_or_rolled_back_list_falls_back_to_the_shipped_sets(tmp_path, publisher_key):
    from edge.device.appliance import load_value_sets

    device_dir = tmp_path / "device"
    device_dir.mkdir()
    config = Config.model_validate({"device": {"id": "dev-1", "data_dir": str(device_dir)}})
    floor = open_floor(config)
    path = config.resolve(config.valuesets.path)
    path.write_bytes(b"\x00damaged")
    assert load_value_sets(config, [publisher_key.public_key()], floor) is shipped()
    path.write_bytes(ValueSets(shipped().sets, 7).sign_envelope(publisher_key))
    assert load_value_sets(config, [publisher_key.public_key()], floor).version == 7
    assert floor.get("valuesets") == 7  # the floor, kept apart from the list, remembers it
    path.write_bytes(ValueSets(shipped().sets, 6).sign_envelope(publisher_key))  # an older signed list put back
    assert load_value_sets(config, [publisher_key.public_key()], floor) is shipped()
