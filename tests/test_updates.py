"""Software updates: a signed release published by the server, staged by the daemon's sync client over
real HTTP, installed beside the running release by the installer with a health check and a way back."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.config import load_config
from edge.device.appliance import Appliance
from edge.device.updates import APPLIED, STAGED, Installer, UpdateError, applied_record
from edge.devtools.demo.world import Central, demo_now, make_travellers, provision_device, render_frames
from sync.server.app import create_app
from sync.server.publish.software import publish_release, software_dir
from sync.server.runner import ServerThread
from sync.wire.envelope import EnvelopeError
from sync.wire.software import Release, ReleaseFile, open_release, seal_release


def fake_wheels(folder: Path, version: str, size: int = 300_000) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    wheels = []
    for name in (f"checkpoint_appliance-{version}-py3-none-any.whl", "numpy-1.26.4-cp311-cp311-linux_aarch64.whl"):
        path = folder / name
        path.write_bytes(os.urandom(size))
        wheels.append(path)
    return wheels


@pytest.fixture
def fleet(tmp_path: Path):
    """A live server and the demo's device, enrolled and synced, set to take bookworm releases."""
    now = demo_now()
    central = Central.create(tmp_path / "server")
    central.publish(now)
    render_frames(tmp_path / "frames", make_travellers(central, now)[:1])
    server = ServerThread(create_app(central.settings)).start()
    provision_device(tmp_path / "device", central, server.url, tmp_path / "frames")
    config_path = tmp_path / "device" / "config.toml"
    config_path.write_text(config_path.read_text() + '\n[update]\ntarget = "bookworm"\n')
    appliance = Appliance(load_config(config_path), light_stream=io.StringIO())
    appliance.sync.sync_until_done(deadline_s=30)
    yield central, appliance, config_path
    appliance.close()
    server.stop()


def publish(central: Central, tmp_path: Path, version: str) -> int:
    wheels = fake_wheels(tmp_path / f"build-{version}", version)
    return publish_release(central.settings.data_dir, central.settings.publisher_key, wheels, target="bookworm",
                           version=version, requirement=f"checkpoint-appliance=={version}")


def test_daemon_stages_signed_releases_and_refuses_tampered_or_older_ones(fleet, tmp_path):
    central, appliance, _ = fleet
    staging = appliance.config.resolve(appliance.config.update.staging)
    keys = appliance.publisher_keys
    assert publish(central, tmp_path, "0.2.0") == 1
    appliance.sync.run_once()
    sequence, release = open_release((staging / STAGED).read_bytes(), keys)
    assert (sequence, release.version) == (1, "0.2.0")
    for item in release.files:
        assert (staging / "1" / item.name).stat().st_size == item.size
    # a release whose wheel was changed on the server after signing is not staged
    assert publish(central, tmp_path, "0.3.0") == 2
    _, signed = open_release((software_dir(central.settings.data_dir) / "bookworm.cpenv").read_bytes(), keys)
    (software_dir(central.settings.data_dir) / "files" / f"{signed.files[0].sha256}.whl").write_bytes(b"evil")
    result = appliance.sync.run_once()
    assert any("software" in e and "does not match the signed manifest" in e for e in result.errors)
    assert open_release((staging / STAGED).read_bytes(), keys)[0] == 1
    # an older manifest replayed by the server (rollback) or one signed by another key is refused
    older = seal_release(release, 1, central.settings.publisher_key)
    with pytest.raises(EnvelopeError, match="not newer"):
        appliance.sync.stager.stage(older, lambda *_: None)
    forged = seal_release(release.model_copy(update={"version": "9.9.9"}), 7, Ed25519PrivateKey.generate())
    with pytest.raises(EnvelopeError):
        appliance.sync.stager.stage(forged, lambda *_: None)
    assert open_release((staging / STAGED).read_bytes(), keys)[0] == 1


def _release_folder(prefix: Path, sequence: int, script: str) -> Path:
    folder = prefix / "releases" / str(sequence)
    (folder / "bin").mkdir(parents=True)
    binary = folder / "bin" / "checkpoint"
    binary.write_text(f"#!/bin/sh\n{script}\n")
    binary.chmod(0o755)
    return folder


