"""``checkpoint conformance dgc DIR``: run the EU DCC test vectors through our HC1 pipeline.

Each case's EXPECTED* flags are compared stage by stage (picture, prefix, base45, zlib,
signature, expiry, key usage, CBOR/JSON decode, schema of the case's own version). The schema
stage is the JSON schema only: EU value sets are a separate stage of the reader (its own reason,
``unknown_code``), as in upstream's runner. Decoded and expected contents are compared as
upstream compares them: date-times as instants (``+00:00`` and ``Z`` name the same one).
Cases known to be broken are reported as known, not as failures: those upstream lists in the
test data's own ``tests/known_issues.csv`` (with its issue), and those in ``dgc_known_issues.csv``
beside this module (path,flags,reason: each with its evidence, a spec clause, an upstream issue
or the sibling case it contradicts).
"""

from __future__ import annotations

import base64
import csv
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import cbor2

from edge.passes import hc1
from edge.passes.codec import b45decode, inflate
from edge.passes.trust import TrustedKey, TrustError, TrustStore
from edge.verdict import PassRejected

log = logging.getLogger(__name__)

#: upstream spellings -> our flag names
FLAG_ALIASES = {"EXPTECTEDEXPIRED": "EXPECTEDEXPIRATIONCHECK"}


@dataclass
class CaseResult:
    path: str
    disagreements: list[str] = field(default_factory=list)
    known: str | None = None

    @property
    def ok(self) -> bool:
        return not self.disagreements


def find_cases(root: Path) -> Iterator[Path]:
    """Every test-case file under ``root`` (JSON files with TESTCTX / EXPECTEDRESULTS, and ``QR``)."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and (path.suffix.lower() == ".json" or path.name == "QR"):
            yield path


def load_case(path: Path) -> dict | None:
    """The case as a dict, or None for files that are not test cases."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not ("TESTCTX" in data or "EXPECTEDRESULTS" in data):
        return None
    return data


def expected_flags(case: dict) -> dict[str, bool]:
    """Every EXPECTED* flag of a case, with upstream misspellings and nesting normalised."""
    flags: dict[str, bool] = {}

    def collect(obj: Any) -> None:
        if not isinstance(obj, dict):
            return
        for key, value in obj.items():
            if key == "EXPECTEDRESULTS":
                collect(value)
            elif key.startswith(("EXPECTED", "EXPTECTED")) and isinstance(value, bool):
                flags[FLAG_ALIASES.get(key, key)] = value

    collect(case)
    return flags


def _clock(ctx: dict) -> datetime | None:
    raw = ctx.get("VALIDATIONCLOCK") or ctx.get("validationClockInstant")
    if not raw:
        return None
    at = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _trust(ctx: dict) -> TrustStore:
    try:
        return TrustStore([TrustedKey.from_certificate(base64.b64decode(ctx.get("CERTIFICATE", "")))])
    except (TrustError, ValueError):
        return TrustStore()


def _ok(fn: Callable[[], Any]) -> bool:
    try:
        return bool(fn())
    except (PassRejected, ValueError, TypeError, KeyError, IndexError, cbor2.CBORError):
        return False


def _cose(case: dict) -> hc1.Sign1:
    """The case's COSE message: from its COSE field, or decoded from PREFIX when that is absent."""
    if "COSE" not in case:
        return hc1.decode_hc1(case["PREFIX"])
    return hc1.parse_sign1(hc1._untag_cwt(bytes.fromhex(case["COSE"])), hc1.FMT)


def _compression(case: dict) -> bool:
    compressed = (bytes.fromhex(case["COMPRESSED"]) if "COMPRESSED" in case
                  else b45decode(case["BASE45"], hc1.FMT))
    return inflate(compressed, hc1.FMT, required=True) == bytes.fromhex(case["COSE"])


def _b45(case: dict) -> bool:
    data = b45decode(case["BASE45"], hc1.FMT)
    if "COMPRESSED" in case:
        return data == bytes.fromhex(case["COMPRESSED"])
    return "COSE" not in case or inflate(data, hc1.FMT, required=True) == bytes.fromhex(case["COSE"])


def _picture(case: dict) -> bool:
    import cv2
    import numpy as np
    import zxingcpp

    png = base64.b64decode(case.get("2DCODE") or case["_2DCODE"])
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    return image is not None and any(r.text == case["PREFIX"] for r in zxingcpp.read_barcodes(image))


_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")


