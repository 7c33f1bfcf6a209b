"""The central server's FastAPI app: the device API (enrollment, signed pushes and downloads) and
the admin side (login, dashboard, admin API), together or apart.

``create_app(settings, serve="device")`` is the device API alone, for the address the devices
reach (the internet, a VPN); ``serve="admin"`` the dashboard and admin API alone (an office
network); ``"all"`` both in one process. Any number of processes can serve either side over one
database: sessions, tokens and the audit trail live there. Every request first passes
``guard.RequestGuard`` (sizes, deadlines, device pre-authentication, rate limits).
"""

from __future__ import annotations

import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Literal

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from sync.server.enrollment import Outcome, redeem_token
from sync.server.guard import RequestGuard
from sync.server.ingest import verify_signature
from sync.server.metrics import install_metrics
from sync.server.openapi import install_openapi
from sync.server.published import policy_path_for, published_version
from sync.server.push import (
    PushEndpoint,
    Unauthorized,
    error_response,
    signed_device,
    storage_unavailable,
    unauthorized,
)
from sync.server.registry import RegistryFile
from sync.server.settings import ServerSettings
from sync.server.storage import SQLStorage, StorageError, open_storage
from sync.wire.envelope import EnvelopeError, open_envelope, sign_envelope
from sync.wire.errors import CheckpointError
from sync.wire.protocol import (
    API,
    CBOR_MEDIA_TYPE,
    ENROLLMENT_KIND,
    ENVELOPE_MEDIA_TYPE,
    HEADER_DEVICE,
    HEADER_SIGNATURE,
    MAX_SEQ,
    EnrollmentClaim,
    EnrollRequest,
    EnrollResult,
    Heartbeat,
    ReadmitRequest,
    b64,
    unb64,
)
from sync.wire.software import TARGETS

log = logging.getLogger(__name__)

Serve = Literal["all", "device", "admin"]

#: threads for the guard's device-key look-ups (one indexed SELECT each), apart from the ingests
KEY_THREADS = 2


def _default_risk_updates(settings: ServerSettings):
    if settings.data_dir is None or settings.publisher_key is None or not (settings.data_dir / "risk").is_dir():
        return None
    from sync.server.publish.risk import RiskPublisher

    directory, key = settings.data_dir / "risk", settings.publisher_key

    def updates_for(device_version: int) -> list[bytes]:
        # re-read per request: `checkpoint risk publish` runs in another process
        return RiskPublisher(directory, key).updates_for(device_version)
    return updates_for


def enrollment_certificate(settings: ServerSettings, device_id: str, public_key: bytes) -> str | None:
    """A publisher-signed statement that ``public_key`` is enrolled for ``device_id`` (None without a
    publisher key). The device keeps it and re-admits itself with it after a server restore."""
    if settings.publisher_key is None:
        return None
    claim = EnrollmentClaim(device_id=device_id, public_key=b64(public_key)).model_dump_json().encode()
    return b64(sign_envelope(ENROLLMENT_KIND, 1, claim, settings.publisher_key))


def read_enrollment_certificate(settings: ServerSettings, certificate: str) -> EnrollmentClaim:
    """The claim of a certificate this server's publisher key signed; raises EnvelopeError/ValueError."""
    if settings.publisher_key is None:
        raise EnvelopeError("this server has no publisher key: re-admit the device with a token")
    env = open_envelope(unb64(certificate), ENROLLMENT_KIND, [settings.publisher_key.public_key()])
    return EnrollmentClaim.model_validate_json(env.payload)


