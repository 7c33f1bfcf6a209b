"""Provisioning: turn a central server's public keys into per-device bundles, by the hundred.

A bundle is a folder that Provincial IT copies onto a freshly flashed SD card's boot partition
(``/boot/firmware/checkpoint/``); ``firmware_config/firstboot.sh`` moves it to ``/etc/checkpoint``.
It holds ``config.toml`` (device id, checkpoint, server URL), the pinned publisher key, the
server's encryption key and the device's one-time enrollment token (made by the server
for this device id only). The device's own signing key is NOT in
the bundle: the device creates it on first boot and enrolls it with the token.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from edge.config import Config, parse_config
from sync.wire.keyfiles import load_ed25519_public, load_x25519_public

PUBLISHER_PUB = "keys/publisher_ed25519.pub.pem"
SERVER_ENC_PUB = "keys/server_x25519.pub.pem"
TOKEN_FILE = "enroll.token"


@dataclass(frozen=True)
class ServerKeys:
    """The two public keys every device pins (both checked to be the right kind on load)."""

    publisher_public: Path
    server_encryption_public: Path

    @classmethod
    def from_server_data(cls, server_data: Path) -> ServerKeys:
        keys = cls(server_data / PUBLISHER_PUB, server_data / SERVER_ENC_PUB)
        load_ed25519_public(keys.publisher_public)
        load_x25519_public(keys.server_encryption_public)
        return keys


def device_config(device_id: str, *, checkpoint: str, server_url: str, etc_dir: Path, data_dir: Path,
                  checkpoint_name: str = "", overrides: dict | None = None) -> dict:
    """The config mapping of one device; validated, so a bad override fails here, not on the road."""
    data: dict = {
        "device": {"id": device_id, "checkpoint": checkpoint, "data_dir": str(data_dir)},
        "sync": {"server_url": server_url},
        "keys": {"publisher_public_key": str(etc_dir / PUBLISHER_PUB),
                 "server_encryption_key": str(etc_dir / SERVER_ENC_PUB)},
    }
    if checkpoint_name:  # what the staff screen shows as the checkpoint's name
        data["status"] = {"checkpoint_name": checkpoint_name}
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update(values)
    parse_config(data, f"config of {device_id}")
    return data


def write_bundle(out_dir: Path, config: dict, keys: ServerKeys, enroll_token: str | None) -> Config:
    """Write one device bundle; returns the validated Config it holds.

    ``enroll_token``: the device's one-time token (``sync.server.enrollment.issue_token``).
    A new bundle is whole or not there at all: it is made beside ``out_dir`` and renamed into place.
    (An existing folder, such as the demo's device folder, is written into.)
    """
    parsed = parse_config(config, str(out_dir / "config.toml"))
    if out_dir.exists():
        _write_bundle_files(out_dir, config, keys, enroll_token)
        return parsed
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by an earlier run that was killed
    _write_bundle_files(partial, config, keys, enroll_token)
    os.rename(partial, out_dir)
    return parsed


def _write_bundle_files(out_dir: Path, config: dict, keys: ServerKeys, enroll_token: str | None) -> None:
    (out_dir / "keys").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(keys.publisher_public, out_dir / PUBLISHER_PUB)
    shutil.copyfile(keys.server_encryption_public, out_dir / SERVER_ENC_PUB)
    (out_dir / "config.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
    if enroll_token:
        fd = os.open(out_dir / TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(enroll_token + "\n")
