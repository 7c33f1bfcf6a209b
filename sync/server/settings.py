"""Server settings: database, keys, published lists and the enrollment token."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sync.wire.keyfiles import (
    load_ed25519_private,
    load_or_create_ed25519,
    load_x25519_private,
    save_private_key,
    save_public_key,
)

log = logging.getLogger(__name__)

ENCRYPTION_KEY = "keys/server_x25519.pem"
PUBLISHER_KEY = "keys/publisher_ed25519.pem"


@dataclass
class ServerSettings:
    """Everything ``create_app`` needs.

    ``data_dir`` holds ``published/trust.cpenv`` and ``published/policy.cpenv`` (served as they are)
    and ``risk/`` (a RiskPublisher directory). ``enroll_token``: devices presenting it may enroll
    their key themselves; None disables self-enrollment (use ``checkpoint server enroll``).
    """

    db_url: str
    encryption_key: X25519PrivateKey
    publisher_key: Ed25519PrivateKey | None = None
    data_dir: Path | None = None
    enroll_token: str | None = None
    #: device risk version -> signed updates; default: sync.server.publish.risk.RiskPublisher(data_dir/"risk")
    risk_updates: Callable[[int], list[bytes]] | None = None

    @classmethod
    def from_data_dir(cls, data_dir: Path, *, db_url: str | None = None, enroll_token: str | None = None,
                      create_keys: bool = True) -> ServerSettings:
        """Load (creating on first use) the server's keys under ``data_dir/keys``."""
        data_dir = Path(data_dir)
        enc_path = data_dir / ENCRYPTION_KEY
        if not enc_path.exists() and create_keys:
            key = X25519PrivateKey.generate()
            save_private_key(enc_path, key)
            save_public_key(data_dir / "keys/server_x25519.pub.pem", key.public_key())
            log.info("event=server_key_created path=%s action=provision devices with %s", enc_path,
                     data_dir / "keys/server_x25519.pub.pem")
        pub_path = data_dir / PUBLISHER_KEY
        if create_keys:
            publisher = load_or_create_ed25519(pub_path)
            save_public_key(data_dir / "keys/publisher_ed25519.pub.pem", publisher.public_key())
        else:
            publisher = load_ed25519_private(pub_path) if pub_path.exists() else None
        return cls(db_url=db_url or f"sqlite:///{data_dir / 'server.sqlite'}",
                   encryption_key=load_x25519_private(enc_path), publisher_key=publisher,
                   data_dir=data_dir, enroll_token=enroll_token)
