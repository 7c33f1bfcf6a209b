"""A fault-injecting HTTP/1.1 proxy on loopback, between the device and the server (tests only).

It understands just enough HTTP (request/response heads, Content-Length bodies) to apply a fault
to one chosen request while other requests on the same keep-alive connection pass untouched.
Faults: ``drop_response`` (the server handled the request, the device never hears the answer),
``drop_request``, ``reset`` (TCP RST), ``delay``, ``status`` (e.g. 503 + Retry-After, 500),
``truncate`` (half the response body, then close), and the lies of a server that cannot be
trusted: ``rewrite`` (the server's answer body replaced by ``lie(request_body, answer_body)``) and
``forge`` (the request never reaches the server; a 200 answer ``lie(request_body, None)`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Fault:
    action: str
    match: str = ""  # substring of the request line, e.g. "POST /v1/push"
    skip: int = 0  # let this many matching requests through first
    seconds: float = 0.0
    status: int = 503
    retry_after: str | None = None
    lie: Callable[[bytes, bytes | None], bytes] | None = None


@dataclass
class FaultProxy:
    upstream_host: str
    upstream_port: int
    faults: list[Fault] = field(default_factory=list)
    applied: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def pending(self) -> int:
        with self._lock:
            return len(self.faults)

    def start(self) -> FaultProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop).result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _pick(self, request_line: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.match in request_line:
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    self.faults.remove(fault)
                    self.applied.append((request_line, fault.action))
                    return fault
        return None

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                request = await _read_message(client_r)
                if request is None:
                    return
                line = request[:request.find(b"\r\n")].decode("latin-1")
                fault = self._pick(line)
                action = fault.action if fault else "pass"
                if action == "reset":
                    sock = client_w.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    client_w.transport.abort()
                    return
                if action == "drop_request":
                    return
                if action == "status":
                    assert fault is not None
                    body = b'{"error":"injected"}'
                    extra = f"Retry-After: {fault.retry_after}\r\n" if fault.retry_after else ""
                    client_w.write(f"HTTP/1.1 {fault.status} Injected\r\nContent-Type: application/json\r\n"
                                   f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n".encode() + body)
                    await client_w.drain()
                    return
                if action == "forge":
                    assert fault is not None and fault.lie is not None
                    client_w.write(_answer(200, fault.lie(_body(request), None)))
                    await client_w.drain()
                    continue
                if upstream is None:
                    upstream = await asyncio.open_connection(self.upstream_host, self.upstream_port)
                upstream[1].write(request)
                await upstream[1].drain()
                response = await _read_message(upstream[0])
                if response is None:
                    return
                if action == "drop_response":
                    return
                if action == "delay":
                    assert fault is not None
                    await asyncio.sleep(fault.seconds)
                if action == "rewrite":
                    assert fault is not None and fault.lie is not None
                    status = int(response.split(b" ", 2)[1])
                    response = _answer(status, fault.lie(_body(request), _body(response)))
                if action == "truncate":
                    head_end = response.find(b"\r\n\r\n") + 4
                    client_w.write(response[:head_end + max(1, (len(response) - head_end) // 2)])
                    await client_w.drain()
                    return
                client_w.write(response)
                await client_w.drain()
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            return
        finally:
            for writer in (client_w, upstream[1] if upstream else None):
                if writer is not None:
                    with contextlib.suppress(Exception):
                        writer.close()


def _body(message: bytes) -> bytes:
    return message[message.find(b"\r\n\r\n") + 4:]


def _answer(status: int, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status} Lie\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body)


async def _read_message(reader: asyncio.StreamReader) -> bytes | None:
    """One HTTP/1.1 message with a Content-Length body (or none); None at a clean EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        if name.strip().lower() == b"transfer-encoding":
            raise ConnectionError("chunked bodies are not supported by the fault proxy")
    body = await reader.readexactly(length) if length else b""
    return head + body
