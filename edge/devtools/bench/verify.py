"""``checkpoint bench verify``: full verifications per second on one core, per pass format.

Each figure runs the whole device path (decode, signature, schema, value sets, risk-list lookup,
policy) through ``Verifier.verify`` on the full QR text, nothing cached between calls; median of
several runs. Beside each HC1 figure: the bare signature math of the same vector in the same run
and the ratio of the two (the machine is shared, so ratios are steadier than rates).
The peer figure is the usual Python DCC pipeline (base45 + zlib + pycose 1.1) on the same HC1
vectors, run in its own venv (pycose 1.1 needs cbor2 < 6) as a subprocess; if that venv cannot
be made, the reason is printed instead.

The hostile run (``edge.devtools.hostile``: signed DCCs with tags, big numbers, odd keys, times
past 9999, trailing bytes) prints the worst time any one input took (CPU time of the verifying
thread, and wall time), to show that every input gets its verdict in bounded time, and how many
inputs escaped as ``internal_error`` (must be 0). It runs after the throughput figures so that
its thousands of refusals do not colour them.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.devtools.bench.report import median
from edge.devtools.dgc_testdata import dgc_testdata_dir
from edge.devtools.memory_risk import MemoryRiskList
from edge.lists.policy import default_policy
from edge.passes.credential import PassKind, Vaccination
from edge.passes.trust import TrustedKey, TrustStore
from edge.scan.clock import FixedClock
from edge.scan.verifier import Verifier
from sync.wire.identifiers import IdentifierKey, holder_hash
from sync.wire.risk.types import RiskStatus

DGC = dgc_testdata_dir() / "common/2DCode/raw"
VECTORS = {"hc1_es256": "CO3", "hc1_ps256": "CO1"}
PEER_VENV = Path(__file__).resolve().parents[3] / "var" / "peer-venv"  # the checkout's var/, not the package
PEER_PACKAGES = ["pycose==1.1.0", "cbor2<6", "base45", "cryptography"]


def _rate(verifier: Verifier, text: str, seconds: float, runs: int) -> float:
    """Median full verifications/s; one untimed call first (lazy imports, schema compile)."""
    verifier.verify(text)
    return _calls_per_s(lambda: verifier.verify(text), seconds, runs)


def _calls_per_s(call: Callable[[], object], seconds: float, runs: int) -> float:
    rates = []
    for _ in range(runs):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for _ in range(50):
                call()
            n += 50
        rates.append(n / elapsed)
    return median(rates)


def _bare_signature(verifier: Verifier, text: str) -> Callable[[], object]:
    """Only the signature math of ``text`` (cryptography's verify on prepared inputs), as a yardstick:
    the machine is shared, so the ratio full/bare says more than either figure alone."""
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from edge.passes import cose, hc1

    msg = hc1.decode_hc1(text)
    key = verifier._state.trust.candidates(msg.kid)[0].public_key
    tbs = msg.to_be_signed()
    if msg.alg == cose.ES256:
        der = encode_dss_signature(int.from_bytes(msg.signature[:32], "big"), int.from_bytes(msg.signature[32:], "big"))
        return lambda: key.verify(der, tbs, cose._ECDSA)  # type: ignore[call-arg, union-attr]
    return lambda: key.verify(msg.signature, tbs, cose._PSS, cose._SHA256)  # type: ignore[call-arg, union-attr]


def _risk(at: datetime) -> MemoryRiskList:
    entries = {i.to_bytes(16, "big"): RiskStatus.F1 for i in range(10_000)}
    return MemoryRiskList(entries, published_at=at)


def _cp1() -> tuple[Verifier, str]:
    from edge.passes.cp1 import issue_cp1
    from edge.passes.issuer import IssuerKey

    now = datetime.now(UTC)
    key = IssuerKey.generate("BENCH", "EdDSA", not_before=now - timedelta(days=1))
    holder = holder_hash("bench", IdentifierKey.generate())
    text = issue_cp1(key, PassKind.RESIDENT, holder, issued_at=now, expires_at=now + timedelta(days=1),
                     zones=["*"], vaccination=Vaccination(2, 2))
    clock = FixedClock(now + timedelta(minutes=1))
    return Verifier(trust=TrustStore([key.trusted_key()]), risk=_risk(clock.now()), policy=default_policy(),
                    clock=clock), text


def _hc1(name: str) -> tuple[Verifier, str, str]:
    case = json.loads((DGC / f"{name}.json").read_text(encoding="utf-8-sig"))
    ctx = case["TESTCTX"]
    at = datetime.fromisoformat(ctx["VALIDATIONCLOCK"].replace("Z", "+00:00"))
    trust = TrustStore([TrustedKey.from_certificate(base64.b64decode(ctx["CERTIFICATE"]))])
    return Verifier(trust=trust, risk=_risk(at), policy=default_policy(), clock=FixedClock(at)), case["PREFIX"], \
        ctx["CERTIFICATE"]


PEER_SCRIPT = r'''
import base64, json, sys, time, zlib
import base45
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pycose.keys import EC2Key, RSAKey
from pycose.keys.curves import P256
from pycose.messages import CoseMessage

def key_of(cert_b64):
    pub = x509.load_der_x509_certificate(base64.b64decode(cert_b64)).public_key()
    if isinstance(pub, ec.EllipticCurvePublicKey):
        n = pub.public_numbers()
        return EC2Key(crv=P256, x=n.x.to_bytes(32, "big"), y=n.y.to_bytes(32, "big"))
    n = pub.public_numbers()
    return RSAKey(n=n.n.to_bytes((n.n.bit_length() + 7) // 8, "big"), e=n.e.to_bytes(3, "big"))

def verify(text, key):
    msg = CoseMessage.decode(zlib.decompress(base45.b45decode(text[4:])))
    msg.key = key
    assert msg.verify_signature()

out = {}
seconds, runs = float(sys.argv[1]), int(sys.argv[2])
for name, (text, cert) in json.loads(sys.stdin.read()).items():
    key = key_of(cert)
    rates = []
    for _ in range(runs):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            verify(text, key); n += 1
        rates.append(n / elapsed)
    out[name] = sorted(rates)[len(rates) // 2]
print(json.dumps(out))
'''


def _peer_python() -> tuple[Path | None, str]:
    python = PEER_VENV / "bin" / "python"
    if python.exists():
        return python, ""
    try:
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True, capture_output=True, timeout=120)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True,
                       capture_output=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        return None, f"peer venv could not be made: {exc} {detail.decode(errors='replace')[-300:]}"
    return python, ""


def _peer(vectors: dict[str, tuple[str, str]], seconds: float, runs: int) -> tuple[dict[str, float], str]:
    python, why = _peer_python()
    if python is None:
        return {}, why
    proc = subprocess.run([str(python), "-c", PEER_SCRIPT, str(seconds), str(runs)], input=json.dumps(vectors),
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return {}, f"peer run failed: {proc.stderr.strip()[-300:]}"
    return json.loads(proc.stdout), ""


def _hostile(count: int) -> dict[str, object]:
    """Worst and median ms per input over ``count`` hostile signed DCCs (ES256 and PS256 halves)."""
    from edge.devtools.hc1_issuer import DocumentSigner
    from edge.devtools.hostile import NOW, hostile_passes, verifier_for
    from edge.verdict import Reason

    times, cpu_times, escaped = [], [], 0
    for seed, algorithm in enumerate(("ES256", "PS256")):
        signer = DocumentSigner.generate("VN", algorithm, not_before=NOW - timedelta(days=30))
        verifier = verifier_for(signer)
        texts = list(hostile_passes(signer, count // 2, seed=seed))
        verifier.verify(texts[0])  # imports and schema compiles are start-up, not an input's cost
        for text in texts:
            start, cpu_start = time.perf_counter(), time.thread_time()
            verdict = verifier.verify(text)
            cpu_times.append(time.thread_time() - cpu_start)
            times.append(time.perf_counter() - start)
            escaped += verdict.reason is Reason.INTERNAL_ERROR
    # wall time includes the scheduler (a shared machine preempts for tens of ms); CPU time is
    # the work the input itself caused
    return {"hostile_inputs": len(times), "hostile_worst_cpu_ms_per_input": round(max(cpu_times) * 1000, 3),
            "hostile_worst_wall_ms_per_input": round(max(times) * 1000, 3),
            "hostile_median_ms_per_input": round(median(times) * 1000, 3), "hostile_internal_errors": escaped}


def run(quick: bool = False, **_: object) -> dict[str, object]:
    """Full verifications/s per format (median of runs) and the peer pipeline's rate on the same HC1 vectors."""
    seconds, runs = (0.3, 3) if quick else (1.0, 5)
    figures: dict[str, object] = {}
    verifier, text = _cp1()
    figures["cp1_per_s"] = round(_rate(verifier, text, seconds, runs), 1)
    if not DGC.exists():
        figures["hc1_note"] = f"{DGC} missing: HC1 figures left out"
        figures.update(_hostile(600 if quick else 4000))
        return figures
    peer_vectors = {}
    for label, name in VECTORS.items():
        verifier, text, cert = _hc1(name)
        figures[f"{label}_per_s"] = round(_rate(verifier, text, seconds, runs), 1)
        bare = _calls_per_s(_bare_signature(verifier, text), seconds, runs)
        figures[f"{label}_signature_only_per_s"] = round(bare, 1)
        figures[f"{label}_of_signature_only"] = round(float(figures[f"{label}_per_s"]) / bare, 3)  # type: ignore[arg-type]
        peer_vectors[label] = (text, cert)
    figures.update(_hostile(600 if quick else 4000))
    peer, why = _peer(peer_vectors, seconds, runs)
    if peer:
        figures["peer_hc1_per_s"] = round(median(peer.values()), 1)
        for label, rate in peer.items():
            figures[f"peer_{label}_per_s"] = round(rate, 1)
            figures[f"{label}_vs_peer"] = round(float(figures[f"{label}_per_s"]) / rate, 2)  # type: ignore[arg-type]
    else:
        figures["peer_note"] = why
    return figures
