"""``checkpoint bench pipeline``: frame-to-light latency through the whole daemon loop, and peak RSS.

A child process (a daemon as on the device) replays camera-like PNG frames from disk through the
real loop: zxing-cpp decode -> debounce -> the real Verifier (a signed CP1 pass and an EU DCC test
vector, both with good signatures, 10k-entry risk list, default policy) -> the real ScanLog
(SQLite WAL, synchronous=FULL, one fsynced commit per decision) -> gpiozero lamps on MockFactory
pins. Latency runs from the moment the frame is handed to the loop to the lamp being set;
debouncing is off so every frame with a code is one decision. Peak RSS is the child's VmHWM.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import cv2

from edge.devtools.bench.report import median, percentile
from edge.devtools.dgc_testdata import dgc_testdata_dir
from edge.devtools.synth import render_idle, render_scene

SIZES = {"640": (640, 480), "1280": (1280, 720)}


DGC_CASE = dgc_testdata_dir() / "common" / "2DCode" / "raw" / "CO3.json"


def make_scenario(path: Path) -> list[str]:
    """Write the verifier's inputs (trusted keys, instant) to ``path``; return the pass texts to show.

    One signed CP1 pass (Ed25519) and one EU DCC test vector (ES256), both with valid signatures at
    the vector's validation instant, so every decision runs the full signature, risk and policy path
    (the vector then fails the default policy's dose rule: a REFUSE, as costly as a PASS).
    """
    import base64

    from edge.passes.cp1 import issue_cp1
    from edge.passes.credential import PassKind, Vaccination
    from edge.passes.issuer import IssuerKey
    from edge.passes.trust import TrustedKey, TrustStore
    from sync.wire.identifiers import IdentifierKey, holder_hash

    case = json.loads(DGC_CASE.read_text(encoding="utf-8-sig"))
    at = datetime.fromisoformat(case["TESTCTX"]["VALIDATIONCLOCK"].replace("Z", "+00:00"))
    issuer = IssuerKey.generate("BENCH-PIPELINE", "EdDSA", not_before=at - timedelta(days=30))
    holder = holder_hash("pipeline", IdentifierKey.generate())
    cp1 = issue_cp1(issuer, PassKind.RESIDENT, holder, issued_at=at - timedelta(hours=1),
                    expires_at=at + timedelta(days=30), zones=["*"], vaccination=Vaccination(2, 2))
    dsc = TrustedKey.from_certificate(base64.b64decode(case["TESTCTX"]["CERTIFICATE"]))
    trust = TrustStore([issuer.trusted_key(), dsc]).to_payload()
    path.write_text(json.dumps({"at": at.isoformat(), "trust": base64.b64encode(trust).decode()}))
    return [cp1, case["PREFIX"]]


def load_verifier(path: Path):
    """The real Verifier for a scenario file: its trust store, a 10k-entry risk list, default policy."""
    import base64

    from edge.devtools.memory_risk import MemoryRiskList
    from edge.lists.policy import default_policy
    from edge.passes.trust import TrustStore
    from edge.scan.clock import FixedClock
    from edge.scan.verifier import Verifier
    from sync.wire.risk.types import RiskStatus

    doc = json.loads(path.read_text())
    at = datetime.fromisoformat(doc["at"])
    risk = MemoryRiskList({i.to_bytes(16, "big"): RiskStatus.F1 for i in range(10_000)}, published_at=at)
    trust = TrustStore.from_payload(base64.b64decode(doc["trust"]))
    return Verifier(trust=trust, risk=risk, policy=default_policy(), clock=FixedClock(at))


def _write_frames(folder: Path, texts: list[str], size: tuple[int, int], people: int) -> None:
    """Per person: 3 idle frames then 4 frames with their code (camera-like distortions)."""
    n = 0
    for person in range(people):
        for k in range(3):
            cv2.imwrite(str(folder / f"{n:05d}.png"), render_idle(size, person * 7 + k))
            n += 1
        text = texts[person % len(texts)]
        for k in range(4):
            cv2.imwrite(str(folder / f"{n:05d}.png"), render_scene(text, size, 50_000 + person * 10 + k))
            n += 1


def child(folder: str, scenario: str, out: str) -> None:
    """Run the daemon loop over ``folder`` and write its latencies and RSS to ``out`` (JSON)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from edge.config import CameraConfig, LightConfig
    from edge.device.daemon import Daemon
    from edge.device.notify import Notifier
    from edge.scan.camera.replay import ReplaySource
    from edge.scan.clock import SystemClock
    from edge.scan.debounce import Debouncer
    from edge.scan.decode import Decoder
    from edge.scan.light.gpio import GpioLight
    from edge.scan.scanlog import ScanLog

    verifier = load_verifier(Path(scenario))
    clock = SystemClock()
    with tempfile.TemporaryDirectory(prefix="bench-scanlog-") as tmp:
        scanlog = ScanLog(Path(tmp) / "scan.sqlite", device_id="bench", boot_id="bench",
                          server_encryption_key=X25519PrivateKey.generate().public_key(), synchronous="FULL")

        def record(verdict, captured: float) -> None:
            scanlog.append(verdict, wall_time=clock.now(), monotonic=captured, clock_trusted=True)

        light = GpioLight(LightConfig(backend="gpio"), pin_factory=MockFactory(pin_class=MockPWMPin))
        latencies: list[float] = []
        reasons: dict[str, int] = {}

        def on_decision(event) -> None:
            latencies.append(event.latency_ms)
            reasons[event.verdict.reason.value] = reasons.get(event.verdict.reason.value, 0) + 1

        daemon = Daemon(source=ReplaySource(folder, fps=None), decoder=Decoder(),
                        debouncer=Debouncer(forget_after_s=0), verifier=verifier, recorder=record, light=light,
                        clock=clock, camera=CameraConfig(), notifier=Notifier(""), on_decision=on_decision)
        started = time.perf_counter()
        code = daemon.run()
        elapsed = time.perf_counter() - started
        records = scanlog.count()
        scanlog.close()
        light.close()
    Path(out).write_text(json.dumps({
        "code": code, "latencies": latencies, "frames": daemon.frames, "errors": daemon.errors,
        "records": records, "reasons": reasons, "seconds": elapsed,
        "rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: across fork+exec that keeps the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(quick: bool = False, **_: object) -> dict[str, object]:
    """Frame-to-light p50/p99 per size and the daemon process's peak RSS."""
    people = 25 if quick else 100
    figures: dict[str, object] = {"pipeline_verifier": "Verifier (CP1 EdDSA + DCC ES256, 10k risk list)",
                                  "pipeline_scanlog": "ScanLog WAL synchronous=FULL"}
    rss = 0.0
    for label, size in SIZES.items():
        with tempfile.TemporaryDirectory(prefix=f"bench-frames-{label}-") as tmp:
            folder, scenario = Path(tmp) / "frames", Path(tmp) / "scenario.json"
            folder.mkdir()
            _write_frames(folder, make_scenario(scenario), size, people)
            out = Path(tmp) / "result.json"
            proc = subprocess.run([sys.executable, "-m", "edge.devtools.bench.pipeline", str(folder), str(scenario),
                                   str(out)],
                                  capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                raise RuntimeError(f"pipeline child failed: {proc.stderr[-800:]}")
            result = json.loads(out.read_text())
        lat = result["latencies"]
        figures[f"decisions_{label}"] = len(lat)
        figures[f"records_{label}"] = result["records"]
        figures[f"frame_errors_{label}"] = result["errors"]
        figures[f"verdicts_{label}"] = ",".join(f"{k}:{v}" for k, v in sorted(result["reasons"].items()))
        figures[f"frame_to_light_p50_ms_{label}"] = round(median(lat), 3)
        figures[f"frame_to_light_p99_ms_{label}"] = round(percentile(lat, 99), 3)
        figures[f"frame_to_light_max_ms_{label}"] = round(max(lat, default=0.0), 3)
        figures[f"loop_fps_{label}"] = round(result["frames"] / result["seconds"], 1)
        figures[f"rss_mb_{label}"] = round(result["rss_mb"], 1)
        rss = max(rss, result["rss_mb"])
    figures["rss_mb"] = round(rss, 1)
    return figures


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2], sys.argv[3])
