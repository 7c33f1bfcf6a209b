"""sd_notify in pure Python: READY=1, WATCHDOG=1, STATUS=..., STOPPING=1 to ``$NOTIFY_SOCKET``.

One datagram per message to a unix socket; a leading ``@`` names an abstract socket. Without
``NOTIFY_SOCKET`` (not started by systemd with Type=notify) every call is a cheap no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    """Send systemd notifications; never raises (a lost notification must not stop the daemon)."""

    def __init__(self, address: str | None = None, *, min_watchdog_interval_s: float = 1.0):
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self.address: str | None = None
        if address:
            self.address = "\0" + address[1:] if address.startswith("@") else address
        self._socket: socket.socket | None = None
        self._min_interval = min_watchdog_interval_s
        self._last_watchdog = float("-inf")

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; True when it was sent."""
        if self.address is None:
            return False
        message = "\n".join(assignments).encode("utf-8")
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(message, self.address)
        except OSError as exc:
            log.warning("event=sd_notify_failed socket=%r error=%r", self.address, exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """READY=1 (with an optional STATUS=)."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        """WATCHDOG=1, at most once per ``min_watchdog_interval_s`` (call it every frame)."""
        now = time.monotonic()
        if now - self._last_watchdog < self._min_interval:
            return False
        self._last_watchdog = now
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """STATUS=text (shown by ``systemctl status``)."""
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
