"""sd_notify against a real unix datagram socket (path and abstract)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from edge.device.notify import Notifier


@pytest.fixture
def listener(tmp_path: Path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield str(path), sock
    sock.close()


def test_messages_arrive_as_datagrams(listener):
    path, sock = listener
    n = Notifier(path, min_watchdog_interval_s=0)
    assert n.ready("reading frames")
    assert sock.recv(4096) == b"READY=1\nSTATUS=reading frames"
    assert n.watchdog() and sock.recv(4096) == b"WATCHDOG=1"
    assert n.status("camera lost") and sock.recv(4096) == b"STATUS=camera lost"
    assert n.stopping() and sock.recv(4096) == b"STOPPING=1"
    n.close()


def test_watchdog_is_rate_limited(listener):
    path, sock = listener
    n = Notifier(path, min_watchdog_interval_s=60)
    assert n.watchdog() is True
    assert n.watchdog() is False
    sock.recv(4096)
    sock.settimeout(0.05)
    with pytest.raises(TimeoutError):
        sock.recv(4096)


def test_abstract_socket():
    name = f"checkpoint-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        assert Notifier("@" + name).ready()
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()


def test_unset_socket_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and n.ready() is False and n.watchdog() is False


def test_env_var_and_dead_socket_never_raise(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    n = Notifier()
    assert n.enabled
    assert n.ready() is False  # logged, not raised
