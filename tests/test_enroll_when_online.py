"""A device that starts with no network enrolls itself as soon as the server appears, without a reboot.

The real daemon (Appliance) runs on the demo's provisioned device while the central server's port is
bound but not yet listening (connection refused, as with no network); then the server starts, and the
daemon's own sync client enrolls with the bundle's token file, installs the lists and its scans turn
from amber (device not ready) to the real verdicts.
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

from edge.config import load_config
from edge.device.appliance import Appliance
from edge.devtools.demo.world import Central, demo_now, make_travellers, provision_device, render_frames
from edge.verdict import Decision, Reason
from sync.server.app import create_app
from sync.server.runner import ServerThread


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_daemon_enrolls_when_the_network_appears(tmp_path: Path):
    now = demo_now()
    central = Central.create(tmp_path / "server")
    central.publish(now)
    server = ServerThread(create_app(central.settings))  # port bound, not listening: refused like no network
    people = make_travellers(central, now)
    render_frames(tmp_path / "frames", people)
    provision_device(tmp_path / "device", central, server.url, tmp_path / "frames")
    config = load_config(tmp_path / "device" / "config.toml")  # as `checkpoint run` reads it: replay loops
    config = config.model_copy(update={"sync": config.sync.model_copy(update={"interval_s": 0.5,
                                                                              "backoff_max_s": 0.5})})
    token = config.resolve(config.keys.enroll_token)
    assert token.exists()
    events = []
    appliance = Appliance(config, light_stream=io.StringIO(), on_decision=events.append)
    stop = threading.Event()
    runner = threading.Thread(target=appliance.run, kwargs={"until": stop.is_set}, daemon=True)
    runner.start()
    try:
        wait_until(lambda: len(events) >= 3, 20, "decisions while offline")
        assert token.exists() and appliance.verifier.current is None
        assert {(e.shown, e.verdict.reason) for e in events} == {(Decision.CHECK, Reason.DEVICE_NOT_READY)}
        server.start()
        wait_until(lambda: not token.exists(), 20, "enrollment after the server appeared")
        wait_until(lambda: appliance.verifier.current is not None, 20, "lists installed by the first sync")
        wait_until(lambda: any(e.shown is Decision.PASS for e in events), 20, "a green PASS after enrollment")
    finally:
        stop.set()
        runner.join(30)
        appliance.close()
        server.stop()
    assert not runner.is_alive()


def test_refused_enrollment_keeps_the_token_for_the_next_try(tmp_path: Path):
    now = demo_now()
    central = Central.create(tmp_path / "server")
    central.publish(now)
    render_frames(tmp_path / "frames", make_travellers(central, now)[:1])
    with ServerThread(create_app(central.settings)) as server:
        provision_device(tmp_path / "device", central, server.url, tmp_path / "frames")
        config = load_config(tmp_path / "device" / "config.toml")
        token = config.resolve(config.keys.enroll_token)
        token.write_text("not-the-fleet-token\n")
        appliance = Appliance(config, light_stream=io.StringIO())
        try:
            from edge.device.sync_client import SyncError

            try:
                appliance.sync.run_once()
                raise AssertionError("a wrong token must not enroll")
            except SyncError as exc:
                assert exc.status == 401
            assert token.exists()
            token.write_text(central.enroll_token + "\n")
            appliance.sync.run_once()
            assert not token.exists()
        finally:
            appliance.close()