def _comparable(value: Any) -> Any:
    """A JSON-like value with every date-time as its instant (UTC, whole seconds, like upstream's
    runner): the same instant written ``+00:00``, ``Z`` or as a CBOR date compares equal."""
    if isinstance(value, Mapping):
        return {str(k): _comparable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_comparable(v) for v in value]
    if isinstance(value, cbor2.CBORTag):
        return _comparable(value.value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).replace(microsecond=0)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and _DATE_TIME.fullmatch(value):
        try:
            return _comparable(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return value
    return value


def _same_json(decoded: Any, expected: Any) -> bool:
    return _comparable(decoded) == _comparable(expected)


def _verify(case: dict, trust: TrustStore) -> bool:
    hc1.verify_signature(_cose(case), trust)
    return True


def _expiry(case: dict, at: datetime | None) -> bool:
    claims, _ = hc1.read_claims(_cose(case))
    iat, exp = hc1._time(claims.get(hc1.CLAIM_IAT), "iat"), hc1._time(claims.get(hc1.CLAIM_EXP), "exp")
    return at is not None and iat <= at <= exp


def _key_usage(case: dict, trust: TrustStore) -> bool:
    """Whether the TESTCTX certificate's usage OIDs cover the content (independent of the signature)."""
    keys = trust.all_keys()
    if not keys:
        return False
    key = keys[0]
    _, dcc = hc1.read_claims(_cose(case))
    groups = [g for g in ("v", "t", "r") if g in dcc]
    return len(groups) == 1 and key.allows_usage(groups[0])


def _chain_json(case: dict) -> bool:
    _, dcc = hc1.read_claims(hc1.decode_hc1(case["PREFIX"]))
    return _same_json(dcc, case["JSON"])


def _schema(case: dict) -> bool:
    """The payload as the reader reads it (bounded CBOR), against the schema of its own version;
    value sets are not the schema's business (upstream's runner validates the schema only)."""
    _, dcc = hc1.read_claims(_cose(case))
    hc1.validate_payload(dcc)
    return True


def _decode(case: dict) -> bool:
    decoded = cbor2.loads(bytes.fromhex(case["CBOR"]))  # the case's CBOR field: data, not a scanned pass
    if isinstance(decoded, Mapping) and hc1.CLAIM_HCERT in decoded:  # some cases hold the whole CWT
        decoded = decoded[hc1.CLAIM_HCERT][1]
    return _same_json(decoded, case["JSON"])


def _valid_object(case: dict) -> bool:
    hc1.validate_payload(case["JSON"])
    return True


def _unprefix(case: dict) -> bool:
    return case["PREFIX"].startswith(hc1.PREFIX) and case["PREFIX"][len(hc1.PREFIX):] == case["BASE45"]


#: flag -> (check, input fields of which at least one set must be present; absent input = step skipped)
def _checks(case: dict, trust: TrustStore, at: datetime | None) -> dict[str, tuple[Callable[[], Any], list[set]]]:
    cose_or_prefix = [{"COSE"}, {"PREFIX"}]
    return {
        "EXPECTEDPICTUREDECODE": (lambda: _picture(case), [{"2DCODE", "PREFIX"}, {"_2DCODE", "PREFIX"}]),
        "EXPECTEDUNPREFIX": (lambda: _unprefix(case), [{"PREFIX", "BASE45"}]),
        "EXPECTEDB45DECODE": (lambda: _b45(case), [{"BASE45"}]),
        "EXPECTEDCOMPRESSION": (lambda: _compression(case), [{"COSE", "COMPRESSED"}, {"COSE", "BASE45"}]),
        "EXPECTEDVERIFY": (lambda: _verify(case, trust), cose_or_prefix),
        "EXPECTEDEXPIRATIONCHECK": (lambda: _expiry(case, at), cose_or_prefix),
        "EXPECTEDKEYUSAGE": (lambda: _key_usage(case, trust), cose_or_prefix),
        "EXPECTEDDECODE": (lambda: _decode(case), [{"CBOR", "JSON"}]),
        "EXPECTEDVALIDJSON": (lambda: _chain_json(case), [{"PREFIX", "JSON"}]),
        "EXPECTEDSCHEMAVALIDATION": (lambda: _schema(case), cose_or_prefix),
        "EXPECTEDVALIDOBJECT": (lambda: _valid_object(case), [{"JSON"}]),
        "EXPECTEDENCODE": (lambda: _decode(case), [{"CBOR", "JSON"}]),
    }


def check_case(case: dict) -> list[str]:
    """The flags whose observed value disagrees with the expected one, as 'FLAG expected X got Y'."""
    ctx = case.get("TESTCTX") or {}
    checks = _checks(case, _trust(ctx), _clock(ctx))
    disagreements = []
    for flag, expected in expected_flags(case).items():
        check, needs = checks.get(flag, (None, []))
        if check is None or not any(fields <= case.keys() for fields in needs):
            continue
        got = _ok(check)
        if got != expected:
            disagreements.append(f"{flag} expected {expected} got {got}")
    return disagreements


@dataclass(frozen=True)
class KnownIssue:
    flags: frozenset[str]
    reason: str


def load_known_issues(path: Path | None) -> dict[str, KnownIssue]:
    """``path,flags,reason`` rows (paths relative to the test-data folder, flags ';'-separated)."""
    if path is None or not path.exists():
        return {}
    with path.open(encoding="utf-8") as fh:
        return {row["path"]: KnownIssue(frozenset(f for f in (row.get("flags") or "").split(";") if f),
                                        row.get("reason") or "")
                for row in csv.DictReader(fh) if row.get("path")}


#: upstream runner's test name (tests/test_ehealth_certs.py) -> the flags it checks here
UPSTREAM_TEST_FLAGS = {
    "test_cose_schema": frozenset({"EXPECTEDSCHEMAVALIDATION", "EXPECTEDVALIDOBJECT"}),
    "test_cose_json": frozenset({"EXPECTEDDECODE", "EXPECTEDVALIDJSON"}),
    "test_cbor_json": frozenset({"EXPECTEDDECODE", "EXPECTEDVALIDJSON"}),
    "test_cose_cbor": frozenset({"EXPECTEDDECODE"}),
    "test_verification_check": frozenset({"EXPECTEDVERIFY"}),
    "test_expiration_check": frozenset({"EXPECTEDEXPIRATIONCHECK"}),
    "test_expected_key_usage": frozenset({"EXPECTEDKEYUSAGE"}),
    "test_compression": frozenset({"EXPECTEDCOMPRESSION"}),
    "test_b45decode": frozenset({"EXPECTEDB45DECODE"}),
    "test_un_prefix": frozenset({"EXPECTEDUNPREFIX"}),
    "test_picture_decode": frozenset({"EXPECTEDPICTUREDECODE"}),
}


def upstream_known_issues(root: Path) -> list[tuple[str, str, KnownIssue]]:
    """The test data's own list of broken vectors (``tests/known_issues.csv``: test_name, country,
    test_set, reason = the upstream issue), as (country, test set or "", issue) rows."""
    path = root / "tests" / "known_issues.csv"
    if not path.exists():
        return []
    rows = []
    with path.open(encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            name, country, test_set = row.get("test_name") or "", row.get("country") or "", row.get("test_set") or ""
            flags = UPSTREAM_TEST_FLAGS.get(name) if name else frozenset().union(*UPSTREAM_TEST_FLAGS.values())
            if not country or flags is None:
                continue
            where = " ".join(part for part in (name, country, test_set) if part)
            rows.append((country, test_set, KnownIssue(flags, f"upstream tests/known_issues.csv: {where}; "
                                                              f"{row.get('reason') or 'no issue given'}")))
    return rows


def _upstream_issue(rel: str, rows: list[tuple[str, str, KnownIssue]]) -> list[KnownIssue]:
    """The upstream rows that name this case: its country (first folder) and file stem, or the
    whole country (upstream's own matching)."""
    country, stem = rel.split("/", 1)[0], Path(rel).stem
    return [issue for c, test_set, issue in rows if c == country and test_set in ("", stem)]


def run(root: Path, known_issues: dict[str, KnownIssue] | None = None) -> list[CaseResult]:
    """Check every case under ``root``."""
    known_issues = known_issues or {}
    upstream = upstream_known_issues(root)
    results = []
    for path in find_cases(root):
        case = load_case(path)
        if case is None:
            continue
        rel = path.relative_to(root).as_posix()
        try:
            disagreements = check_case(case)
        except Exception as exc:  # a broken case file must not stop the run
            disagreements = [f"case could not be run: {type(exc).__name__}: {exc}"]
        flags = {d.split()[0] for d in disagreements}
        issues = [known_issues[rel]] if rel in known_issues else []
        issues += _upstream_issue(rel, upstream)
        covered = frozenset().union(*(issue.flags for issue in issues)) if issues else frozenset()
        known = None
        if flags and flags <= covered:
            # the evidence of every row whose flags disagree here
            known = "; ".join(issue.reason for issue in issues if issue.flags & flags)
        results.append(CaseResult(rel, disagreements, known))
    return results


DEFAULT_KNOWN = Path(__file__).resolve().parent / "dgc_known_issues.csv"

