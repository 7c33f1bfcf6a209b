"""Bounded text -> bytes -> CBOR steps shared by every pass format (prefix, base45, zlib, CBOR).

Every step checks its size limit before doing the work, so hostile input (a zlib bomb, huge
base45, deeply nested CBOR) costs bounded time and memory and ends in ``PassRejected``.
"""

from __future__ import annotations

import zlib
from typing import Any

import cbor2

from edge.passes.limits import MAX_CBOR_DEPTH, MAX_COMPRESSED_BYTES, MAX_INFLATED_BYTES, MAX_TEXT_CHARS
from edge.verdict import PassRejected, Reason

_B45_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_B45_ALPHABET = frozenset(_B45_CHARS)
#: ``bytes.translate`` table: byte -> base45 digit value, 255 for bytes outside the alphabet
_B45_VALUE = bytes(_B45_CHARS.find(chr(b)) % 256 if chr(b) in _B45_ALPHABET else 255 for b in range(256))
#: the low byte of every 24-bit lane, for the longest text we decode (``&`` keeps the shorter size)
_LANE_MASK = int.from_bytes(b"\0\0\xff" * (MAX_TEXT_CHARS // 3 + 1), "big")


def strip_prefix(text: str, prefix: str, fmt: str) -> str:
    """The base45 body after ``prefix``; TOO_LARGE / MALFORMED when it cannot be a pass."""
    if len(text) > MAX_TEXT_CHARS:
        raise PassRejected(Reason.TOO_LARGE, f"{len(text)} characters > {MAX_TEXT_CHARS}", format=fmt)
    if not text.startswith(prefix):
        raise PassRejected(Reason.NOT_A_PASS, f"missing {prefix!r} prefix", format=fmt)
    return text[len(prefix):].strip()


def b45decode(body: str, fmt: str) -> bytes:
    """Decode base45 text (RFC 9285); MALFORMED on bad characters, length or values.

    Whole-string C-level steps, no per-character Python loop: ``bytes.translate`` maps the text
    to digit values (255 = not base45); the digits, read as one big-endian integer, hold every
    triple ``a, b, c`` in a 24-bit lane, and shifts and masks pick the three digit planes out of it,
    so one big-integer ``a + 45*b + 2025*c`` computes every triple at once. The largest triple,
    91,124, is below 2**17, so no lane carries into the next and a triple above 0xFFFF shows in its
    lane's first byte; deleting every first byte leaves the decoded bytes.
    """
    if len(body) > MAX_TEXT_CHARS:
        raise PassRejected(Reason.TOO_LARGE, "base45 body too long", format=fmt)
    if not body or not body.isascii():
        raise PassRejected(Reason.MALFORMED, "not base45 text", format=fmt)
    digits = body.encode("ascii").translate(_B45_VALUE)
    triples, rest = divmod(len(digits), 3)
    if 255 in digits or rest == 1:
        raise PassRejected(Reason.MALFORMED, "bad base45: invalid character or length", format=fmt)
    full = triples * 3
    lanes = int.from_bytes(digits[:full] if rest else digits, "big")
    out = bytearray((((lanes >> 16) & _LANE_MASK) + 45 * ((lanes >> 8) & _LANE_MASK)
                     + 2025 * (lanes & _LANE_MASK)).to_bytes(full, "big"))
    if out[0::3].count(0) != triples:
        raise PassRejected(Reason.MALFORMED, "bad base45: triple out of range", format=fmt)
    del out[0::3]
    if rest:
        last = digits[full] + 45 * digits[full + 1]
        if last > 255:
            raise PassRejected(Reason.MALFORMED, "bad base45: trailing pair out of range", format=fmt)
        out.append(last)
    return bytes(out)


def inflate(data: bytes, fmt: str, *, required: bool = False) -> bytes:
    """zlib-inflate at most MAX_INFLATED_BYTES; data not starting with a zlib header passes as is.

    The size cap is enforced by ``decompressobj(...).decompress(data, max_length)`` so a bomb
    never expands beyond the cap in memory.
    """
    if len(data) > MAX_COMPRESSED_BYTES:
        raise PassRejected(Reason.TOO_LARGE, f"{len(data)} compressed bytes", format=fmt)
    if len(data) < 2 or data[0] & 0x0F != 8 or ((data[0] << 8) | data[1]) % 31:
        if required:
            raise PassRejected(Reason.MALFORMED, "not zlib data", format=fmt)
        return data  # the DCC spec allows an uncompressed COSE (starts 0xD2 or 0x84)
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_INFLATED_BYTES)
    except zlib.error as exc:
        raise PassRejected(Reason.MALFORMED, f"bad zlib data: {exc}", format=fmt) from None
    if inflater.unconsumed_tail:
        raise PassRejected(Reason.TOO_LARGE, f"inflates beyond {MAX_INFLATED_BYTES} bytes", format=fmt)
    if not inflater.eof:
        raise PassRejected(Reason.MALFORMED, "truncated zlib stream", format=fmt)
    return out


def cbor_loads(data: bytes, fmt: str, what: str = "CBOR") -> Any:
    """Decode one CBOR item: bounded depth, no duplicate map keys."""
    if len(data) > MAX_INFLATED_BYTES:
        raise PassRejected(Reason.TOO_LARGE, f"{what} of {len(data)} bytes", format=fmt)
    try:
        return cbor2.loads(data, max_depth=MAX_CBOR_DEPTH, allow_duplicate_keys=False)
    except RecursionError:
        raise PassRejected(Reason.MALFORMED, f"{what} nested too deeply", format=fmt) from None
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise PassRejected(Reason.MALFORMED, f"bad {what}: {str(exc)[:120]}", format=fmt) from None
