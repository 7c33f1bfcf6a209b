"""EU DCC value sets: the coded fields of a DCC payload must use codes the EU value sets define.

The value sets ship as data (``dcc_valuesets.json``, copied from the public EU repository
ehn-dcc-development/eu-dcc-valuesets; each set names its source file and commit). Checked
fields: the country of vaccination / test / recovery (``co``), the vaccine marketing
authorisation holder (``v/ma``) and, for rapid antigen tests, the test device (``t/ma``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

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
_GROUPS = ("v", "t", "r")
_BY_GROUP = {g: tuple((name, set_id) for (group, name), set_id in CHECKED_FIELDS.items() if group == g)
             for g in _GROUPS}


@lru_cache(maxsize=1)
def value_sets() -> dict[str, frozenset[str]]:
    """Value set id -> its codes (loaded once)."""
    raw = json.loads(resources.files("edge.passes").joinpath("dcc_valuesets.json").read_text(encoding="utf-8"))
    return {name: frozenset(body["codes"]) for name, body in raw.items() if isinstance(body, dict)}


def unknown_codes(dcc: Mapping[str, Any]) -> list[str]:
    """``group/index/field=value (value set)`` for every checked field whose code no value set defines.

    Absent fields are not reported (the schema decides what is required).
    """
    sets = value_sets()
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
                if entry[name] not in sets[set_id]:
                    found.append(f"{group}/{i}/{name}={str(entry[name])[:40]!r} ({set_id})")
    return found
