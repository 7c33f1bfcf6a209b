import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge.cli import main
from edge.config import ConfigError, load_config
from edge.device.bundle import device_config
from sync.server.enrollment import MIN_TOKEN_LENGTH, token_digest
from sync.server.settings import default_db_url, init_data_dir
from sync.server.storage import open_storage


def test_provision_writes_valid_bundles(tmp_path: Path):
    server = tmp_path / "server"
    init_data_dir(server)  # 'checkpoint server init'
    out = tmp_path / "bundles"
    result = CliRunner().invoke(main, ["provision", "--server-data", str(server), "--server-url",
                                       "https://cp.example", "--prefix", "HN-CP-", "--count", "3",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["HN-CP-001", "HN-CP-002", "HN-CP-003"]
    bundle = out / "HN-CP-002"
    config = load_config(bundle / "config.toml")
    assert config.device.id == "HN-CP-002"
    assert config.sync.server_url == "https://cp.example"
    assert config.keys.publisher_public_key == Path("/etc/checkpoint/keys/publisher_ed25519.pub.pem")
    assert (bundle / "keys/publisher_ed25519.pub.pem").read_bytes() == \
        (server / "keys/publisher_ed25519.pub.pem").read_bytes()
    assert stat.S_IMODE((bundle / "enroll.token").stat().st_mode) == 0o600
    tokens = {p.parent.name: p.read_text().strip() for p in out.glob("*/enroll.token")}
    assert len(set(tokens.values())) == 3 and all(len(t) >= MIN_TOKEN_LENGTH for t in tokens.values())
    storage = open_storage(default_db_url(server))
    try:  # each token is stored (as a digest) for its own device id only
        for device_id, token in tokens.items():
            assert storage.enroll_token(device_id).token_hash == token_digest(token)
    finally:
        storage.close()
    assert not list(bundle.rglob("*device*")), "the device key is made on the device, never in the bundle"

    again = CliRunner().invoke(main, ["provision", "--server-data", str(server), "--server-url", "x",
                                      "--count", "1", "--prefix", "HN-CP-", "--start", "2", "--out", str(out)])
    assert again.exit_code != 0 and "exist already" in again.output


def test_provision_rejects_a_bad_override():
    with pytest.raises(ConfigError, match=r"camera\.fsp"):
        device_config("X-1", checkpoint="x", server_url="u", etc_dir=Path("/e"), data_dir=Path("/d"),
                      overrides={"camera": {"fsp": 3}})


def test_provision_needs_server_keys(tmp_path: Path):
    result = CliRunner().invoke(main, ["provision", "--server-data", str(tmp_path), "--server-url", "u",
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "server keys unusable" in result.output


def test_each_bundle_token_enrolls_only_its_own_device(tmp_path: Path):
    """The device path of first boot: `checkpoint sync --once` with the bundle's token (env, as
    firstboot.sh passes it). Another bundle's token is refused; the right one enrolls, once."""
    from sync.server.app import create_app
    from sync.server.runner import ServerThread
    server = tmp_path / "server"
    settings = init_data_dir(server)
    out = tmp_path / "bundles"
    runner = CliRunner()
    with ServerThread(create_app(settings)) as srv:
        for n in (1, 2):  # each card's bundle, as it will sit in /etc/checkpoint on its device
            result = runner.invoke(main, ["provision", "--server-data", str(server), "--server-url", srv.url,
                                          "--prefix", "HN-CP-", "--start", str(n), "--count", "1",
                                          "--etc-dir", str(out / f"HN-CP-00{n}"),
                                          "--data-dir", str(tmp_path / f"device-{n}"), "--out", str(out)])
            assert result.exit_code == 0, result.output
        config = str(out / "HN-CP-001/config.toml")
        own, other = ((out / f"HN-CP-00{n}/enroll.token").read_text().strip() for n in (1, 2))
        stolen = runner.invoke(main, ["sync", "--config", config, "--once", "--deadline", "5"],
                               env={"CHECKPOINT_ENROLL_TOKEN": other})
        assert stolen.exit_code != 0 and "401" in stolen.output
        enrolled = runner.invoke(main, ["sync", "--config", config, "--once", "--deadline", "5"],
                                 env={"CHECKPOINT_ENROLL_TOKEN": own})
        assert enrolled.exit_code == 0 and "synced" in enrolled.output, enrolled.output
        storage = srv._server.config.app.state.storage
        assert storage.device_key("HN-CP-001") is not None and storage.device_key("HN-CP-002") is None
        assert storage.enroll_token("HN-CP-001").used_at is not None
