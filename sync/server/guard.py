"""What a request may cost, checked before its body is read (pure ASGI middleware, outermost).

For every request: a Content-Length over the route's cap is refused at once (413); the body is
then read here, counted as it streams (a chunked body over the cap: 413) and within a deadline
(a stalled sender: 408), always answering with ``Connection: close``. Only then does the app see
it. For the signed device endpoints the sender is checked first: the ``X-Device-Id`` must be an
enrolled, not revoked device (401) within its rate (429) and its few concurrent requests, so
an unknown sender never gets a byte of body read; an upload to the admin API needs an operator's
session first. The signature itself covers the body and is verified by the app with the key
looked up here (``request.state.device``, a ``SignedSender``). Device ids are not secret, so the
bytes of all bodies being read at once are capped too (503 beyond): memory stays bounded whoever
sends. For the same reason a request counts against its device's rate only once the app has
verified its signature, and a device's concurrent requests are counted per client address:
requests that merely name a device (forged signatures, stalled bodies) cannot use up its allowance.
Naming devices that are not enrolled costs a database look-up each, so those are limited per client
address: beyond the limit, that address gets 429 for any device whose key is not remembered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from sync.server.ratelimit import device_rate_limiter
from sync.server.settings import RequestLimits
from sync.server.storage import StorageError
from sync.wire.protocol import API, DEVICE_ID_PATTERN, HEADER_DEVICE, ErrorBody

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: device endpoints the guard lets through without an enrolled key (readmit checks its own proof)
UNSIGNED_DEVICE_PATHS = frozenset({f"{API}/health", f"{API}/enroll", f"{API}/readmit"})
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_HEADER_DEVICE = HEADER_DEVICE.lower().encode()


@dataclass
class SignedSender:
    """The device a signed request names and its key, as the guard looked it up before reading the
    body; the app sets ``verified`` once the request's signature checks out with that key."""

    device_id: str
    key: bytes
    verified: bool = False


class _Rejected(Exception):
    def __init__(self, status: int, error: str, detail: str, retry_after: int | None = None):
        super().__init__(detail)
        self.status, self.error, self.detail, self.retry_after = status, error, detail, retry_after


