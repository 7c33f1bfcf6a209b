"""`checkpoint server enroll` (admin path) and `checkpoint sync --once` against a live server."""

from click.testing import CliRunner
from conftest import append_samples
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_sync_faults import _device_config
from test_sync_push import assert_server_matches

from edge.cli import main
from edge.scan.scanlog import ScanLog
from sync.server.app import create_app
from sync.server.runner import ServerThread
from sync.server.settings import ServerSettings
from sync.server.storage import open_storage
from sync.wire.keyfiles import save_private_key, save_public_key


def test_admin_enroll_then_sync_once(tmp_path, server_x25519, device_key):
    server_dir = tmp_path / "server"
    save_private_key(server_dir / "keys/server_x25519.pem", server_x25519)
    save_public_key(tmp_path / "dev.pub.pem", device_key.public_key())
    runner = CliRunner()
    assert runner.invoke(main, ["server", "--data-dir", str(server_dir), "init"]).exit_code == 0
    args = ["server", "--data-dir", str(server_dir), "enroll", "--device-id", "dev-1", "--public-key",
            str(tmp_path / "dev.pub.pem")]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    save_public_key(tmp_path / "other.pub.pem", Ed25519PrivateKey.generate().public_key())
    args[-1] = str(tmp_path / "other.pub.pem")
    assert runner.invoke(main, args).exit_code != 0  # another key: refused without --replace
    settings = ServerSettings.from_data_dir(server_dir)
    assert (server_dir / "keys/publisher_ed25519.pub.pem").exists()
    with ServerThread(create_app(settings)) as srv:
        cfg, data = _device_config(tmp_path, srv.url, server_x25519, device_key)
        log = ScanLog(data / "scanlog.sqlite", device_id="dev-1", boot_id="b",
                      server_encryption_key=server_x25519.public_key())
        append_samples(log, 120)
        result = runner.invoke(main, ["sync", "--config", str(cfg), "--once"])
        assert result.exit_code == 0, result.output
        assert "acked_seq=120" in result.output
        storage = open_storage(settings.db_url)
        assert_server_matches(storage, log)
        storage.close()
        log.close()


def test_sync_refuses_standalone_config(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[device]\ndata_dir = "{tmp_path}"\n')
    result = CliRunner().invoke(main, ["sync", "--config", str(cfg), "--once"])
    assert result.exit_code != 0 and "server_url is empty" in result.output
