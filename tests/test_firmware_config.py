from pathlib import Path

from edge.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_loads_and_is_complete():
    config = load_config(ROOT / "firmware_config" / "config.example.toml")
    assert config.device.id == "HN-CP-001"
    assert config.camera.source == "picamera2"
    assert config.light.backend == "gpio"
    assert config.sync.server_url.startswith("https://")
