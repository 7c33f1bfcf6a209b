from pathlib import Path

import pytest

from edge.config import Config, ConfigError, load_config, parse_config


def test_defaults_are_valid():
    config = Config()
    assert config.camera.source == "picamera2"
    assert config.scanlog.synchronous == "FULL"


def test_unknown_key_is_rejected_with_its_name(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text('[camera]\nsource = "replay"\nfsp = 10\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "unknown key 'camera.fsp'" in str(err.value)


def test_unknown_section_is_rejected():
    with pytest.raises(ConfigError, match="unknown key 'cameras'"):
        parse_config({"cameras": {}})


def test_bad_value_is_explained():
    with pytest.raises(ConfigError, match=r"camera.source"):
        parse_config({"camera": {"source": "webcam"}})


def test_bad_device_id_rejected():
    with pytest.raises(ConfigError, match=r"device\.id"):
        parse_config({"device": {"id": "a b/c"}})


def test_relative_data_dir_resolves_against_config_file(tmp_path: Path):
    path = tmp_path / "etc" / "c.toml"
    path.parent.mkdir()
    path.write_text('[device]\nid = "cp-1"\ndata_dir = "../data"\n')
    config = load_config(path)
    assert config.device.data_dir == (tmp_path / "data").resolve()
    assert config.resolve(Path("scanlog.sqlite")) == (tmp_path / "data" / "scanlog.sqlite").resolve()
    assert config.resolve(Path("/abs/x")) == Path("/abs/x")


def test_missing_and_invalid_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[device\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_misspelt_key_gets_a_did_you_mean(tmp_path: Path):
    with pytest.raises(ConfigError) as err:
        parse_config({"camera": {"sorce": "replay"}, "lihgt": {}, "sync": {"server_ulr": "x", "zzz": 1}})
    text = str(err.value)
    assert "unknown key 'camera.sorce': did you mean 'camera.source'?" in text
    assert "unknown key 'lihgt': did you mean 'light'?" in text
    assert "unknown key 'sync.server_ulr': did you mean 'sync.server_url'?" in text
    assert "unknown key 'sync.zzz': remove it or check its spelling" in text


def test_config_check_command(tmp_path: Path):
    from click.testing import CliRunner

    from edge.cli import main

    good = tmp_path / "good.toml"
    good.write_text('[device]\nid = "HN-CP-007"\n[camera]\nsource = "replay"\n')
    result = CliRunner().invoke(main, ["config", "check", str(good)])
    assert result.exit_code == 0 and "ok: device HN-CP-007, camera replay" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[camera]\nfsp = 10\nwidth = -1\n')
    result = CliRunner().invoke(main, ["config", "check", str(bad)])
    assert result.exit_code == 1
    assert "did you mean 'camera.fps'?" in result.output and "camera.width" in result.output
    result = CliRunner().invoke(main, ["config", "check", str(tmp_path / "missing.toml")])
    assert result.exit_code == 1 and "config file not found" in result.output
