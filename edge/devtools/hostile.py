"""Hostile EU DCCs for the fuzz test and ``checkpoint bench verify``: signed by a trusted signer,
with values an attacker (or a leaked document-signer key) would put where the reader looks.

Deterministic for a seed, so a failing input can be reproduced from the seed and its index.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import base45
import cbor2

from edge.devtools.hc1_issuer import DocumentSigner, vaccination_payload
from edge.devtools.memory_risk import MemoryRiskList
from edge.lists.policy import default_policy
from edge.passes.cose import ALG_IDS, HDR_ALG, HDR_KID, sign1
from edge.passes.trust import TrustStore
from edge.scan.clock import FixedClock
from edge.scan.verifier import Verifier

NOW = datetime(2026, 6, 1, tzinfo=UTC)

#: values that once cost seconds, raised inside the reader, or were read as something else
HOSTILE_VALUES: tuple[object, ...] = (
    cbor2.CBORTag(4, [999999, 1]), cbor2.CBORTag(4, [-999999, 1]), cbor2.CBORTag(5, [2 ** 62, 1]),
    cbor2.CBORTag(2, b"\xff" * 2000), cbor2.CBORTag(3, b"\x01" * 600), 10 ** 3000, -(2 ** 64),
    cbor2.CBORTag(0, "9999-12-31T23:59:59Z"), cbor2.CBORTag(1, 1e300), cbor2.CBORTag(1, -62135596801),
    cbor2.CBORTag(28, [1]), cbor2.CBORTag(29, 0), cbor2.CBORTag(30, [2 ** 64, 3]), cbor2.CBORTag(35, "(a+)+$"),
    cbor2.CBORTag(36, "Content-Type: text/plain\n\nx"), cbor2.CBORTag(37, b"\0" * 16), cbor2.CBORTag(258, [1, 2]),
    cbor2.CBORTag(99, "x"), cbor2.CBORTag(55799, 1), cbor2.CBORSimpleValue(99), cbor2.undefined,
    float("nan"), float("inf"), 1e308, -0.0, 2.0, 1.5, True, None, b"\x00" * 40, "", "x" * 4000,
    "9999-12-31", "0001-01-01", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+14:00", "2021-02-30",
    "1.3.0\n", "99999.0.0", 2 ** 63, -(2 ** 63), 0, -1, {1.0: 1}, {True: 1}, {b"k": 1}, {(): 1}, [[[[[[[]]]]]]],
    {"v": [{}]}, [None] * 300,
)
TIME_VALUES: tuple[object, ...] = (2 ** 40 - 1, 1e12, -1e12, 2 ** 64 - 1, -(2 ** 63), 253402300799, 253402300800,
                                   -62135596800, -62135596801, 0, 1.5, "2026", None, cbor2.CBORTag(1, 5))
CLAIM_KEYS: tuple[object, ...] = (1, 4, 6, -260, 1.0, 4.0, True, "1", b"\x01", 2 ** 64 - 1, -(2 ** 64))


def verifier_for(signer: DocumentSigner) -> Verifier:
    """The device path (reader, risk list, policy, clock) trusting ``signer``."""
    return Verifier(trust=TrustStore([signer.trusted_key()]), risk=MemoryRiskList({}, published_at=NOW),
                    policy=default_policy(), clock=FixedClock(NOW))


def _wrap(cose: bytes, rng: random.Random) -> str:
    body = zlib.compress(cose, 9)
    if rng.random() < 0.05:
        body += bytes([rng.randrange(256)])  # a byte after the zlib stream
    return "HC1:" + base45.b45encode(body).decode()


def _mutate(node: object, rng: random.Random) -> object:
    """``node`` with one value somewhere replaced by a hostile one (or a key by a hostile key)."""
    if isinstance(node, dict) and node and rng.random() < 0.7:
        key = rng.choice(list(node))
        out = dict(node)
        if rng.random() < 0.15:
            value = out.pop(key)
            hostile_key = rng.choice(CLAIM_KEYS)
            out[hostile_key] = value
        else:
            out[key] = _mutate(out[key], rng)
        return out
    if isinstance(node, list) and node and rng.random() < 0.7:
        out = list(node)
        i = rng.randrange(len(out))
        out[i] = _mutate(out[i], rng)
        if rng.random() < 0.1:
            out.append(out[i])
        return out
    return rng.choice(HOSTILE_VALUES)


def hostile_passes(signer: DocumentSigner, count: int, seed: int = 12) -> Iterator[str]:
    """``count`` QR texts, each a pass signed by ``signer`` with hostile content in one of the
    places the reader looks: the DCC payload, the CWT claims, the COSE headers, the bytes around."""
    rng = random.Random(seed)
    base = vaccination_payload(family_name="Fuzz", given_name="Case", date_of_birth=date(1980, 1, 1), dose=2,
                               series=2, last_dose=date(2026, 1, 1))
    for _ in range(count):
        claims: dict[object, object] = {1: signer.country, 6: int((NOW - timedelta(days=1)).timestamp()),
                                        4: int((NOW + timedelta(days=90)).timestamp()), -260: {1: base}}
        where = rng.random()
        if where < 0.6:
            claims[-260] = {1: _mutate(base, rng)}
        elif where < 0.8:
            claims[rng.choice((4, 6))] = rng.choice(TIME_VALUES)
        elif where < 0.9:
            claims = _mutate(claims, rng)  # type: ignore[assignment]
        if where >= 0.9 and rng.random() < 0.5:
            protected = cbor2.dumps({HDR_ALG: rng.choice((*HOSTILE_VALUES, -7, -37)), HDR_KID: signer.kid})
            cose = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, cbor2.dumps(claims), b"\0" * 64]))
        else:
            try:
                body = cbor2.dumps(claims)
            except (TypeError, ValueError, OverflowError):
                body = cbor2.dumps({"unencodable": True})
            cose = sign1(body, signer.private_key, ALG_IDS[signer.algorithm], signer.kid)
            if where >= 0.95:
                cose += bytes(rng.randrange(1, 4))  # bytes after the COSE item
        text = _wrap(cose, rng)
        if rng.random() < 0.05:  # a flipped character somewhere in the text
            i = rng.randrange(4, len(text))
            text = text[:i] + rng.choice("0A$%*+-./: ") + text[i + 1:]
        yield text
