"""``POST /v1/push``, the device API's hot path, as a plain ASGI app ahead of the framework's router.

Every scan record of the fleet arrives through here, a hundred at a time. The route needs nothing
FastAPI gives (no parameters, no dependencies, no response model: the body is raw bytes whose
signature is checked), and per request FastAPI's routing, dependency solving and exit stacks cost
about as much CPU as the endpoint's own work outside ingest (``checkpoint bench server``, profiled).
So the guard hands a push straight to ``PushEndpoint``; every other request goes on to FastAPI.
Errors answer with the same ``ErrorBody`` as the rest of the API; anything unexpected propagates
to the app's error middleware (a generic 500, details in the log).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sync.server.guard import SignedSender
from sync.server.ingest import IngestError, ingest_body, verify_signature
from sync.server.settings import ServerSettings
from sync.server.storage import SQLStorage, StorageError
from sync.wire.errors import CheckpointError
from sync.wire.protocol import API, HEADER_SIGNATURE, ErrorBody, b64, push_answer_signing_bytes, unb64
from sync.wire.sealed import HolderOpener

log = logging.getLogger(__name__)

PUSH = f"{API}/push"
_HEADER_SIGNATURE = HEADER_SIGNATURE.lower().encode()


def error_response(status: int, error: str, detail: str = "", acked_seq: int | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """An ``ErrorBody`` answer (what every refusal of the API looks like)."""
    body = ErrorBody(error=error, detail=detail, acked_seq=acked_seq).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


def storage_unavailable(exc: StorageError) -> JSONResponse:
    """503 for a database the server cannot reach: the details are for the operator's log only."""
    log.error("event=server_storage_error error=%s action=check the database", exc)
    return error_response(503, "storage_unavailable", "the server cannot reach its database; retry later",
                          headers={"Retry-After": "5"})


class Unauthorized(CheckpointError):
    """A device request that is not signed by the key the guard looked up (answered 401)."""


def unauthorized(exc: Unauthorized, path: str) -> JSONResponse:
    log.warning("event=device_unauthorized reason=%s path=%s action=refused", exc, path)
    return error_response(401, "unauthorized", "request not authenticated")


def signed_device(device: SignedSender | None, signature_b64: str, method: str, path: str, body: bytes) -> str:
    """The device whose signature the request carries (marked ``verified``). ``device``: what the
    guard looked up before reading the body; ``path`` with its query string, as signed."""
    if device is None:
        raise Unauthorized("no device checked by the guard")
    try:
        signature = unb64(signature_b64)
    except ValueError:
        raise Unauthorized(f"device {device.device_id}: bad signature encoding") from None
    if not verify_signature(device.key, signature, method, path, body):
        raise Unauthorized(f"signature of device {device.device_id!r} does not verify")
    device.verified = True
    return device.device_id


async def _whole_body(receive: Receive) -> bytes | None:
    """The request body (the guard has read and capped it: one message), None if the client left."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class PushEndpoint:
    """ASGI middleware answering ``POST /v1/push`` itself and passing everything else to ``app``.

    Sits inside ``RequestGuard`` (which has capped, read and pre-authenticated the request); the
    ingest runs on ``executor``, whose threads match the storage's connections."""

    def __init__(self, app: ASGIApp, *, settings: ServerSettings, store: SQLStorage, executor: Executor):
        self.app = app
        self.settings = settings
        self.store = store
        self.executor = executor
        self.opener = HolderOpener(settings.encryption_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PUSH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = await _whole_body(receive)
        if body is None:
            return
        try:
            response = await self._push(scope, body)
        except Unauthorized as exc:
            response = unauthorized(exc, scope["path"])
        except StorageError as exc:
            response = storage_unavailable(exc)
        await response(scope, receive, send)

    async def _push(self, scope: Scope, body: bytes) -> Response:
        signature = next((value.decode("latin-1") for name, value in scope["headers"] if name == _HEADER_SIGNATURE), "")
        query = scope.get("query_string", b"").decode("latin-1")
        device: SignedSender | None = scope.get("state", {}).get("device")
        device_id = signed_device(device, signature, "POST", PUSH + (f"?{query}" if query else ""), body)
        settings = self.settings
        try:
            # the key the signature was checked with may be one the guard remembered: the ingest
            # checks it is still the device's (not revoked, not replaced) in its own query
            result = await asyncio.get_running_loop().run_in_executor(
                self.executor, ingest_body, self.store, self.opener, device_id, body, settings.identifier_key,
                device.key)
        except IngestError as exc:
            if exc.status == 401:
                raise Unauthorized(exc.detail) from None
            log.error("event=push_refused device=%s error=%s detail=%s", device_id, exc.error, exc.detail)
            if exc.error == "bad_batch":
                return error_response(exc.status, exc.error, exc.detail)
            acked = await run_in_threadpool(self.store.acked_seq, device_id)
            return error_response(exc.status, exc.error, exc.detail, acked_seq=acked)
        log.info("event=push_ingested device=%s stored=%d duplicates=%d acked_seq=%d", device_id,
                 result.stored, result.duplicates, result.acked_seq)
        if settings.publisher_key is not None:  # only this server can say what it holds
            answer_signature = settings.publisher_key.sign(push_answer_signing_bytes(result, body))
            result = result.model_copy(update={"signature": b64(answer_signature)})
        return Response(result.model_dump_json(), media_type="application/json")