async def send_error(send: Send, status: int, error: str, detail: str, *, retry_after: int | None = None) -> None:
    """A JSON ErrorBody that closes the connection (the rest of a refused body is never read)."""
    body = json.dumps(ErrorBody(error=error, detail=detail).model_dump(exclude_none=True)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class DeviceKeys:
    """Device keys the guard looked up, remembered for ``ttl_s`` seconds (0: every request looks its
    key up). Pushes are checked against the database again in the ingest's own query; other signed
    requests of a device revoked or re-enrolled with a new key meanwhile are refused at most
    ``ttl_s`` later (a request a remembered key fails forgets it at once)."""

    def __init__(self, ttl_s: float):
        self.ttl_s = ttl_s
        self._keys: dict[str, tuple[bytes, float]] = {}
        self._puts = 0

    def get(self, device_id: str, now: float) -> bytes | None:
        entry = self._keys.get(device_id)
        return entry[0] if entry is not None and now - entry[1] < self.ttl_s else None

    def put(self, device_id: str, key: bytes, now: float) -> None:
        if self.ttl_s <= 0:
            return
        self._keys[device_id] = (key, now)
        self._puts += 1
        if self._puts % 10_000 == 0:  # memory stays bounded by the devices heard from lately
            for stale in [d for d, (_key, at) in self._keys.items() if now - at >= self.ttl_s]:
                del self._keys[stale]

    def forget(self, device_id: str) -> None:
        self._keys.pop(device_id, None)

    def __len__(self) -> int:
        return len(self._keys)


class RequestGuard:
    """Caps, deadlines and device pre-authentication in front of the whole app."""

    def __init__(self, app: ASGIApp, *, store: Any, limits: RequestLimits, rate_storage: str = "memory://",
                 executor: Executor | None = None):
        self.app = app
        self.store = store
        #: where device keys are looked up (the app's database executor; anyio's pool if None)
        self.executor = executor
        self.limits = limits
        self.device_rate = device_rate_limiter(limits.device_rate, rate_storage)
        self.keys = DeviceKeys(limits.device_key_cache_s)
        #: requests naming a device that is not enrolled, per client address
        self.unknown_senders = device_rate_limiter(limits.unknown_senders_per_client, rate_storage)
        #: body bytes being read now (all requests), and requests in flight per (device id, client host)
        self.inflight_bytes = 0
        self.device_inflight: dict[tuple[str, str], int] = {}

    def body_cap(self, method: str, path: str) -> int:
        if path == f"{API}/push":
            return self.limits.max_push_bytes
        if method == "PUT" and path.startswith("/admin/api/published/"):
            return self.limits.max_upload_bytes
        return self.limits.max_small_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        cap = self.body_cap(method, path)
        sender: SignedSender | None = None
        slot: tuple[str, str] | None = None
        remembered = False
        reserved = [0]
        try:
            try:
                self._check_length(scope, cap)
                if path.startswith(f"{API}/") and path not in UNSIGNED_DEVICE_PATHS:
                    sender, slot, remembered = await self._check_device(scope)
                elif cap > self.limits.max_small_bytes:
                    await self._check_uploader(scope)
                body = await self._read_body(receive, cap, reserved)
            except _Rejected as exc:
                await send_error(send, exc.status, exc.error, exc.detail, retry_after=exc.retry_after)
                return
            if body is None:  # the client went away
                return
            delivered = False

            async def replay() -> Message:
                nonlocal delivered
                if not delivered:
                    delivered = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            if sender is not None:
                send = self._watching_the_answer(send, sender, remembered)
            await self.app(scope, replay, send)
        finally:
            self.inflight_bytes -= reserved[0]
            if slot is not None:
                left = self.device_inflight.get(slot, 1) - 1
                if left > 0:
                    self.device_inflight[slot] = left
                else:
                    self.device_inflight.pop(slot, None)

    def _watching_the_answer(self, send: Send, sender: SignedSender, remembered: bool) -> Send:
        """``send``, counting the request against the device's rate as its answer starts if the app
        verified its signature, and forgetting a remembered key on a 401 (revoked or re-enrolled
        meanwhile: the next request looks it up)."""
        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                if message["status"] == 401:
                    if remembered:
                        self.keys.forget(sender.device_id)
                elif sender.verified:
                    self.device_rate.hit(sender.device_id)
            await send(message)
        return watch

    @staticmethod
    def _check_length(scope: Scope, cap: int) -> None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    raise _Rejected(400, "bad_request", "invalid Content-Length")
                if int(value) > cap:
                    log.warning("event=request_too_large path=%s content_length=%s cap=%d client=%s action=refused "
                                "before reading", scope["path"], value.decode()[:20], cap, _client(scope))
                    raise _Rejected(413, "too_large", f"request body over {cap} bytes: send smaller batches")

    async def _check_uploader(self, scope: Scope) -> None:
        """Only an operator's session may send a large body (an upload) to the admin API."""
        from sync.server.accounts import Permission, principal_for
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        token, via_cookie = auth.removeprefix("Bearer ").strip(), False
        if not auth.startswith("Bearer "):
            via_cookie = True
            for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
                name, _, value = part.strip().partition("=")
                if name == "cp_session":
                    token = value
        try:
            who = await run_in_threadpool(principal_for, self.store, token, via_cookie=via_cookie)
        except StorageError as exc:
            log.error("event=server_storage_error error=%s action=check the database", exc)
            raise _Rejected(503, "storage_unavailable", "the server cannot reach its database; retry later",
                            retry_after=5) from None
        if who is None:
            raise _Rejected(401, "login_required", "log in as an operator first")
        if not who.may(Permission.OPERATE):
            await run_in_threadpool(self.store.audit, f"user:{who.username}", "denied:operate", scope["path"],
                                    "denied", f"role {who.role.value}", _client(scope))
            raise _Rejected(403, "forbidden", f"role {who.role.value} may not operate")

    async def _check_device(self, scope: Scope) -> tuple[SignedSender, tuple[str, str], bool]:
        """The device id a signed request names, checked enrolled and within its rates (the request
        is counted when answered), its slot among the device's requests in flight, and whether its
        key was a remembered one."""
        device_id = ""
        for name, value in scope["headers"]:
            if name == _HEADER_DEVICE:
                device_id = value.decode("latin-1")
                break
        host = _host(scope)
        if not _DEVICE_ID.fullmatch(device_id):
            self._unknown_sender(host)
            log.warning("event=device_unauthorized reason=missing or malformed device id client=%s path=%s "
                        "action=refused before reading the body",
                        _client(scope), scope["path"])
            raise _Rejected(401, "unauthorized", "request not authenticated")
        now = time.monotonic()
        key = self.keys.get(device_id, now)
        remembered = key is not None
        if key is None:
            self._check_unknown_senders(scope, host, device_id)
            key = await self._look_up(device_id)
            if key is not None:
                self.keys.put(device_id, key, now)
        if key is None:
            self._unknown_sender(host)
            log.warning("event=device_unauthorized device=%s reason=not enrolled or revoked client=%s path=%s "
                        "action=refused before reading the body; if genuine, issue it a token",
                        device_id, _client(scope), scope["path"])
            raise _Rejected(401, "unauthorized", "request not authenticated")
        refused = self.device_rate.peek(device_id)
        if refused is not None:
            limit, wait_s = refused
            retry = _retry_after_s(wait_s)
            log.warning("event=device_rate_limited device=%s limit=%s action=asked to retry in %d s",
                        device_id, limit, retry)
            raise _Rejected(429, "rate_limited", "too many requests; retry later", retry_after=retry)
        slot = (device_id, host)
        if self.device_inflight.get(slot, 0) >= self.limits.device_concurrency:
            log.warning("event=device_concurrency_limited device=%s client=%s in_flight=%d action=asked to retry",
                        device_id, _client(scope), self.device_inflight[slot])
            raise _Rejected(429, "rate_limited", "too many requests at once; retry later", retry_after=1)
        self.device_inflight[slot] = self.device_inflight.get(slot, 0) + 1
        sender = scope.setdefault("state", {})["device"] = SignedSender(device_id, key)
        return sender, slot, remembered

    def _unknown_sender(self, host: str) -> None:
        self.unknown_senders.hit(f"client:{host}")

    def _check_unknown_senders(self, scope: Scope, host: str, device_id: str) -> None:
        """Refuse (429) a key look-up for an address over its limit of requests naming unknown devices."""
        refused = self.unknown_senders.peek(f"client:{host}")
        if refused is None:
            return
        limit, wait_s = refused
        retry = _retry_after_s(wait_s)
        log.warning("event=unknown_senders_limited client=%s device=%s limit=%s action=refused without a look-up; "
                    "asked to retry in %d s (many requests from this address named devices not enrolled)",
                    _client(scope), device_id, limit, retry)
        raise _Rejected(429, "rate_limited", "too many requests; retry later", retry_after=retry)

    async def _look_up(self, device_id: str) -> bytes | None:
        try:
            if self.executor is None:
                return await run_in_threadpool(self.store.active_device_key, device_id)
            return await asyncio.get_running_loop().run_in_executor(self.executor, self.store.active_device_key,
                                                                    device_id)
        except StorageError as exc:
            log.error("event=server_storage_error error=%s action=check the database", exc)
            raise _Rejected(503, "storage_unavailable", "the server cannot reach its database; retry later",
                            retry_after=5) from None

    def _reserve(self, reserved: list[int], total: int) -> None:
        """Count ``total`` bytes of this body against the budget of all bodies being read."""
        more = total - reserved[0]
        if more <= 0:
            return
        if self.inflight_bytes + more > self.limits.max_inflight_bytes:
            log.warning("event=body_budget_exhausted in_flight=%d budget=%d action=asked the client to retry",
                        self.inflight_bytes, self.limits.max_inflight_bytes)
            raise _Rejected(503, "busy", "the server is busy; retry later", retry_after=2)
        self.inflight_bytes += more
        reserved[0] = total

    async def _read_body(self, receive: Receive, cap: int, reserved: list[int]) -> bytes | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.body_timeout_s
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(receive(), remaining)
            except TimeoutError:
                log.warning("event=request_body_timeout after_s=%.0f received=%d action=closed the connection",
                            self.limits.body_timeout_s, size)
                raise _Rejected(408, "timeout", "request body not received in time") from None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                log.warning("event=request_too_large streamed_over=%d action=refused while reading", cap)
                raise _Rejected(413, "too_large", f"request body over {cap} bytes: send smaller batches")
            self._reserve(reserved, size)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _retry_after_s(wait_s: float) -> int:
    """A Retry-After for a limiter's wait: whole seconds, 1 s to an hour."""
    return min(max(1, math.ceil(wait_s)), 3600)


def _host(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "-"


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"