def create_app(settings: ServerSettings, storage: SQLStorage | None = None, *, serve: Serve = "all") -> FastAPI:
    """Build the server app; it owns ``storage`` (opened from ``settings.db_url`` if not given)."""
    store = storage or open_storage(settings.db_url)
    # the push path's database work runs on executors of its own (a hop costs less than anyio's
    # pool): ingests on as many threads as the storage has connections, and the guard's key
    # look-ups apart, so that a request does not queue twice behind the ingests (once for its key,
    # once for its batch: under load the key look-up's wait was a third of a push's latency)
    db_executor = ThreadPoolExecutor(max_workers=store.concurrency, thread_name_prefix="ingest")
    key_executor = ThreadPoolExecutor(max_workers=min(store.concurrency, KEY_THREADS), thread_name_prefix="key")

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        key_executor.shutdown(wait=True)
        db_executor.shutdown(wait=True)
        store.close()

    # no OpenTelemetry here: FastAPI's per-request check for a configured provider read the
    # environment on every request (~3 % of a pushing server's CPU, profiled)
    app = FastAPI(title="checkpoint central server", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan, telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.storage = store
    app.state.settings = settings

    @app.exception_handler(Unauthorized)
    async def _unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        return unauthorized(exc, request.url.path)

    @app.exception_handler(StorageError)
    async def _storage_down(_request: Request, exc: StorageError) -> JSONResponse:
        return storage_unavailable(exc)

    device_side = serve in ("all", "device")
    if device_side:
        _device_routes(app, settings, store)
        # inside the guard, ahead of FastAPI's router (sync.server.push says why)
        app.add_middleware(PushEndpoint, settings=settings, store=store, executor=db_executor)
    if serve in ("all", "admin"):
        from sync.server.admin import admin_routes
        admin_routes(app, settings, store)
    app.add_middleware(RequestGuard, store=store, limits=settings.limits, rate_storage=settings.rate_limit_storage,
                       executor=key_executor)
    install_metrics(app, store)  # outermost of ours: counts what the guard refuses too
    install_openapi(app, push=device_side)
    return app


def _device_routes(app: FastAPI, settings: ServerSettings, store: SQLStorage) -> None:
    risk_updates = settings.risk_updates or _default_risk_updates(settings)
    limiter = MovingWindowRateLimiter(storage_from_string(settings.rate_limit_storage))
    enroll_failures = parse_many(settings.limits.enroll_failures_per_client)

    def authenticate(request: Request, body: bytes) -> str:
        """The device whose signature this request carries (the guard looked its key up)."""
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return signed_device(getattr(request.state, "device", None), request.headers.get(HEADER_SIGNATURE, ""),
                             request.method, path, body)

    @app.get(f"{API}/health")
    def health() -> dict:
        return {"ok": True, "time": datetime.now(UTC).isoformat()}

    @app.post(f"{API}/enroll")
    async def enroll(request: Request) -> Response:
        client = request.client.host if request.client else "-"
        if not all(limiter.test(limit, "enroll", client) for limit in enroll_failures):
            log.warning("event=enroll_rate_limited client=%s action=too many wrong tokens from this address",
                        client)
            return error_response(429, "rate_limited", "too many failed enrollments; retry later",
                                  headers={"Retry-After": "600"})
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        try:
            req = EnrollRequest.model_validate_json(await request.body())
            key = unb64(req.public_key)
            Ed25519PublicKey.from_public_bytes(key)
        except (ValidationError, ValueError):
            return error_response(422, "bad_request",
                                  "enrollment body must be {device_id, public_key (Ed25519, base64)}")
        result = await run_in_threadpool(redeem_token, store, req.device_id, token, key, settings.limits)
        await run_in_threadpool(store.audit, f"device:{req.device_id}", "enroll", req.device_id,
                                result.outcome.value, result.reason, client)
        if result.outcome is Outcome.ENROLLED:
            log.info("event=device_enrolled device=%s detail=%s", req.device_id, result.reason)
            acked = await run_in_threadpool(store.acked_seq, req.device_id)
            return JSONResponse(EnrollResult(device_id=req.device_id, enrolled=True, acked_seq=acked,
                                             certificate=enrollment_certificate(settings, req.device_id, key))
                                .model_dump())
        if result.outcome is Outcome.REFUSED:
            for limit in enroll_failures:
                limiter.hit(limit, "enroll", client)
        log.warning("event=enroll_refused device=%s client=%s outcome=%s reason=%s action=%s", req.device_id,
                    client, result.outcome.value, result.reason,
                    "issue a new token with 'checkpoint server token' if the device is genuine")
        if result.outcome is Outcome.LOCKED:
            return error_response(429, "rate_limited", "too many failed enrollments; retry later",
                                  headers={"Retry-After": str(result.retry_after_s)})
        if result.outcome is Outcome.KEY_CONFLICT:
            return error_response(409, "already_enrolled", "another key is enrolled for this device id")
        return error_response(401, "unauthorized", "enrollment token refused")

    @app.post(f"{API}/readmit")
    async def readmit(request: Request) -> Response:
        """A device this server no longer knows (database restored or emptied) proves with its
        enrollment certificate and a request signed by the certified key that it is the enrolled
        one. A revoked device stays out; another key enrolled under the id wins."""
        body = await request.body()  # capped by the guard
        client = request.client.host if request.client else "-"
        try:
            req = ReadmitRequest.model_validate_json(body)
            claim = read_enrollment_certificate(settings, req.certificate)
            key = unb64(claim.public_key)
            signature = unb64(request.headers.get(HEADER_SIGNATURE, ""))
        except (ValidationError, ValueError, CheckpointError) as exc:
            log.warning("event=readmit_refused client=%s error=%s action=none; a certificate this server did not "
                        "sign", client, exc)
            return error_response(401, "unauthorized", "readmission refused")
        if (claim.device_id != req.device_id or request.headers.get(HEADER_DEVICE) != req.device_id
                or not verify_signature(key, signature, request.method, request.url.path, body)):
            log.warning("event=readmit_refused device=%s client=%s reason=not signed by the certified key "
                        "action=none", req.device_id, client)
            return error_response(401, "unauthorized", "readmission refused")
        if await run_in_threadpool(store.revocation, req.device_id) is not None:
            log.warning("event=readmit_refused device=%s reason=revoked action=re-admit it with 'checkpoint "
                        "server readmit' if that was a mistake", req.device_id)
            return error_response(401, "unauthorized", "readmission refused")
        if not await run_in_threadpool(store.enroll, req.device_id, key):
            log.warning("event=readmit_refused device=%s reason=another key enrolled action=issue the device "
                        "a token ('checkpoint server token') if it was re-provisioned", req.device_id)
            return error_response(409, "already_enrolled", "another key is enrolled for this device id")
        await run_in_threadpool(store.audit, f"device:{req.device_id}", "readmit", req.device_id, "readmitted",
                                "enrollment certificate", client)
        acked = await run_in_threadpool(store.acked_seq, req.device_id)
        log.warning("event=device_readmitted device=%s acked_seq=%d action=none; the device proved its enrolled "
                    "key (server database restored or emptied?) and resends what this server lacks",
                    req.device_id, acked)
        return JSONResponse(EnrollResult(device_id=req.device_id, enrolled=True, acked_seq=acked,
                                         certificate=req.certificate).model_dump())

    @app.get(f"{API}/enrollment")
    async def enrollment(request: Request) -> Response:
        """The enrollment certificate of the signing device (devices enrolled before certificates)."""
        device_id = authenticate(request, b"")
        key = await run_in_threadpool(store.device_key, device_id)
        acked = await run_in_threadpool(store.acked_seq, device_id)
        return JSONResponse(EnrollResult(device_id=device_id, enrolled=True, acked_seq=acked,
                                         certificate=enrollment_certificate(settings, device_id, key or b""))
                            .model_dump())

    @app.post(f"{API}/heartbeat", status_code=204)
    async def heartbeat(request: Request) -> Response:
        """The device's health on every sync cycle; its arrival is the device's "last seen"."""
        body = await request.body()  # read and capped by the guard
        device_id = authenticate(request, body)
        try:
            beat = Heartbeat.model_validate_json(body)
        except ValidationError:
            return error_response(422, "bad_heartbeat", "heartbeat body does not match the Heartbeat schema")
        if beat.device_id != device_id:
            return error_response(422, "bad_heartbeat", "a heartbeat names the device that signs it")
        await run_in_threadpool(store.record_heartbeat, device_id, datetime.now(UTC), beat.model_dump_json())
        return Response(status_code=204)

    @app.get(f"{API}/time")
    async def server_time(request: Request, nonce: str = Query("", max_length=64)) -> Response:
        authenticate(request, b"")
        if settings.publisher_key is None:
            return error_response(404, "no_time_key", "this server has no publisher key to sign its time")
        now = datetime.now(UTC)
        payload = json.dumps({"now": now.isoformat(), "nonce": nonce}).encode()
        blob = sign_envelope("time", int(now.timestamp()), payload, settings.publisher_key, issued_at=now)
        return Response(blob, media_type=ENVELOPE_MEDIA_TYPE)

    registry = RegistryFile(settings.data_dir)

    def _published(kind: str):
        async def handler(request: Request, have: int = Query(0, ge=0, le=MAX_SEQ)) -> Response:
            device_id = authenticate(request, b"")
            data_dir = settings.data_dir
            if data_dir is None:
                return Response(status_code=204)
            # the policy is each checkpoint's own (the registry maps the device to its checkpoint)
            path = (policy_path_for(data_dir, registry.current(), device_id) if kind == "policy"
                    else data_dir / "published" / f"{kind}.cpenv")
            version = published_version(path)
            if version is None or version <= have:
                return Response(status_code=204)
            return Response(path.read_bytes(), media_type=ENVELOPE_MEDIA_TYPE)
        return handler

    app.add_api_route(f"{API}/trust", _published("trust"), methods=["GET"])
    app.add_api_route(f"{API}/policy", _published("policy"), methods=["GET"])
    app.add_api_route(f"{API}/valuesets", _published("valuesets"), methods=["GET"])

    @app.get(f"{API}/software/{{target}}")
    async def software(request: Request, target: str, have: int = Query(0, ge=0, le=MAX_SEQ)) -> Response:
        """The newest signed release manifest for an OS target, if newer than the device's."""
        authenticate(request, b"")
        if settings.data_dir is None or target not in TARGETS:
            return Response(status_code=204)
        path = settings.data_dir / "published" / "software" / f"{target}.cpenv"
        version = published_version(path)
        if version is None or version <= have:
            return Response(status_code=204)
        return Response(path.read_bytes(), media_type=ENVELOPE_MEDIA_TYPE)

    @app.get(f"{API}/software/files/{{sha256}}")
    async def software_file(request: Request, sha256: str) -> Response:
        """One wheel of a release, by its SHA-256 (the device checks it against the signed manifest)."""
        authenticate(request, b"")
        if settings.data_dir is None or not re.fullmatch(r"[0-9a-f]{64}", sha256):
            return error_response(404, "not_found", "no such release file")
        path = settings.data_dir / "published" / "software" / "files" / f"{sha256}.whl"
        if not path.is_file():
            return error_response(404, "not_found", "no such release file")
        return FileResponse(path, media_type="application/octet-stream")

    @app.get(f"{API}/risk")
    async def risk(request: Request, have: int = Query(0, ge=0, le=MAX_SEQ)) -> Response:
        authenticate(request, b"")
        if risk_updates is None:
            return Response(status_code=204)
        blobs = await run_in_threadpool(risk_updates, have)
        if not blobs:
            return Response(status_code=204)
        return Response(cbor2.dumps(list(blobs)), media_type=CBOR_MEDIA_TYPE)
