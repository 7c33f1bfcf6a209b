"""Per-checkpoint policies: profiles sealed per registry checkpoint by ``checkpoint policy publish``,
served by a real server process to each device by its identity, installed by the real sync client
only when they name the device's checkpoint."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import token_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.cli import main
from edge.devtools.server_procs import ServerProcess
from edge.lists.policy import CheckpointIdentity, PolicyProfile, default_policy, load_policy_file, sign_policy
from edge.lists.version_floor import VersionFloor
from edge.scan.scanlog import ScanLog
from sync.server.published import published_lists
from sync.server.settings import ServerSettings, init_data_dir
from sync.wire.keyfiles import load_ed25519_private

CSV = """checkpoint_id,name,province,zone,policy
HN-001,Cầu Nhật Tân,Hà Nội,hn-zone-1,zone1-entry
HN-002,Cầu Chương Dương,Hà Nội,hn-zone-1,zone1-entry
HN-003,Thanh Xuân (vùng đỏ),Hà Nội,hn-red,red-area
HN-004,Ngã Tư Sở,Hà Nội,hn-zone-2,
"""


def _profile(zone: str, **changes) -> str:
    policy = default_policy(zone)
    body = policy.model_dump(mode="json", exclude={"version", "checkpoints", "name"})
    return json.dumps({**body, **changes})


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.fixture
def fleet(tmp_path: Path, server_x25519):
    data = tmp_path / "server"
    settings = init_data_dir(data)
    (tmp_path / "checkpoints.csv").write_text(CSV, encoding="utf-8")
    assert _cli("server", "--data-dir", str(data), "registry", str(tmp_path / "checkpoints.csv"))[0] == 0
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "zone1-entry.json").write_text(_profile("hn-zone-1"))
    (profiles / "red-area.json").write_text(_profile("hn-red"))
    # a fleet-wide policy from before per-checkpoint policies (devices may have installed version 4)
    key = load_ed25519_private(data / "keys/publisher_ed25519.pem")
    (data / "published").mkdir(exist_ok=True)
    (data / "published/policy.cpenv").write_bytes(
        sign_policy(default_policy("hn-zone-2", version=4, checkpoints=("hn-zone-2",)), key))
    with ServerProcess(data, settings.db_url) as srv:
        srv.wait_ready()
        yield {"data": data, "profiles": profiles, "url": srv.url, "db": settings.db_url, "key": key,
               "tmp": tmp_path, "x25519": server_x25519}


def _device(fleet: dict, device_id: str, checkpoint: str, groups: tuple[str, ...] = ()):
    from edge.device.sync_client import SyncClient

    folder = fleet["tmp"] / device_id
    folder.mkdir()
    log = ScanLog(folder / "scanlog.sqlite", device_id=device_id, boot_id="boot-a",
                  server_encryption_key=fleet["x25519"].public_key())
    client = SyncClient(fleet["url"], log, Ed25519PrivateKey.generate(),
                        checkpoint=CheckpointIdentity(checkpoint, groups), floor=VersionFloor(folder / "floor.json"),
                        publisher_keys=[fleet["key"].public_key()], policy_path=folder / "policy.cpenv", timeout_s=5)
    client.enroll(token_for(fleet["db"], device_id))
    return client


def _installed(client) -> tuple[int, list[str], str]:
    policy = load_policy_file(client.policy_path, client.publisher_keys, client.checkpoint)
    return policy.version, policy.checkpoints, policy.checkpoint_zone


def test_each_device_gets_its_checkpoints_policy_and_a_profile_change_reaches_only_its_checkpoints(fleet):
    data, profiles = fleet["data"], fleet["profiles"]
    code, out = _cli("policy", "publish", "--profiles", str(profiles), "--data-dir", str(data), "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["fleet_wide"] == 1
    assert {c["checkpoint_id"]: (c["profile"], c["version"]) for c in report["checkpoints"]} == {
        "HN-001": ("zone1-entry", 5), "HN-002": ("zone1-entry", 5), "HN-003": ("red-area", 5)}  # above the fleet's 4
    devices = {"HN-001-1": _device(fleet, "HN-001-1", "HN-001"), "HN-002-1": _device(fleet, "HN-002-1", "HN-002"),
               "HN-003-1": _device(fleet, "HN-003-1", "HN-003"),
               "HN-004-1": _device(fleet, "HN-004-1", "HN-004", ("hn-zone-2",))}
    for client in devices.values():
        result = client.run_once()
        assert result.errors == [] and result.installed
    assert _installed(devices["HN-001-1"]) == (5, ["HN-001"], "hn-zone-1")
    assert _installed(devices["HN-002-1"]) == (5, ["HN-002"], "hn-zone-1")
    assert _installed(devices["HN-003-1"]) == (5, ["HN-003"], "hn-red")
    assert _installed(devices["HN-004-1"]) == (4, ["hn-zone-2"], "hn-zone-2")  # no profile: the fleet-wide one

    # publishing again without a change seals nothing
    code, out = _cli("policy", "publish", "--profiles", str(profiles), "--data-dir", str(data))
    assert code == 0 and "0 checkpoint policy(ies) sealed" in out, out
    # the red area lets goods drivers through only with a test of the last 24 hours now
    (profiles / "red-area.json").write_text(_profile("hn-red", test_validity_hours=24))
    code, out = _cli("policy", "publish", "--profiles", str(profiles), "--data-dir", str(data))
    assert code == 0, out
    assert "profile red-area: 1 checkpoint(s), sealed 1, unchanged 0" in out
    assert "profile zone1-entry: 2 checkpoint(s), sealed 0, unchanged 2" in out
    results = {d: c.run_once() for d, c in devices.items()}
    assert results["HN-003-1"].installed == [("policy", 6)]
    assert [results[d].installed for d in ("HN-001-1", "HN-002-1", "HN-004-1")] == [[], [], []]
    red = load_policy_file(devices["HN-003-1"].policy_path, [fleet["key"].public_key()], None)
    assert red.test_validity_hours == 24 and red.name == "red-area"
    # the dashboard's published lists say so
    version, detail = published_lists(ServerSettings.from_data_dir(data))["policy"]
    assert version == 4 and "3 checkpoint(s) with their own policy (versions 5..6)" in detail


def test_a_device_refuses_a_policy_that_does_not_name_it_and_keeps_its_own(fleet, caplog):
    data = fleet["data"]
    assert _cli("policy", "publish", "--profiles", str(fleet["profiles"]), "--data-dir", str(data))[0] == 0
    red = _device(fleet, "HN-003-1", "HN-003")
    assert red.run_once().installed == [("policy", 5)]
    kept = red.policy_path.read_bytes()
    # the server (or anything between) serves another checkpoint's validly signed, newer policy
    other = default_policy("hn-zone-1", version=9, checkpoints=("HN-001",))
    (data / "published/policies/HN-003.cpenv").write_bytes(sign_policy(other, fleet["key"]))
    with caplog.at_level(logging.ERROR, logger="edge.device.sync_client"):
        result = red.run_once()
    assert result.installed == []
    assert any("policy version 9 is for HN-001, not for checkpoint HN-003" in e for e in result.errors)
    assert "event=sync_download_rejected kind=policy" in caplog.text and "keeping the current policy" in caplog.text
    assert red.policy_path.read_bytes() == kept
    # a policy naming it but signed by another key is refused the same way
    forged = default_policy("hn-zone-1", version=10, checkpoints=("HN-003",))
    (data / "published/policies/HN-003.cpenv").write_bytes(sign_policy(forged, Ed25519PrivateKey.generate()))
    result = red.run_once()
    assert result.installed == [] and any("policy envelope rejected" in e for e in result.errors)
    assert red.policy_path.read_bytes() == kept
    # and publishing refuses to build on a published file it cannot verify as that checkpoint's
    code, out = _cli("policy", "publish", "--profiles", str(fleet["profiles"]), "--data-dir", str(data))
    assert code != 0 and "checkpoint HN-003: its published policy is unusable" in out


def test_publish_refuses_unknown_or_bad_profiles_and_writes_nothing(fleet):
    data, profiles = fleet["data"], fleet["profiles"]
    (profiles / "red-area.json").unlink()
    code, out = _cli("policy", "publish", "--profiles", str(profiles), "--data-dir", str(data))
    assert code != 0 and "profile 'red-area' (used by HN-003)" in out and "Traceback" not in out
    assert not (data / "published/policies").exists()
    (profiles / "red-area.json").write_text(_profile("hn-red", doses_required=99, zones_typo=1))
    code, out = _cli("policy", "publish", "--profiles", str(profiles), "--data-dir", str(data))
    assert code != 0 and "red-area.json" in out and "doses_required" in out and "zones_typo" in out
    assert not (data / "published/policies").exists()


def test_default_profile_is_a_valid_profile():
    code, out = _cli("policy", "default", "--zone", "hn-red", "--profile")
    assert code == 0
    profile = PolicyProfile.model_validate_json(out)
    assert profile.checkpoint_zone == "hn-red" and "version" not in json.loads(out)
