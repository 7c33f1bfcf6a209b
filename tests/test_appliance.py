"""The composed device: config -> appliance -> daemon, on a replay camera, with real stores."""

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import tomli_w
from conftest import COVERS, ID_KEY
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edge.config import load_config
from edge.device.appliance import Appliance
from edge.devtools.synth import render_sequence
from edge.lists.policy import default_policy, sign_policy
from edge.passes.cp1 import issue_cp1
from edge.passes.credential import PassKind, Vaccination
from edge.passes.issuer import IssuerKey
from edge.passes.trust import build_trust_envelope
from edge.scan.clock import FixedClock
from edge.verdict import Decision, Reason
from sync.server.publish.risk import RiskPublisher
from sync.wire.identifiers import holder_hash
from sync.wire.keyfiles import save_public_key
from sync.wire.risk.types import RiskStatus

NOW = datetime.now(UTC).replace(microsecond=0)


def _device(tmp_path: Path, texts: list[str], **sections: dict) -> tuple[Path, Ed25519PrivateKey]:
    publisher = Ed25519PrivateKey.generate()
    data = tmp_path / "device"
    save_public_key(data / "keys/publisher_ed25519.pub.pem", publisher.public_key())
    save_public_key(data / "keys/server_x25519.pub.pem", X25519PrivateKey.generate().public_key())
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, image in enumerate(render_sequence(texts, (640, 480), seed=3, idle_frames=3, hold_frames=5)):
        cv2.imwrite(str(frames / f"{i:04d}.png"), image)
    config = {"device": {"id": "T-1", "checkpoint": "T-CP", "groups": ["hn-zone-1"], "data_dir": str(data)},
              "camera": {"source": "replay", "path": str(frames), "fps": 100.0},
              "light": {"backend": "none"},
              "clock": {"backend": "fixed", "fixed_at": NOW.isoformat()}, **sections}
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(config))
    return path, publisher


def _issuer() -> IssuerKey:
    return IssuerKey.generate("VN-HN-CDC", "EdDSA", not_before=NOW - timedelta(days=10))


def _pass(issuer: IssuerKey, citizen: str) -> str:
    return issue_cp1(issuer, PassKind.RESIDENT, holder_hash(citizen, ID_KEY), expires_at=NOW + timedelta(days=30),
                     zones=("hn-zone-1",), vaccination=Vaccination(2, 2))


def _publish(config_path: Path, publisher: Ed25519PrivateKey, issuer: IssuerKey, store=None) -> None:
    """Install trust list, policy and a risk list as a sync would (into ``store`` when given)."""
    config = load_config(config_path)
    config.resolve(config.trust.path).write_bytes(build_trust_envelope([issuer.trusted_key()], publisher, 1))
    config.resolve(config.policy.path).write_bytes(sign_policy(default_policy("hn-zone-1"), publisher))
    pub = RiskPublisher(config.device.data_dir.parent / "central-risk", publisher, coverage=COVERS)
    pub.publish([(holder_hash("F0-PERSON", ID_KEY), RiskStatus.F0, None)], published_at=NOW)
    if store is None:
        from edge.lists.risk_store import RiskStore
        store = RiskStore.open(config.resolve(config.risk.path), [publisher.public_key()])
    for blob in pub.updates_for(0):
        store.apply(blob)


def test_unprovisioned_device_checks_by_hand_then_verifies_after_install(tmp_path: Path):
    issuer = _issuer()
    texts = [_pass(issuer, "CITIZEN-1"), _pass(issuer, "F0-PERSON")]
    config_path, publisher = _device(tmp_path, texts)
    events = []
    appliance = Appliance(load_config(config_path), on_decision=events.append)
    try:
        assert appliance.verifier.verify(texts[0]).reason == Reason.DEVICE_NOT_READY
        _publish(config_path, publisher, issuer, store=appliance.verifier.risk)
        appliance.verifier.reload("trust")
        assert appliance.daemon.run() == 0
        assert [(e.shown, e.verdict.reason) for e in events] == [
            (Decision.PASS, Reason.OK), (Decision.REFUSE, Reason.RISK_F0)]
        records = appliance.scanlog.records()
        assert [r["decision"] for r in records] == ["PASS", "REFUSE"]
        assert records[0]["policy_version"] == "1" and records[0]["risk_version"] == "1"
    finally:
        appliance.close()


def test_checkpoint_run_cli_reads_replay_to_the_end(tmp_path: Path):
    issuer = _issuer()
    config_path, publisher = _device(tmp_path, [_pass(issuer, "CITIZEN-2")])
    _publish(config_path, publisher, issuer)
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--config", str(config_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    config = load_config(config_path)
    from edge.scan.scanlog import ScanLog
    from sync.wire.keyfiles import load_x25519_public
    log = ScanLog(config.resolve(config.scanlog.path), device_id="T-1", boot_id="x",
                  server_encryption_key=load_x25519_public(config.resolve(config.keys.server_encryption_key)))
    try:
        assert [r["decision"] for r in log.records()] == ["PASS"]
    finally:
        log.close()
    # what the real daemon wrote, read by the real command: lists and backlog are shown (they never were)
    status = subprocess.run([sys.executable, "-m", "edge.cli", "status", "--config", str(config_path)],
                            capture_output=True, text=True, timeout=60)
    assert "risk list:        version 1, published" in status.stdout, status.stdout + status.stderr
    assert "policy:           version 1" in status.stdout and "device:           T-1" in status.stdout
    assert "unsynced records: 1" in status.stdout


