"""The central server's FastAPI app: enrollment, signed pushes, signed downloads, dashboard."""

from __future__ import annotations

import hmac
import json
import logging
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from sync.server.dashboard import render_dashboard
from sync.server.ingest import IngestError, ingest_body, verify_signature
from sync.server.settings import ServerSettings
from sync.server.storage import Storage, StorageError, open_storage
from sync.wire.envelope import sign_envelope
from sync.wire.errors import CheckpointError
from sync.wire.protocol import (
    API,
    CBOR_MEDIA_TYPE,
    ENVELOPE_MEDIA_TYPE,
    HEADER_DEVICE,
    HEADER_SIGNATURE,
    EnrollRequest,
    EnrollResult,
    ErrorBody,
    unb64,
)
from sync.wire.sealed import HolderOpener

log = logging.getLogger(__name__)
MAX_BODY = 16 * 1024 * 1024


def _error(status: int, error: str, detail: str = "", acked_seq: int | None = None) -> JSONResponse:
    body = ErrorBody(error=error, detail=detail, acked_seq=acked_seq).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status)


class _Unauthorized(CheckpointError):
    pass


def _published_version(path: Path) -> int | None:
    """Version in an envelope file's header (the device verifies the signature itself)."""
    try:
        header, _payload, _sig = cbor2.loads(path.read_bytes())
        return int(cbor2.loads(header)["version"])
    except (OSError, ValueError, KeyError, TypeError, cbor2.CBORDecodeError):
        return None


def published_lists(settings: ServerSettings) -> dict[str, tuple[int | None, str]]:
    """What the devices can download now: trust list, policy and risk list versions (dashboard)."""
    if settings.data_dir is None:
        return {}
    out: dict[str, tuple[int | None, str]] = {}
    for kind in ("trust", "policy"):
        path = settings.data_dir / "published" / f"{kind}.cpenv"
        version = _published_version(path)
        out[kind] = (version, str(path) if version is not None else f"not published ({path})")
    risk_dir = settings.data_dir / "risk"
    if settings.publisher_key is not None and risk_dir.is_dir():
        from sync.server.publish.risk import RiskPublisher

        publisher = RiskPublisher(risk_dir, settings.publisher_key)
        at = publisher.published_at
        out["risk"] = (publisher.latest_version or None,
                       f"{publisher.entries:,} entries, published {at.isoformat() if at else 'never'}")
    else:
        out["risk"] = (None, f"not published ({risk_dir})")
    return out


def _default_risk_updates(settings: ServerSettings):
    if settings.data_dir is None or settings.publisher_key is None or not (settings.data_dir / "risk").is_dir():
        return None
    from sync.server.publish.risk import RiskPublisher

    directory, key = settings.data_dir / "risk", settings.publisher_key

    def updates_for(device_version: int) -> list[bytes]:
        # re-read per request: `checkpoint risk publish` runs in another process
        return RiskPublisher(directory, key).updates_for(device_version)
    return updates_for


