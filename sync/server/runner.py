"""Run the server app with uvicorn: its configuration (shared by ``checkpoint server``) and a
background thread on loopback (demo and tests)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # the server extra installs both; without them the pure-Python h11 and asyncio loop serve
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - depends on the installation
    HttpToolsProtocol = None  # type: ignore[assignment,misc]
try:
    import uvloop  # noqa: F401
    _LOOP = "uvloop"
except ImportError:  # pragma: no cover
    _LOOP = "asyncio"

log = logging.getLogger(__name__)


class _HeaderDeadline:
    """A deadline for the request headers, mixed into uvicorn's HTTP protocols.

    uvicorn times out idle keep-alive connections but not a connection that sends nothing or half
    a request line and stalls: enough of those exhaust the process's file descriptors and every
    device is locked out. Here a connection that has not completed its headers within
    ``header_timeout_s`` is closed (the request body has its own deadline in ``guard``).
    The protocol says whether it waits for headers (``_awaiting_headers``).
    """

    header_timeout_s = 10.0
    _header_timer: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    client: object

    def _awaiting_headers(self) -> bool:
        raise NotImplementedError

    def _arm_header_deadline(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _follow_header_deadline(self) -> None:
        """After bytes arrived: stop the clock once the headers are complete, start it when a new
        request begins on a kept-alive connection."""
        waiting = self._awaiting_headers()
        if not waiting and self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        elif waiting and self._header_timer is None:
            self._arm_header_deadline()

    def _cancel_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._awaiting_headers() and not self.transport.is_closing():
            log.info("event=http_header_timeout client=%s action=closed a connection that sent no complete "
                     "request in %.0f s", self.client, self.header_timeout_s)
            self.transport.close()


class HeaderTimeoutH11Protocol(_HeaderDeadline, H11Protocol):
    """uvicorn's h11 protocol (pure Python) plus the header deadline."""

    def _awaiting_headers(self) -> bool:
        return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)


if HttpToolsProtocol is not None:
    class HeaderTimeoutHttpToolsProtocol(_HeaderDeadline, HttpToolsProtocol):
        """uvicorn's httptools protocol (llhttp, C) plus the header deadline: the same behaviour as
        the h11 one at a fraction of its CPU per request. A request's cycle exists from its
        complete headers on, so the connection waits for headers while it has none or the last
        one is answered."""

        def _awaiting_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_deadline()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.parser is not None:  # not closed by a parse error
                self._follow_header_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_deadline()
            super().connection_lost(exc)


def uvicorn_config(app: FastAPI, *, host: str = "127.0.0.1", port: int = 0, header_timeout_s: float = 10.0,
                   log_level: str = "warning", http: str = "auto") -> uvicorn.Config:
    """The server's uvicorn configuration: httptools (h11 if it is not installed, or ``http="h11"``)
    with a header deadline, uvloop if installed, no access log."""
    base = HeaderTimeoutH11Protocol if http == "h11" or HttpToolsProtocol is None else HeaderTimeoutHttpToolsProtocol
    protocol = type(f"Checkpoint{base.__name__}", (base,), {"header_timeout_s": header_timeout_s})
    return uvicorn.Config(app, host=host, port=port, http=protocol, loop=_LOOP, log_level=log_level,
                          access_log=False, lifespan="on", timeout_keep_alive=30)


class ServerThread:
    """``with ServerThread(app) as srv: srv.url`` - a real HTTP server on 127.0.0.1, a free port."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning",
                 header_timeout_s: float = 10.0, http: str = "auto"):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        config = uvicorn_config(app, header_timeout_s=header_timeout_s, log_level=log_level, http=http)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name=f"server-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server thread did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
