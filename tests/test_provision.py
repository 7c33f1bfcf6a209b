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
