"""Server settings: database, keys, published lists, request limits; and creating a data directory."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sync.server.filemodes import private_dir, secure_data_dir
from sync.wire.errors import CheckpointError
from sync.wire.identifiers import IdentifierKey
from sync.wire.keyfiles import load_ed25519_private, load_x25519_private, save_private_key, save_public_key

log = logging.getLogger(__name__)

ENCRYPTION_KEY = "keys/server_x25519.pem"
PUBLISHER_KEY = "keys/publisher_ed25519.pem"
#: the identifier key (holder values are HMAC-SHA-256 under it); shared with the issuing authority only
IDENTIFIER_KEY = "keys/holder_id.key"


class ServerDataError(CheckpointError, RuntimeError):
    """The server data directory is missing or is not one (no keys): nothing is created by accident."""


@dataclass(frozen=True)
class RequestLimits:
    """What one request may cost the server, checked before its body is read.

    Rates use the ``limits`` library's notation (``"20/second;600/minute"``); they are counted per
    server process with the default ``memory://`` storage (``ServerSettings.rate_limit_storage``
    may name a shared one, e.g. ``redis://``).
    """

    #: a push body (a batch of scan records; 10,000 records are about 5 MB)
    max_push_bytes: int = 16 * 1024 * 1024
    #: a signed list uploaded by an operator (PUT /admin/api/published/...)
    max_upload_bytes: int = 16 * 1024 * 1024
    #: every other request body (enrollment, login, admin forms)
    max_small_bytes: int = 64 * 1024
    #: bytes of all request bodies being read at once (beyond: 503, retry); bounds memory
    max_inflight_bytes: int = 128 * 1024 * 1024
    #: requests of one device id in flight at once (a device sends one at a time)
    device_concurrency: int = 4
    #: the whole body must arrive within this time, or the request gets 408 and the socket is closed
    body_timeout_s: float = 30.0
    #: a connection must send its request headers within this time (a stalled socket is closed)
    header_timeout_s: float = 10.0
    #: signed requests per device id
    device_rate: str = "30/second;1200/minute"
    #: how long a server process keeps a device key it looked up before reading a request's body
    #: (0: look it up for every request). A push is checked against the database in its ingest all
    #: the same; other requests see a revocation or a new key within this time
    device_key_cache_s: float = 30.0
    #: requests per client address naming a device id that is not enrolled (or revoked, or
    #: malformed); beyond it, that address's requests whose device key this process does not
    #: remember get 429 without a database look-up (devices heard from lately still pass)
    unknown_senders_per_client: str = "60/minute"
    #: wrong enrollment tokens per client address
    enroll_failures_per_client: str = "20/10minutes"
    #: wrong guesses of one device's token before further wrong ones wait ``token_lock_s`` (429)
    token_max_failures: int = 5
    token_lock_s: int = 900
    #: failed logins per client address and user name
    login_failures: str = "5/minute"


@dataclass
class ServerSettings:
    """Everything ``create_app`` needs.

    ``data_dir`` holds ``published/trust.cpenv`` and ``published/policy.cpenv`` (served as they are)
    and ``risk/`` (a RiskPublisher directory). Devices enroll with one-time tokens bound to their
    id (``sync.server.enrollment``), made at provisioning.
    """

    db_url: str
    encryption_key: X25519PrivateKey
    publisher_key: Ed25519PrivateKey | None = None
    data_dir: Path | None = None
    #: device risk version -> signed updates; default: sync.server.publish.risk.RiskPublisher(data_dir/"risk")
    risk_updates: Callable[[int], list[bytes]] | None = None
    limits: RequestLimits = field(default_factory=RequestLimits)
    #: where rate-limit counters live (``limits`` storage URI)
    rate_limit_storage: str = "memory://"
    #: admin sessions last this long after login
    session_ttl_s: int = 8 * 3600
    #: session cookies only over HTTPS (turn off only for plain-HTTP on loopback)
    secure_cookies: bool = True
    #: the identifier key (``sync.wire.identifiers``): publishing risk lists from citizen ids, tracing
    identifier_key: IdentifierKey | None = None

    @classmethod
    def from_data_dir(cls, data_dir: Path, *, db_url: str | None = None) -> ServerSettings:
        """Load the server's keys from ``data_dir/keys``; never creates anything (see ``init_data_dir``)."""
        data_dir = Path(data_dir)
        enc_path = data_dir / ENCRYPTION_KEY
        if not data_dir.is_dir():
            raise ServerDataError(f"no server data directory at {data_dir}: create one with "
                                  f"'checkpoint server init --data-dir {data_dir}' (or check --data-dir)")
        if not enc_path.is_file():
            raise ServerDataError(f"{data_dir} is not a server data directory (no {ENCRYPTION_KEY}): create one "
                                  f"with 'checkpoint server init --data-dir DIR' (or check --data-dir)")
        pub_path = data_dir / PUBLISHER_KEY
        publisher = load_ed25519_private(pub_path) if pub_path.exists() else None
        id_path = data_dir / IDENTIFIER_KEY
        identifier = IdentifierKey.load(id_path) if id_path.exists() else None
        secure_data_dir(data_dir)  # an install made with looser modes is tightened
        return cls(db_url=db_url or default_db_url(data_dir), encryption_key=load_x25519_private(enc_path),
                   publisher_key=publisher, data_dir=data_dir, identifier_key=identifier)


def default_db_url(data_dir: Path) -> str:
    return f"sqlite:///{Path(data_dir) / 'server.sqlite'}"


def _make_key_pair(private_path: Path, public_path: Path, generate, event: str, action: str) -> None:
    """Create a key pair unless the private key exists (init never replaces a root of trust)."""
    if private_path.exists():
        return
    key = generate()
    save_private_key(private_path, key)
    save_public_key(public_path, key.public_key(), mode=0o600)
    log.info("event=%s path=%s public=%s action=%s", event, private_path, public_path, action)


def init_data_dir(data_dir: Path, *, db_url: str | None = None) -> ServerSettings:
    """Create a server data directory (0700): encryption and publisher keys, and the database.

    Keys that exist are kept (running it twice is harmless); this is the only code that creates them.
    """
    from sync.server.storage import open_storage
    data_dir = Path(data_dir)
    private_dir(data_dir)  # 0700, as is keys/
    private_dir(data_dir / "keys")
    _make_key_pair(data_dir / ENCRYPTION_KEY, data_dir / "keys/server_x25519.pub.pem", X25519PrivateKey.generate,
                   "server_key_created", "provision devices with the public key")
    _make_key_pair(data_dir / PUBLISHER_KEY, data_dir / "keys/publisher_ed25519.pub.pem",
                   Ed25519PrivateKey.generate, "publisher_key_created", "devices pin the public key")
    id_path = data_dir / IDENTIFIER_KEY
    if not id_path.exists():  # shared with the issuing authority only; never on a device
        IdentifierKey.generate().save(id_path)
        log.info("event=identifier_key_created path=%s action=give a copy to the issuing authority only "
                 "(passes carry ids keyed with it); never to a device", id_path)
    settings = ServerSettings.from_data_dir(data_dir, db_url=db_url)
    open_storage(settings.db_url, create=True).close()
    return settings