def test_stale_risk_list_gives_check_and_the_stale_lamp(tmp_path: Path):
    """Past the policy's maximum risk-list age: the verdict is CHECK and the health probe raises the fault."""
    from edge.scan.clock import FixedClock
    from edge.scan.light import Fault

    issuer = _issuer()
    text = _pass(issuer, "CITIZEN-3")
    config_path, publisher = _device(tmp_path, [text])
    clock = FixedClock(NOW)
    appliance = Appliance(load_config(config_path), clock=clock)
    try:
        _publish(config_path, publisher, issuer, store=appliance.verifier.risk)
        appliance.verifier.reload("trust")
        assert appliance.verifier.verify(text).decision == Decision.PASS
        assert Fault.RISK_STALE not in set(appliance._risk_fault())
        assert appliance.health_probes()  # polled by the daemon

        clock.advance((appliance.verifier.current.policy.max_risk_list_age_hours + 1) * 3600)
        verdict = appliance.verifier.verify(text)
        assert (verdict.decision, verdict.reason) == (Decision.CHECK, Reason.RISK_LIST_STALE)
        assert Fault.RISK_STALE in set(appliance._risk_fault())
    finally:
        appliance.close()


def test_pruning_runs_off_the_scan_path_and_raises_the_disk_fault(tmp_path: Path):
    from edge.scan.light import Fault

    config_path, _publisher = _device(tmp_path, ["CODE"])
    config = load_config(config_path)
    config = config.model_copy(update={"scanlog": config.scanlog.model_copy(update={"min_free_mb": 10**9})})
    appliance = Appliance(config)
    try:
        assert not set(appliance._disk_fault())
        appliance._stop_pruning.set()  # one pass, then return
        appliance._prune_loop()
        assert Fault.DISK_LOW in set(appliance._disk_fault())
    finally:
        appliance.close()


def test_the_staff_screen_reads_what_the_real_device_wrote_not_ready_then_ready(tmp_path: Path):
    """The composed appliance writes its status file; the screen's view of it names what is missing,
    then, after the lists are installed and the device runs again, says ready with today's counts
    seeded from the scan log."""
    from edge.device.staff_screen import ScreenSettings, StatusWatch, view
    from edge.device.status import StatusFile

    issuer = _issuer()
    config_path, publisher = _device(tmp_path, [_pass(issuer, "CITIZEN-9")])
    config = load_config(config_path)
    settings = ScreenSettings(language="en", timezone=config.status.zone(), hold_s=0.001)
    watch = StatusWatch(StatusFile(config.resolve(config.status.path)))

    appliance = Appliance(config)
    try:
        appliance.daemon.state = "running"  # as it is while frames flow
        appliance.daemon._poll_health()
        appliance.daemon._write_status()
        shown = view(*watch.read(), settings)
        assert shown.mode == "not_ready" and "No trust list or policy installed" in shown.problems
        assert "No risk list installed" in shown.problems
        assert "Not enrolled, or no trust list / policy yet" in shown.faults  # the amber lamp's meaning
        _publish(config_path, publisher, issuer, store=appliance.verifier.risk)
        appliance.verifier.reload("trust")
        assert appliance.daemon.run() == 0  # the replay: one PASS, recorded
    finally:
        appliance.close()

    again = Appliance(config)  # a restart later the same day
    try:
        again.daemon.state = "running"
        again.daemon.last_frame_at = again.daemon.monotonic()
        again.daemon._poll_health()
        again.daemon._write_status()
        shown = view(*watch.read(), settings)
        assert shown.mode == "ready", shown
        assert dict(shown.counts) == {"passed": 1, "refused": 0, "checked": 0}  # from the scan log
    finally:
        again.close()


def test_a_pass_handed_back_over_the_barrier_is_checked_by_hand(tmp_path: Path):
    """Anti-passback: the same pass shown again (after leaving the view) within the window gets amber
    repeat_pass, recorded as such; another person's pass in between is still green."""
    issuer = _issuer()
    first, other = _pass(issuer, "CITIZEN-A"), _pass(issuer, "CITIZEN-B")
    config_path, publisher = _device(tmp_path, [first, other, first],
                                     debounce={"forget_after_s": 0.05, "repeat_pass_window_s": 600})
    events = []
    walking = FixedClock(NOW)  # wall time stands still, the frames' monotonic time runs
    walking.monotonic = time.monotonic  # type: ignore[method-assign]
    appliance = Appliance(load_config(config_path), clock=walking, on_decision=events.append)
    try:
        _publish(config_path, publisher, issuer, store=appliance.verifier.risk)
        appliance.verifier.reload("trust")
        assert appliance.daemon.run() == 0
        by_pass: dict[str | None, list[tuple[Decision, Reason]]] = {}
        for e in events:
            by_pass.setdefault(e.verdict.pass_id, []).append((e.shown, e.verdict.reason))
        assert len(by_pass) == 2 and len(by_pass[events[0].verdict.pass_id]) >= 2  # A was shown twice
        for decisions in by_pass.values():  # each pass: green once, then (however often shown) amber
            assert decisions[0] == (Decision.PASS, Reason.OK)
            assert set(decisions[1:]) <= {(Decision.CHECK, Reason.REPEAT_PASS)}
        records = appliance.scanlog.records()
        assert ("CHECK", "repeat_pass") in [(r["decision"], r["reason"]) for r in records]
    finally:
        appliance.close()
