"""EU DCC value sets: the coded fields of a DCC payload must use codes the EU value sets define.

A stage of its own, after the schema (a code outside the sets is a doubt, ``unknown_code``,
CHECK; never a schema failure). The sets ship with the software as data (``dcc_valuesets.json``,
copied from the public EU repository ehn-dcc-development/eu-dcc-valuesets; each set names its
source file and commit) and are refreshed without a software update as a signed list of kind
``valuesets`` that the publisher seals (``checkpoint valuesets seal``) and each device installs
through sync, like the trust list: verified with the pinned publisher key, never older than the
list in use. Checked fields: the country of vaccination / test / recovery (``co``), the vaccine
marketing authorisation holder (``v/ma``) and, for rapid antigen tests, the test device (``t/ma``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sync.wire.envelope import EnvelopeError, open_envelope, sign_envelope
from sync.wire.errors import CheckpointError

ENVELOPE_KIND = "valuesets"
COUNTRIES = "country-2-codes"
VACCINE_MAH = "vaccines-covid-19-auth-holders"
TEST_DEVICES = "covid-19-lab-test-manufacturer-and-name"
#: test type (LOINC) of a rapid antigen test: the only kind whose ``ma`` names a listed device
RAPID_ANTIGEN = "LP217198-3"
#: (group, field) -> value set id
CHECKED_FIELDS: dict[tuple[str, str], str] = {
    ("v", "co"): COUNTRIES, ("t", "co"): COUNTRIES, ("r", "co"): COUNTRIES,
    ("v", "ma"): VACCINE_MAH, ("t", "ma"): TEST_DEVICES,
}
#: the sets a list must hold to be installed (a list without one would turn every code of it
#: into unknown_code)
REQUIRED_SETS = frozenset(CHECKED_FIELDS.values())
#: bounds on a list: the EU sets hold a few hundred codes each
MAX_CODES_PER_SET = 20_000
MAX_CODE_CHARS = 200
_GROUPS = ("v", "t", "r")
_BY_GROUP = {g: tuple((name, set_id) for (group, name), set_id in CHECKED_FIELDS.items() if group == g)
             for g in _GROUPS}


class ValueSetsError(CheckpointError, ValueError):
    """A value-set list cannot be used (not signed by the publisher, malformed, incomplete)."""


@dataclass(frozen=True)
class ValueSets:
    """Value set id -> its codes, with the list's version (0 = the sets shipped with the software)."""

    sets: Mapping[str, frozenset[str]]
    version: int = 0
    issued_at: datetime | None = None

    def to_payload(self) -> bytes:
        """The list as the publisher signs it: JSON ``{set id: {"codes": [...]}}``."""
        return json.dumps({name: {"codes": sorted(codes)} for name, codes in sorted(self.sets.items())},
                          separators=(",", ":")).encode()

    @classmethod
    def from_payload(cls, payload: bytes, version: int = 0, issued_at: datetime | None = None) -> ValueSets:
        """Parse a list; ValueSetsError unless it holds every checked set as bounded lists of codes."""
        try:
            raw = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueSetsError(f"value-set list is not JSON ({type(exc).__name__})") from None
        if not isinstance(raw, dict):
            raise ValueSetsError("value-set list is not a map of sets")
        sets = {}
        for name, body in raw.items():
            if name.startswith("_"):
                continue  # notes (e.g. "_about")
            codes = body.get("codes") if isinstance(body, dict) else None
            if (not isinstance(codes, list) or len(codes) > MAX_CODES_PER_SET
                    or not all(isinstance(c, str) and 0 < len(c) <= MAX_CODE_CHARS for c in codes)):
                raise ValueSetsError(f"value set {name[:60]} is not a list of at most {MAX_CODES_PER_SET} codes")
            sets[name] = frozenset(codes)
        missing = REQUIRED_SETS - sets.keys()
        if missing:
            raise ValueSetsError(f"value-set list lacks {', '.join(sorted(missing))}")
        return cls(sets, version, issued_at)

    @classmethod
    def from_eu_files(cls, paths: list[Path], version: int) -> ValueSets:
        """The sets as the EU publishes them (one JSON file per set: ``valueSetId`` and the codes
        as the keys of ``valueSetValues``), for the publisher to seal."""
        sets: dict[str, frozenset[str]] = {}
        for path in paths:
            try:
                body = json.loads(path.read_text(encoding="utf-8-sig"))
                sets[str(body["valueSetId"])] = frozenset(str(code) for code in body["valueSetValues"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ValueSetsError(f"{path}: not an EU value-set file ({type(exc).__name__})") from None
        return cls.from_payload(cls(sets).to_payload(), version)

    @classmethod
    def from_envelope(cls, blob: bytes, publisher_keys: list[Ed25519PublicKey]) -> ValueSets:
        """Open a signed ``valuesets`` envelope with the pinned publisher keys."""
        env = open_envelope(blob, ENVELOPE_KIND, publisher_keys)
        return cls.from_payload(env.payload, env.version, env.issued_at)

    def sign_envelope(self, key: Ed25519PrivateKey, issued_at: datetime | None = None) -> bytes:
        """This list as a signed envelope (the publisher's side)."""
        return sign_envelope(ENVELOPE_KIND, self.version, self.to_payload(), key, issued_at)


@lru_cache(maxsize=1)
def shipped() -> ValueSets:
    """The sets shipped with the software (version 0): in use until a signed list is installed."""
    text = resources.files("edge.passes").joinpath("dcc_valuesets.json").read_text(encoding="utf-8")
    return ValueSets.from_payload(text.encode())


def value_sets() -> dict[str, frozenset[str]]:
    """Value set id -> its codes, as shipped."""
    return dict(shipped().sets)


def load_valuesets_file(path: Path, publisher_keys: list[Ed25519PublicKey]) -> ValueSets:
    """The installed list, or the shipped sets when none is installed; ValueSetsError (saying what
    to do) when the file exists but cannot be used."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return shipped()
    except OSError as exc:
        raise ValueSetsError(f"{path}: cannot read the value-set list ({exc.strerror}); sync again") from None
    try:
        return ValueSets.from_envelope(blob, publisher_keys)
    except EnvelopeError as exc:
        raise ValueSetsError(f"{path}: {exc}; sync again to replace it") from None


def unknown_codes(dcc: Mapping[str, Any], sets: ValueSets | None = None) -> list[str]:
    """``group/index/field (value set)`` for every checked field whose code no value set defines.

    Absent fields are not reported (the schema decides what is required). The code itself is not
    quoted: it is the pass's text, not ours.
    """
    known = (sets or shipped()).sets
    found = []
    for group in _GROUPS:
        entries = dcc.get(group)
        if type(entries) is not list and not isinstance(entries, tuple):
            continue
        for i, entry in enumerate(entries):
            if type(entry) is not dict and not isinstance(entry, Mapping):
                continue
            for name, set_id in _BY_GROUP[group]:
                if name not in entry:
                    continue
                if set_id == TEST_DEVICES and entry.get("tt") != RAPID_ANTIGEN:
                    continue  # the device list names rapid antigen tests only; NAAT leaves ma empty
                if entry[name] not in known.get(set_id, ()):
                    found.append(f"{group}/{i}/{name} not in {set_id}")
    return found
