"""``checkpoint run``: config errors are clear, before any hardware is touched."""

from __future__ import annotations

from click.testing import CliRunner

from edge.cli import main


def test_run_with_missing_config_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["run", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 1 and "config file not found" in result.output


def test_run_with_unknown_key_names_it(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[camera]\nsorce = 'replay'\n")
    result = CliRunner().invoke(main, ["run", "--config", str(config)])
    assert result.exit_code == 1 and "unknown key 'camera.sorce'" in result.output