def create_app(settings: ServerSettings, storage: Storage | None = None) -> FastAPI:
    """Build the server app; it owns ``storage`` (opened from ``settings.db_url`` if not given)."""
    store = storage or open_storage(settings.db_url)
    opener = HolderOpener(settings.encryption_key)
    risk_updates = settings.risk_updates or _default_risk_updates(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        store.close()

    app = FastAPI(title="checkpoint central server", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.storage = store

    async def authenticate(request: Request, body: bytes) -> str:
        device_id = request.headers.get(HEADER_DEVICE, "")
        try:
            signature = unb64(request.headers.get(HEADER_SIGNATURE, ""))
        except ValueError:
            raise _Unauthorized("bad signature encoding") from None
        raw = await run_in_threadpool(store.device_key, device_id)
        if raw is None:
            raise _Unauthorized(f"device {device_id!r} is not enrolled")
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if not verify_signature(raw, signature, request.method, path, body):
            raise _Unauthorized(f"signature of device {device_id!r} does not verify")
        return device_id

    @app.exception_handler(_Unauthorized)
    async def _unauthorized(_request: Request, exc: _Unauthorized) -> JSONResponse:
        log.warning("event=sync_unauthorized detail=%s", exc)
        return _error(401, "unauthorized", str(exc))

    @app.exception_handler(StorageError)
    async def _storage_down(_request: Request, exc: StorageError) -> JSONResponse:
        log.error("event=server_storage_error error=%s action=check the database", exc)
        return JSONResponse({"error": "storage_unavailable", "detail": str(exc)}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.get(f"{API}/health")
    def health() -> dict:
        return {"ok": True, "time": datetime.now(UTC).isoformat()}

    @app.post(f"{API}/enroll")
    async def enroll(request: Request) -> Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not settings.enroll_token or not hmac.compare_digest(token.encode(), settings.enroll_token.encode()):
            return _error(401, "unauthorized", "missing or wrong provisioning token (or self-enrollment is off)")
        try:
            req = EnrollRequest.model_validate_json(await request.body())
            key = unb64(req.public_key)
            Ed25519PublicKey.from_public_bytes(key)
        except (ValidationError, ValueError) as exc:
            return _error(422, "bad_request", str(exc)[:500])
        ok = await run_in_threadpool(store.enroll, req.device_id, key)
        if not ok:
            log.warning("event=enroll_refused device=%s reason=another key enrolled action=use "
                        "'checkpoint server enroll --replace' if the device was re-provisioned", req.device_id)
            return _error(409, "already_enrolled", "another key is enrolled for this device id")
        log.info("event=device_enrolled device=%s", req.device_id)
        acked = await run_in_threadpool(store.acked_seq, req.device_id)
        return JSONResponse(EnrollResult(device_id=req.device_id, enrolled=True, acked_seq=acked).model_dump())

    @app.post(f"{API}/push")
    async def push(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return _error(413, "too_large", f"batch body over {MAX_BODY} bytes: send smaller batches")
        device_id = await authenticate(request, body)
        try:
            result = await run_in_threadpool(ingest_body, store, opener, device_id, body)
        except IngestError as exc:
            log.error("event=push_refused device=%s error=%s detail=%s", device_id, exc.error, exc.detail)
            if exc.error == "bad_batch":
                return _error(exc.status, exc.error, exc.detail)
            acked = await run_in_threadpool(store.acked_seq, device_id)
            return _error(exc.status, exc.error, exc.detail, acked_seq=acked)
        log.info("event=push_ingested device=%s stored=%d duplicates=%d acked_seq=%d", device_id,
                 result.stored, result.duplicates, result.acked_seq)
        return Response(result.model_dump_json(), media_type="application/json")

    @app.get(f"{API}/time")
    async def server_time(request: Request, nonce: str = "") -> Response:
        await authenticate(request, b"")
        if settings.publisher_key is None:
            return _error(404, "no_time_key", "this server has no publisher key to sign its time")
        if len(nonce) > 64:
            return _error(422, "bad_request", "nonce too long")
        now = datetime.now(UTC)
        payload = json.dumps({"now": now.isoformat(), "nonce": nonce}).encode()
        blob = sign_envelope("time", int(now.timestamp()), payload, settings.publisher_key, issued_at=now)
        return Response(blob, media_type=ENVELOPE_MEDIA_TYPE)

    def _published(kind: str):
        async def handler(request: Request, have: int = 0) -> Response:
            await authenticate(request, b"")
            path = settings.data_dir / "published" / f"{kind}.cpenv" if settings.data_dir else None
            version = _published_version(path) if path else None
            if path is None or version is None or version <= have:
                return Response(status_code=204)
            return Response(path.read_bytes(), media_type=ENVELOPE_MEDIA_TYPE)
        return handler

    app.add_api_route(f"{API}/trust", _published("trust"), methods=["GET"])
    app.add_api_route(f"{API}/policy", _published("policy"), methods=["GET"])

    @app.get(f"{API}/risk")
    async def risk(request: Request, have: int = 0) -> Response:
        await authenticate(request, b"")
        if risk_updates is None:
            return Response(status_code=204)
        blobs = await run_in_threadpool(risk_updates, have)
        if not blobs:
            return Response(status_code=204)
        return Response(cbor2.dumps(list(blobs)), media_type=CBOR_MEDIA_TYPE)

    @app.get(f"{API}/fleet")
    async def fleet() -> list[dict]:
        devices = await run_in_threadpool(store.fleet)
        return [d.__dict__ for d in devices]

    @app.get("/", response_class=HTMLResponse)
    async def dashboard() -> HTMLResponse:
        devices = await run_in_threadpool(store.fleet)
        lists = await run_in_threadpool(published_lists, settings)
        return HTMLResponse(render_dashboard(devices, datetime.now(UTC), lists))

    return app
