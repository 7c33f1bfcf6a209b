from pathlib import Path

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
    """build-payload (own wheel only: no network in tests) then install-into-image on a fake rootfs."""
    import subprocess

    payload, rootfs, bootfs = tmp_path / "payload", tmp_path / "rootfs", tmp_path / "boot"
    bootfs.mkdir()
    (bootfs / "config.txt").write_text("arm_64bit=1\n")
    subprocess.run([str(ROOT / "firmware_config" / "build-payload.sh"), str(payload), "--no-deps"],
                   check=True, capture_output=True, timeout=300)
    assert list((payload / "wheels").glob("checkpoint_appliance-*.whl"))
    for _ in range(2):  # idempotent
        subprocess.run([str(ROOT / "firmware_config" / "install-into-image.sh"), str(payload), str(rootfs),
                        str(bootfs)], check=True, capture_output=True, timeout=60)
    assert (rootfs / "opt/checkpoint/firmware_config/firstboot.sh").stat().st_mode & 0o111
    link = rootfs / "etc/systemd/system/multi-user.target.wants/checkpoint-firstboot.service"
    assert link.is_symlink()
    config_txt = (bootfs / "config.txt").read_text()
    assert config_txt.count("dtparam=watchdog=on") == 1 and config_txt.startswith("arm_64bit=1")
