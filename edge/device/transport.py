"""Bounded HTTP for the device: every answer has a size cap and every request a total deadline.

``requests`` alone bounds neither: its timeout is per socket read, so a server that trickles one
byte every few seconds holds a request forever, and ``.content`` reads a body of any size into
memory. Here a watchdog timer shuts the request's socket down when the total deadline passes (in
whichever phase: connect, headers, body), and the body is read in small pieces into a spool that
moves to disk past 1 MiB, refused as soon as it passes the cap for its kind. A hostile or broken
server therefore costs at most the cap on disk, a few MB of memory, and the deadline in time.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from sync.wire.errors import CheckpointError

#: bytes read from the socket per step: small enough to check the deadline and cap often
READ_STEP = 64 * 1024
#: a body larger than this moves from memory to a temporary file while it is being read
SPOOL_IN_MEMORY = 1024 * 1024
#: an error answer is read only this far (its message is for the log)
ERROR_BODY_BYTES = 4 * 1024


class TransportError(CheckpointError, RuntimeError):
    """A request failed, ran past its deadline, or its answer was too large."""


@dataclass(frozen=True)
class Answer:
    """A whole (bounded) HTTP answer."""

    status: int
    headers: dict[str, str]
    body: bytes


_active = threading.local()


class _Watched:
    """The socket of one request in flight, for the watchdog to shut."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.expired = False
        self._lock = threading.Lock()

    def attach(self, sock: socket.socket | None) -> None:
        with self._lock:
            self.sock = sock
            if self.expired:
                self._shut()

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shut()

    def _shut(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)


class _WatchedMixin:
    """Registers the connection's socket with the request in flight on this thread."""

    sock: Any

    def request(self, *args: Any, **kwargs: Any) -> Any:
        result = super().request(*args, **kwargs)  # type: ignore[misc]
        watched = getattr(_active, "watched", None)
        if watched is not None:
            watched.attach(self.sock)
        return result


class _WatchedHTTPConnection(_WatchedMixin, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedMixin, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def bounded_session() -> requests.Session:
    """A session whose connections the deadline watchdog can shut."""
    session = requests.Session()
    adapter = _WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class BoundedTransport:
    """``request()`` with a total deadline and a body cap; one instance per sync client."""

    def __init__(self, *, spool_dir: Path | None = None, session: requests.Session | None = None):
        self.spool_dir = spool_dir
        self.session = session or bounded_session()

    def request(self, method: str, url: str, *, body: bytes = b"", headers: dict[str, str] | None = None,
                max_bytes: int, deadline_s: float, read_timeout_s: float) -> Answer:
        """Send one request and read the whole answer; TransportError past ``deadline_s`` seconds,
        after ``read_timeout_s`` without a byte, or when the answer's body is over ``max_bytes``
        (error answers: only their first 4 KiB are read)."""
        watched = _Watched()
        timer = threading.Timer(deadline_s, watched.expire)
        timer.daemon = True
        _active.watched = watched
        timer.start()
        hdrs = {"Accept-Encoding": "identity", **(headers or {})}  # the cap counts the bytes we keep
        try:
            try:
                resp = self.session.request(method, url, data=body or None, headers=hdrs, stream=True,
                                            timeout=(min(5.0, read_timeout_s, deadline_s), read_timeout_s))
            except requests.RequestException as exc:
                raise self._failed(watched, method, url, deadline_s, exc) from None
            try:
                ok = 200 <= resp.status_code < 300
                payload = self._read(resp, max_bytes if ok else ERROR_BODY_BYTES, truncate=not ok)
            except requests.RequestException as exc:
                raise self._failed(watched, method, url, deadline_s, exc) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:  # reading raw: urllib3's own errors
                raise self._failed(watched, method, url, deadline_s, exc) from None
            finally:
                resp.close()
            return Answer(resp.status_code, dict(resp.headers), payload)
        finally:
            timer.cancel()
            _active.watched = None

    @staticmethod
    def _failed(watched: _Watched, method: str, url: str, deadline_s: float, exc: BaseException) -> TransportError:
        if watched.expired:
            return TransportError(f"{method} {url}: no complete answer within {deadline_s:g} s (server too slow or "
                                  "stalled); will retry later")
        return TransportError(f"{method} {url}: {type(exc).__name__}: {exc}")

    def _read(self, resp: requests.Response, max_bytes: int, *, truncate: bool) -> bytes:
        declared = resp.headers.get("Content-Length", "")
        if not truncate and declared.isdigit() and int(declared) > max_bytes:
            raise TransportError(f"answer of {int(declared):,} bytes is over the {max_bytes:,}-byte limit for "
                                 "this request: refused before reading it")
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, dir=self.spool_dir) as spool:
            size = 0
            while True:
                piece = resp.raw.read1(READ_STEP)
                if not piece:
                    break
                size += len(piece)
                if size > max_bytes:
                    if truncate:
                        spool.write(piece[:max_bytes - (size - len(piece))])
                        break
                    raise TransportError(f"answer over the {max_bytes:,}-byte limit for this request: refused "
                                         "after reading that much")
                spool.write(piece)
            spool.seek(0)
            return spool.read()
