"""Bounded text -> bytes -> CBOR steps shared by every pass format (prefix, base45, zlib, CBOR).

Every step checks its size limit before doing the work, so hostile input (a zlib bomb, huge
base45, deeply nested CBOR) costs bounded time and memory and ends in ``PassRejected``.
"""

from __future__ import annotations

import io
import math
import re
import threading
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
    if inflater.unused_data:
        # bytes after the stream change the text, not the pass: one pass must have one text
        raise PassRejected(Reason.MALFORMED, f"{len(inflater.unused_data)} byte(s) after the zlib stream",
                           format=fmt)
    return out


#: every CBOR tag that cbor2 would turn into a Python object by itself (dates, big integers, decimal
#: fractions, bigfloats, shared references, rationals, regular expressions, MIME, UUIDs, sets,
#: IP addresses, string references, self-describe): refused while decoding, before any of that
#: work is done. Other tags decode as ``cbor2.CBORTag`` and are refused by ``bounded``.
SEMANTIC_TAGS = (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004, 55799)


class _TagRefused(Exception):
    """Raised inside cbor2 for a semantic tag; ``cbor_decode`` turns it into a refusal."""


def _refuse_tag(tag: int):
    def refuse(_decoder: Any) -> Any:
        raise _TagRefused(tag)
    return refuse


_NO_SEMANTIC_TAGS = {tag: _refuse_tag(tag) for tag in SEMANTIC_TAGS}


def cbor_decode(data: bytes, fmt: str, what: str = "CBOR", *, exact: bool = False) -> Any:
    """One CBOR item, as cbor2 decodes it but with no semantic tag, no duplicate map key and
    bounded depth. ``exact``: nothing may follow the item (the unsigned outer message: bytes after
    it would give one pass many texts); signed content (headers, claims) is covered by its signature.

    Not yet safe to read: ``bounded`` checks what cbor2 still lets through (map key types,
    floats, simple values, unknown tags)."""
    if len(data) > MAX_INFLATED_BYTES:
        raise PassRejected(Reason.TOO_LARGE, f"{what} of {len(data)} bytes", format=fmt)
    try:
        if not exact:
            return cbor2.loads(data, max_depth=MAX_CBOR_DEPTH, allow_duplicate_keys=False,
                               semantic_decoders=_NO_SEMANTIC_TAGS)
        stream = io.BytesIO(data)
        decoder = _exact_decoder()
        decoder.fp = stream
        item = decoder.decode()
    except RecursionError:
        raise PassRejected(Reason.MALFORMED, f"{what} nested too deeply", format=fmt) from None
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, MemoryError, EOFError) as exc:
        raise PassRejected(Reason.MALFORMED, _cbor_problem(exc, what), format=fmt) from None
    if stream.tell() != len(data):
        raise PassRejected(Reason.MALFORMED, f"{len(data) - stream.tell()} byte(s) after the {what} item",
                           format=fmt)
    return item


_DECODERS = threading.local()


def _exact_decoder() -> cbor2.CBORDecoder:
    """This thread's decoder (made once: building one per message costs more than decoding)."""
    decoder = getattr(_DECODERS, "decoder", None)
    if decoder is None:
        decoder = _DECODERS.decoder = cbor2.CBORDecoder(io.BytesIO(), max_depth=MAX_CBOR_DEPTH,
                                                        allow_duplicate_keys=False,
                                                        semantic_decoders=_NO_SEMANTIC_TAGS)
    return decoder


#: how cbor2 reports a failed semantic tag (it keeps only the tag number)
_SEMANTIC_TAG_ERROR = re.compile(r"semantic tag (\d{1,6})\b")


def _cbor_problem(exc: BaseException, what: str) -> str:
    """What was wrong, in our words: library messages may quote the attacker's bytes."""
    cause = exc.__cause__ or exc.__context__
    text = str(exc)
    tag = _SEMANTIC_TAG_ERROR.search(text)
    if isinstance(cause, _TagRefused) or tag:
        number = cause.args[0] if isinstance(cause, _TagRefused) else tag.group(1)  # type: ignore[union-attr]
        return f"{what} uses CBOR tag {number}, which no pass may hold"
    if "uplicate" in text:
        return f"{what} has a duplicate map key"
    if "depth" in text:
        return f"{what} nested too deeply"
    return f"{what} is not well-formed CBOR ({type(exc).__name__})"


