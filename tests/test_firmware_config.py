import os
import stat
import sys
from pathlib import Path

import pytest

from edge.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_loads_and_is_complete():
    config = load_config(ROOT / "firmware_config" / "config.example.toml")
    assert config.device.id == "HN-CP-001"
    assert config.camera.source == "picamera2"
    assert config.light.backend == "gpio"
    assert config.sync.server_url.startswith("https://")


def test_firstboot_script_parses():
    import subprocess

    script = ROOT / "firmware_config" / "firstboot.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


def test_firstboot_unit_runs_the_script_it_names(tmp_path: Path):
    import shutil
    import subprocess

    import pytest

    unit = ROOT / "systemd" / "checkpoint-firstboot.service"
    text = unit.read_text()
    assert "ExecStart=/opt/checkpoint/firmware_config/firstboot.sh" in text
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # point ExecStart at this checkout's script so verify can check it exists
    local = tmp_path / "checkpoint-firstboot.service"
    local.write_text(text.replace("/opt/checkpoint/firmware_config/firstboot.sh",
                                  str(ROOT / "firmware_config" / "firstboot.sh")))
    result = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_payload_installs_into_an_image_tree(tmp_path: Path):
    """build-payload (own wheel only: no network in tests) then install-into-image on a fake rootfs.

    The bake step itself (OS packages, venv from every wheel, offline) runs inside a real arm64 root
    in scripts/check-arm64.sh; here IN_ROOT runs it through a recorder to show it is called in the root.
    """
    import subprocess

    payload, rootfs, bootfs = tmp_path / "payload", tmp_path / "rootfs", tmp_path / "boot"
    bootfs.mkdir()
    (bootfs / "config.txt").write_text("arm_64bit=1\n")
    subprocess.run([str(ROOT / "firmware_config" / "build-payload.sh"), str(payload), "--target", "trixie",
                    "--no-deps"], check=True, capture_output=True, timeout=300)
    assert list((payload / "wheels").glob("checkpoint_appliance-*.whl"))
    assert (payload / "target").read_text().strip() == "trixie"
    assert "numpy>=2" in (payload / "constraints.txt").read_text()
    assert "python3-picamera2" in (payload / "os-packages.txt").read_text().split()
    wheel = next((payload / "wheels").glob("checkpoint_appliance-*.whl"))
    assert wheel.name in (payload / "wheels.sha256").read_text()
    recorder = tmp_path / "in-root.sh"
    calls = tmp_path / "calls"
    recorder.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    recorder.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key != "OS_PACKAGES"}
    for packages in ({}, {"OS_PACKAGES": "python3-venv,libzbar0"}):  # twice: idempotent; then an override
        subprocess.run([str(ROOT / "firmware_config" / "install-into-image.sh"), str(payload), str(rootfs),
                        str(bootfs)], check=True, capture_output=True, timeout=60,
                       env={**env, "IN_ROOT": f"{recorder} {rootfs}", **packages})
    assert calls.read_text().splitlines() == [
        f"{rootfs} env /opt/checkpoint/firmware_config/bake.sh",
        f"{rootfs} env OS_PACKAGES=python3-venv,libzbar0 /opt/checkpoint/firmware_config/bake.sh"]
    for script in ("firstboot.sh", "bake.sh"):
        assert (rootfs / "opt/checkpoint/firmware_config" / script).stat().st_mode & 0o111
    config_txt = (bootfs / "config.txt").read_text()
    assert config_txt.count("dtparam=watchdog=on") == 1 and config_txt.startswith("arm_64bit=1")


