"""Prefix dispatch: QR text -> the reader of its pass format -> a verified Credential."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime

from edge.passes import cp1
from edge.passes.credential import Credential
from edge.passes.limits import MAX_TEXT_CHARS
from edge.passes.trust import TrustStore
from edge.passes.valuesets import ValueSets
from edge.verdict import PassRejected, Reason


def format_of(text: str) -> str | None:
    """The pass format named by the text's prefix, or None for a QR that is no pass."""
    if text.startswith(cp1.PREFIX):
        return cp1.FMT
    if text.startswith("HC1:"):
        return "HC1"
    return None


@functools.cache
def _read_hc1() -> Callable[[str, TrustStore, datetime | None, ValueSets | None], Credential]:
    """``hc1.read_hc1``, imported on first use (it pulls in the schema libraries), then kept."""
    from edge.passes import hc1

    return hc1.read_hc1


def warm_up() -> None:
    """Import every reader and build its compiled schema now, so the first scan after start-up is
    as fast as the rest (the daemon calls this once; short-lived CLI calls need not)."""
    _read_hc1()
    from edge.passes import hc1

    hc1.compile_schemas()


def read_pass(text: str, trust: TrustStore, now: datetime | None = None,
              value_sets: ValueSets | None = None) -> Credential:
    """Decode and authenticate any supported pass; PassRejected names what is wrong.
    ``value_sets``: the installed EU value sets (the shipped ones when None)."""
    if not isinstance(text, str):
        raise PassRejected(Reason.MALFORMED, f"expected text, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise PassRejected(Reason.TOO_LARGE, f"{len(text)} characters", format=format_of(text))
    fmt = format_of(text)
    if fmt == cp1.FMT:
        return cp1.read_cp1(text, trust, now)
    if fmt == "HC1":
        return _read_hc1()(text, trust, now, value_sets)
    raise PassRejected(Reason.NOT_A_PASS, "no known pass prefix")