WORKING = f'exec {sys.executable} -m edge.cli "$@"'  # a release that runs this code


def _installer(fleet, prefix: Path, *, release_script: str, healthy: bool, restarts: list[str]) -> Installer:
    _, appliance, config_path = fleet
    return Installer(prefix=prefix, staging=appliance.config.resolve(appliance.config.update.staging),
                     config_path=config_path, publisher_keys=appliance.publisher_keys,
                     restart=lambda: restarts.append(os.readlink(prefix / "current")),
                     healthy=lambda _started: healthy,
                     install=lambda p, seq, _wheels, _release: _release_folder(p, seq, release_script))


def _staged(fleet, tmp_path) -> None:
    central, appliance, _ = fleet
    publish(central, tmp_path, "0.2.0")
    appliance.sync.run_once()


def test_healthy_release_is_switched_to(fleet, tmp_path):
    prefix = tmp_path / "opt"
    (prefix / "current").parent.mkdir(parents=True)
    (prefix / "current").symlink_to(_release_folder(prefix, 0, WORKING))
    _staged(fleet, tmp_path)
    restarts: list[str] = []
    installer = _installer(fleet, prefix, release_script=WORKING, healthy=True, restarts=restarts)
    assert installer.apply() == "installed"
    assert os.readlink(prefix / "current") == str(prefix / "releases" / "1") and len(restarts) == 1
    assert applied_record(installer.staging)["outcome"] == "installed"
    assert installer.apply() == "up_to_date"


def test_release_that_fails_after_the_switch_is_rolled_back(fleet, tmp_path):
    prefix = tmp_path / "opt"
    (prefix / "current").parent.mkdir(parents=True)
    base = _release_folder(prefix, 0, WORKING)
    (prefix / "current").symlink_to(base)
    _staged(fleet, tmp_path)
    restarts: list[str] = []
    installer = _installer(fleet, prefix, release_script=WORKING, healthy=False, restarts=restarts)
    assert installer.apply() == "rolled_back"
    assert (prefix / "current").resolve() == base.resolve()
    assert restarts == [str(prefix / "releases" / "1"), str(base.resolve())]
    assert applied_record(installer.staging)["outcome"] == "rolled_back"
    assert installer.apply() == "up_to_date"  # a bad release is not retried; the next one is


def test_release_that_fails_its_own_check_is_never_switched_to(fleet, tmp_path):
    prefix = tmp_path / "opt"
    (prefix / "current").parent.mkdir(parents=True)
    base = _release_folder(prefix, 0, WORKING)
    (prefix / "current").symlink_to(base)
    _staged(fleet, tmp_path)
    restarts: list[str] = []
    broken = "echo 'ImportError: numpy.core.multiarray failed to import' >&2; exit 1"
    installer = _installer(fleet, prefix, release_script=broken, healthy=True, restarts=restarts)
    assert installer.apply() == "refused"
    assert (prefix / "current").resolve() == base.resolve() and restarts == []
    assert "multiarray" in applied_record(installer.staging)["detail"]


def test_staged_wheel_changed_after_staging_is_refused(fleet, tmp_path):
    prefix = tmp_path / "opt"
    _staged(fleet, tmp_path)
    installer = _installer(fleet, prefix, release_script=WORKING, healthy=True, restarts=[])
    wheel = next((installer.staging / "1").glob("checkpoint_appliance-*.whl"))
    data = wheel.read_bytes()
    wheel.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # the daemon user could write this file: root re-checks
    with pytest.raises(UpdateError, match="does not match the signed manifest"):
        installer.apply()
    assert not (installer.staging / APPLIED).exists() and not (prefix / "current").exists()


def test_manifest_rejects_paths_and_unknown_targets():
    good = ReleaseFile(name="a-1.0-py3-none-any.whl", sha256="0" * 64, size=1)
    for bad in ("../../etc/passwd.whl", "/abs-1.0-py3-none-any.whl", "a-1.0-py3-none-any.whl/x"):
        with pytest.raises(ValueError):
            ReleaseFile(name=bad, sha256="0" * 64, size=1)
    with pytest.raises(ValueError):
        Release(version="1.0", target="jessie", requirement="x", files=(good,))