def test_bad_target_is_refused(tmp_path: Path):
    import subprocess

    result = subprocess.run([str(ROOT / "firmware_config" / "build-payload.sh"), str(tmp_path / "p"),
                             "--target", "jessie"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown target 'jessie'" in result.stderr


def test_first_boot_unit_never_waits_for_the_network():
    text = (ROOT / "systemd" / "checkpoint-firstboot.service").read_text()
    assert "network-online" not in text and "enroll.token" not in text
    script = (ROOT / "firmware_config" / "firstboot.sh").read_text()
    assert "apt-get" not in script and "sync --config" not in script


@pytest.mark.skipif(os.geteuid() != 0, reason="first boot runs as root (runuser, chown)")
def test_first_boot_offline_on_a_fake_root(tmp_path: Path):
    """firstboot.sh with no network namespace at all: bundle in, hostname set, key made, daemon started."""
    import shutil
    import subprocess

    from click.testing import CliRunner

    from edge.cli import main
    from sync.server.settings import init_data_dir

    root = tmp_path / "root"
    server = tmp_path / "server"
    init_data_dir(server)  # 'checkpoint server init'
    bundles = tmp_path / "bundles"
    result = CliRunner().invoke(main, [
        "provision", "--server-data", str(server), "--server-url", "https://cp.example", "--prefix", "HN_CP.",
        "--start", "7", "--etc-dir", str(root / "etc/checkpoint"),
        "--data-dir", str(root / "var/lib/checkpoint"), "--out", str(bundles)])
    assert result.exit_code == 0, result.output
    boot = root / "boot/firmware"
    boot.mkdir(parents=True)
    shutil.copytree(bundles / "HN_CP.007", boot / "checkpoint")
    token = (boot / "checkpoint/enroll.token").read_text()
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n")
    venv_bin = root / "opt/checkpoint/current/bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "checkpoint").symlink_to(Path(sys.executable).parent / "checkpoint")
    (root / "opt/checkpoint/firmware_config").mkdir()
    (root / "opt/checkpoint/target").write_text("bookworm\n")  # build-payload.sh writes the image's OS target
    systemctl = tmp_path / "systemctl"
    (systemctl).write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'systemctl.log'}\n")
    systemctl.chmod(0o755)
    env = {**os.environ, "ROOT": str(root), "SERVICE_USER": "root", "SYSTEMCTL": str(systemctl)}
    offline = ["unshare", "--net"] if shutil.which("unshare") else []
    script = str(ROOT / "firmware_config" / "firstboot.sh")
    done = subprocess.run([*offline, script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    etc, data = root / "etc/checkpoint", root / "var/lib/checkpoint"
    assert (etc / "config.toml").exists() and (etc / "keys/publisher_ed25519.pub.pem").exists()
    assert not (boot / "checkpoint").exists() and not (etc / "enroll.token").exists()
    assert (data / "enroll.token").read_text() == token  # this device's one-time token, for the daemon
    assert stat.S_IMODE((data / "enroll.token").stat().st_mode) == 0o600
    assert (root / "etc/hostname").read_text().strip() == "hn-cp-007"
    assert "127.0.1.1\thn-cp-007" in (root / "etc/hosts").read_text()
    config = load_config(etc / "config.toml")
    assert config.update.target == "bookworm"  # the image's releases, without IT writing it in every bundle
    key = config.resolve(config.keys.device_key)
    assert key.exists() and stat.S_IMODE(key.stat().st_mode) == 0o600
    log = (tmp_path / "systemctl.log").read_text().splitlines()
    assert log == ["enable systemd-timesyncd.service checkpoint.service", "restart --no-block checkpoint.service"]
    key_bytes = key.read_bytes()
    again = subprocess.run([*offline, script], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "no provisioning bundle" in again.stdout
    assert key.read_bytes() == key_bytes  # the key is never replaced


def test_bake_refuses_a_payload_whose_wheels_differ_from_its_lock(tmp_path: Path):
    """Checked before anything is installed: a damaged copy never reaches the image."""
    import subprocess

    payload = tmp_path / "opt/checkpoint"
    subprocess.run([str(ROOT / "firmware_config" / "build-payload.sh"), str(payload), "--no-deps"],
                   check=True, capture_output=True, timeout=300)
    wheel = next((payload / "wheels").glob("*.whl"))
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    result = subprocess.run([str(payload / "firmware_config" / "bake.sh")], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PREFIX": str(payload), "OS_PACKAGES": "no-such-package"})
    assert result.returncode == 1 and "differ from the payload's wheels.sha256" in result.stderr
    assert not (payload / "releases").exists()


def test_bake_creates_every_group_the_daemon_unit_names():
    """systemd refuses to start a unit whose SupplementaryGroups= names a missing group (216/GROUP)."""
    import re

    unit = (ROOT / "systemd" / "checkpoint.service").read_text()
    wanted = set(re.search(r"(?m)^SupplementaryGroups=(.*)$", unit).group(1).split())
    bake = (ROOT / "firmware_config" / "bake.sh").read_text()
    made = set(re.search(r"(?m)^for group in ([a-z ]+); do getent group", bake).group(1).split())
    joined = set(re.search(r'(?m)^usermod -a -G ([a-z,]+) "\$SERVICE_USER"', bake).group(1).split(","))
    assert wanted and wanted <= made and wanted <= joined
