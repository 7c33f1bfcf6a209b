"""The demo's world: a central server on loopback and one provisioned checkpoint device."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2

from edge.config import Config
from edge.device.bundle import ServerKeys, device_config, write_bundle
from edge.devtools.demo.scenario import RISK_COVERS, Traveller, risk_entries, travellers
from edge.devtools.hc1_issuer import DocumentSigner
from edge.devtools.synth import render_sequence
from edge.lists.policy import default_policy, sign_policy
from edge.passes.issuer import IssuerKey
from edge.passes.trust import build_trust_envelope
from sync.server.accounts import add_user
from sync.server.app import create_app
from sync.server.enrollment import issue_token
from sync.server.publish.risk import RiskPublisher
from sync.server.runner import ServerThread
from sync.server.settings import ServerSettings, init_data_dir
from sync.server.storage import open_storage
from sync.wire.identifiers import IdentifierKey
from sync.wire.risk.types import Coverage

DEVICE_ID = "HN-CP-001"
#: the checkpoint the device stands at (its policy names it) and the group it belongs to
CHECKPOINT_ID = "hn-chuong-duong-bridge"
ZONE = "hn-zone-1"
FRAME_SIZE = (640, 480)


@dataclass
class Central:
    """The province's central server: keys, published lists, and the HTTP server."""

    settings: ServerSettings
    issuer: IssuerKey
    dsc: DocumentSigner
    #: a document signer of a country the province's risk list does not cover
    foreign_dsc: DocumentSigner
    enroll_token: str
    server: ServerThread | None = None

    @classmethod
    def create(cls, root: Path, db_url: str | None = None) -> Central:
        """``checkpoint server init``, then the one-time token provisioning makes for the demo device."""
        settings = init_data_dir(root, db_url=db_url)
        storage = open_storage(settings.db_url)
        try:
            token = issue_token(storage, DEVICE_ID, ttl_s=3600)
        finally:
            storage.close()
        # the issuing key has been in service for a year (so last month's permits verify)
        since = datetime.now(UTC).replace(microsecond=0) - timedelta(days=365)
        return cls(settings, IssuerKey.generate("VN-HN-CDC", "EdDSA", not_before=since, valid_days=3 * 365),
                   DocumentSigner.generate("VN", "PS256", not_before=since, valid_days=3 * 365),
                   DocumentSigner.generate("DE", "ES256", not_before=since, valid_days=3 * 365), token)

    @property
    def id_key(self) -> IdentifierKey:
        """The identifier key: the server and the issuing authority hold it, the device never does."""
        assert self.settings.identifier_key is not None
        return self.settings.identifier_key

    def publish(self, now: datetime) -> None:
        """Sign and publish trust list, policy and risk list, as the province's IT would."""
        data_dir, key = self.settings.data_dir, self.settings.publisher_key
        assert data_dir is not None and key is not None
        published = data_dir / "published"
        published.mkdir(parents=True, exist_ok=True)
        (published / "trust.cpenv").write_bytes(build_trust_envelope(
            [self.issuer.trusted_key(), self.dsc.trusted_key(), self.foreign_dsc.trusted_key()], key, version=1))
        (published / "policy.cpenv").write_bytes(sign_policy(default_policy(ZONE, checkpoints=(CHECKPOINT_ID,)), key))
        RiskPublisher(data_dir / "risk", key, coverage=Coverage.parse(list(RISK_COVERS))).publish(
            risk_entries(self.id_key), published_at=now)

    def add_account(self, username: str, role: str) -> str:
        """An account with a fresh random password (the demo's tracer; ``demo``, an admin, for ``--serve``)."""
        password = secrets.token_urlsafe(12)
        storage = open_storage(self.settings.db_url)
        try:
            add_user(storage, username, password, role)
        finally:
            storage.close()
        return password

    def start(self) -> str:
        self.settings.secure_cookies = False  # plain HTTP on loopback
        self.server = ServerThread(create_app(self.settings)).start()
        return self.server.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def provision_device(root: Path, central: Central, server_url: str, frames: Path) -> Config:
    """A device bundle whose camera is the replay of ``frames`` and whose lamps are the terminal.

    Paths in the written config are absolute (the config is read from its own folder later, by hand),
    and the replay loops there, so ``checkpoint run`` on it keeps running; the returned Config, the
    demo's own, plays the frames once.
    """
    assert central.settings.data_dir is not None
    root, frames = root.resolve(), frames.resolve()
    keys = ServerKeys.from_server_data(central.settings.data_dir)
    config = device_config(
        DEVICE_ID, checkpoint=CHECKPOINT_ID, checkpoint_name="Hà Nội – cầu Chương Dương (demo)",
        server_url=server_url, etc_dir=root,
        data_dir=root,
        overrides={"camera": {"source": "replay", "path": str(frames), "fps": 30.0, "loop": True},
                   "light": {"backend": "terminal", "verdict_hold_s": 1.0},
                   "sync": {"interval_s": 2.0, "timeout_s": 5.0}})
    written = write_bundle(root, config, keys, central.enroll_token)
    return written.model_copy(update={"camera": written.camera.model_copy(update={"loop": False})})


def render_frames(folder: Path, people: list[Traveller], seed: int = 7) -> int:
    """Camera-like frames of each traveller holding up their code, written as PNG files."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = render_sequence([p.text for p in people], FRAME_SIZE, seed, idle_frames=4, hold_frames=6)
    for i, image in enumerate(frames):
        cv2.imwrite(str(folder / f"frame-{i:04d}.png"), image)
    return len(frames)


def demo_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def make_travellers(central: Central, now: datetime) -> list[Traveller]:
    return travellers(central.issuer, central.dsc, central.foreign_dsc, now, ZONE, central.id_key)