def bounded(item: Any, fmt: str, what: str, *, json: bool = False, top_tags: frozenset[int] = frozenset()) -> Any:
    """``item`` (from ``cbor_decode``) if it holds only plain, bounded values; MALFORMED otherwise.

    Plain: text, bytes, integers (below 2**64 in magnitude: no bignum decodes), finite floats, true / false / null,
    arrays and maps whose keys are text or integers (never floats, booleans or anything else,
    so ``1``, ``1.0`` and ``True`` can never name the same key). ``json`` narrows this to what
    a JSON document holds (text keys, no bytes, no floats): the DCC payload has only text and
    integers. A tag is allowed only around the whole item, and only one of ``top_tags``.
    The item is checked in place (nothing copied) and returned as it is.
    """
    inner = item
    if type(item) is cbor2.CBORTag:
        if item.tag not in top_tags:
            raise PassRejected(Reason.MALFORMED, f"{what} uses CBOR tag {_small(item.tag)}", format=fmt)
        inner = item.value
    try:
        check_plain(inner, json, 0)
    except NotPlain as exc:
        raise PassRejected(Reason.MALFORMED, f"{what}: {exc.args[0]}", format=fmt) from None
    return item


class NotPlain(ValueError):
    """A value ``check_plain`` refuses; its message names the kind of value, never the value."""


#: values that need no look inside. Integers need no range check: CBOR's own stay below 2**64 in
#: magnitude and bignums (tags 2 and 3) never decode
PLAIN_LEAVES = _LEAVES = frozenset({str, int, bool, type(None), bytes})
_JSON_LEAVES = frozenset({str, int, bool, type(None)})


def check_plain(value: Any, json: bool = False, depth: int = 0) -> None:
    """NotPlain unless ``value`` is plain and bounded (see ``bounded``, which wraps this)."""
    kind = type(value)
    leaves = _JSON_LEAVES if json else _LEAVES
    if kind is dict or kind is cbor2.frozendict:
        if depth >= MAX_CBOR_DEPTH:
            raise NotPlain("nested too deeply")
        for key, inner in value.items():
            key_kind = type(key)
            if key_kind is not str and (json or key_kind is not int):
                raise NotPlain(f"a map key is {_kind_name(key_kind)}, not {'text' if json else 'text or an integer'}")
            if type(inner) not in leaves:
                check_plain(inner, json, depth + 1)
        return
    if kind is list or kind is tuple:
        if depth >= MAX_CBOR_DEPTH:
            raise NotPlain("nested too deeply")
        for inner in value:
            if type(inner) not in leaves:
                check_plain(inner, json, depth + 1)
        return
    if kind in leaves:
        return
    if kind is float and not json:
        if math.isfinite(value):
            return
        raise NotPlain("a number is not finite")
    if kind is cbor2.CBORTag:
        raise NotPlain(f"CBOR tag {_small(value.tag)} is not allowed here")
    raise NotPlain(f"{_kind_name(kind)} is not allowed here")


_KIND_NAMES = {float: "a float", bytes: "a byte string", bool: "a boolean", type(None): "null", str: "text",
               int: "an integer", tuple: "an array", list: "an array", dict: "a map", cbor2.frozendict: "a map",
               cbor2.CBORSimpleValue: "a CBOR simple value", type(cbor2.undefined): "undefined",
               cbor2.CBORTag: "a tagged item"}


def _kind_name(kind: type) -> str:
    return _KIND_NAMES.get(kind, "a value of an unsupported type")


def _small(number: int) -> str:
    """A tag number for a message (tags are at most 2**64 - 1: bounded, but still kept short)."""
    return str(number) if number < 10**6 else "(large)"


def cbor_loads(data: bytes, fmt: str, what: str = "CBOR", *, json: bool = False,
               top_tags: frozenset[int] = frozenset()) -> Any:
    """Decode one CBOR item to plain, bounded values (``cbor_decode`` then ``bounded``)."""
    return bounded(cbor_decode(data, fmt, what), fmt, what, json=json, top_tags=top_tags)
