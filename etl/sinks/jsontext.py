"""JSON text for canonical Python values, without losing anything on the way, and back.

Two forms are written:

* `dumps(value)`: the text the PostgreSQL sink stores in `jsonb` (and `json`) columns. A Decimal is
  a JSON number with all its digits (jsonb numbers are arbitrary-precision numerics); bytes are
  tagged in the style of MongoDB Extended JSON v2, `{"$binary": {"base64": ..., "subType": "00"}}`,
  so they read back as bytes (`loads`), the empty string of bytes included; datetimes, dates,
  times and UUIDs are ISO/text strings. What jsonb cannot hold is refused with `JsonRefused`,
  naming the path inside the value and the cause: NaN and Infinity (JSON has no such numbers) and
  the NUL character U+0000 in a string or a key (PostgreSQL text cannot hold it).
* `dumps(value, decimals_as_strings=True)`: the dead-letter form, where nothing raises: Decimals,
  NaN and Infinity become their exact text, bytes their base64 text, and a value of a type JSON has
  no form for its `str()`.

`loads(text)` reads JSON back with every number exact (fractions as Decimal; integers as int, or
as Decimal when longer than Python's int-from-text limit allows, so a jsonb `1E+6144`, which
PostgreSQL prints as 6,145 digits, reads back as the number it is) and, with `binary=True`, the
`$binary` tags `dumps` writes as bytes. `stored(value)` is `loads(dumps(value))`: what a jsonb
column gives back for `value`, which validation compares with what it reads back.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import uuid
from decimal import Decimal
from typing import Any

from etl.records import FieldProblem

_string = json.JSONEncoder(ensure_ascii=False).encode
_fast = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode

NUL_REFUSED = "PostgreSQL text cannot hold the NUL character U+0000"
NOT_A_NUMBER = "NaN or Infinity has no JSON number form"
BINARY_TAG = "$binary"
BINARY_SUBTYPE = "00"
"""The subtype written for bytes: BSON's generic binary subtype (0)."""
_ESCAPED_NUL = "\\u0000"
_INT_DIGITS = 4000
"""Integers with more digits than this are read as Decimal (Python refuses int() of 4,300 digits)."""


class JsonRefused(FieldProblem, ValueError):
    """A value `dumps` cannot write; names the path inside the value and the cause, never the value."""

    def __str__(self) -> str:
        return f"{self.field_path}: {self.reason}" if self.field_path else self.reason


def dumps(value: Any, *, decimals_as_strings: bool = False) -> str:
    """JSON text of `value` (see the module docstring for both forms); the jsonb form raises
    `JsonRefused` for what jsonb cannot hold."""
    try:  # the C encoder, for the common case of nothing but JSON's own types
        text = _fast(value)
    except (TypeError, ValueError):
        pass
    else:
        if decimals_as_strings or _ESCAPED_NUL not in text:
            return text
    parts: list[str] = []
    _write(value, parts, decimals_as_strings)
    return "".join(parts)


def _write(value: Any, out: list[str], lenient: bool) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float | Decimal):
        _write_number(value, out, lenient)
    elif isinstance(value, str):
        if not lenient and "\x00" in value:
            raise JsonRefused(NUL_REFUSED, "", value)
        out.append(_string(value))
    elif isinstance(value, dict):
        _write_map(value, out, lenient)
    elif isinstance(value, list | tuple | set | frozenset):
        _write_list(value, out, lenient)
    else:
        _write_other(value, out, lenient)


def _write_number(value: float | Decimal, out: list[str], lenient: bool) -> None:
    """A float or Decimal as a JSON number with every digit; in the lenient form a Decimal, NaN and
    infinity are text."""
    if isinstance(value, float):
        if math.isfinite(value):
            out.append(repr(value))
        elif lenient:
            out.append(_string(repr(value)))
        else:
            raise JsonRefused(NOT_A_NUMBER, "", value)
    elif lenient:
        out.append(_string(str(value)))
    elif value.is_finite():
        out.append(str(value))
    else:
        raise JsonRefused(NOT_A_NUMBER, "", value)


def _write_list(value: list | tuple | set | frozenset, out: list[str], lenient: bool) -> None:
    """An array; a set's members in a stable order (by repr)."""
    members = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
    out.append("[")
    for index, member in enumerate(members):
        if index:
            out.append(",")
        try:
            _write(member, out, lenient)
        except JsonRefused as problem:
            raise problem.within(f"[{index}]") from None
    out.append("]")


def _write_other(value: Any, out: list[str], lenient: bool) -> None:
    """Bytes (tagged, or base64 text when lenient), dates and times, UUIDs and intervals as text; in
    the lenient form anything else as its str()."""
    if isinstance(value, bytes | bytearray | memoryview):
        text = _string(base64.b64encode(bytes(value)).decode("ascii"))
        out.append(text if lenient else f'{{"{BINARY_TAG}":{{"base64":{text},"subType":"{BINARY_SUBTYPE}"}}}}'
                   )
    elif isinstance(value, dt.datetime | dt.date | dt.time):
        out.append(_string(value.isoformat()))
    elif isinstance(value, uuid.UUID | dt.timedelta):
        out.append(_string(str(value)))
    elif lenient:
        out.append(_string(str(value)))
    else:
        raise JsonRefused(f"a {type(value).__name__} has no JSON representation", "", value)


def _write_map(value: dict, out: list[str], lenient: bool) -> None:
    out.append("{")
    for index, (name, member) in enumerate(value.items()):
        if index:
            out.append(",")
        key = str(name)
        if not lenient and "\x00" in key:
            raise JsonRefused(NUL_REFUSED + " (in a key)", "", key).within(key.replace("\x00", _ESCAPED_NUL))
        out.append(_string(key))
        out.append(":")
        try:
            _write(member, out, lenient)
        except JsonRefused as problem:
            raise problem.within(key) from None
    out.append("}")


# ---------------------------------------------------------------- reading back


def _big_int(text: str) -> int | Decimal:
    return int(text) if len(text) <= _INT_DIGITS else Decimal(text)


def _binary(members: dict) -> Any:
    """`object_hook`: a `$binary` tag of the subtype `dumps` writes becomes the bytes it holds."""
    if len(members) == 1 and BINARY_TAG in members:
        inner = members[BINARY_TAG]
        if (isinstance(inner, dict) and inner.keys() == {"base64", "subType"}
                and inner["subType"] == BINARY_SUBTYPE and isinstance(inner["base64"], str)):
            try:
                return base64.b64decode(inner["base64"], validate=True)
            except ValueError:
                return members
    return members


_EXACT = json.JSONDecoder(parse_float=Decimal)
_EXACT_BIG = json.JSONDecoder(parse_float=Decimal, parse_int=_big_int)
_BINARY = json.JSONDecoder(parse_float=Decimal, object_hook=_binary)
_BINARY_BIG = json.JSONDecoder(parse_float=Decimal, parse_int=_big_int, object_hook=_binary)


def loads(text: str | bytes | memoryview, *, binary: bool = False) -> Any:
    """JSON with numbers kept exact (fractions as Decimal, integers of any length) and, with
    `binary`, the bytes `dumps` tagged decoded back to bytes.

    A document without surrounding whitespace (what PostgreSQL's jsonb prints) goes straight to the
    C scanner, a third of the cost of `JSONDecoder.decode`; anything else (spaces around it, an error
    and its message) takes `decode`, so results and errors are the same either way. Integers are
    parsed by the C scanner too; only a document with an integer too long for it is parsed again
    with a per-integer hook.
    """
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8")
    tagged = binary and BINARY_TAG in text
    decoder = _BINARY if tagged else _EXACT
    try:
        return _decode(decoder, text)
    except ValueError:  # an integer longer than int() takes, or not JSON (which raises again below)
        return _decode(_BINARY_BIG if tagged else _EXACT_BIG, text)


def _decode(decoder: json.JSONDecoder, text: str) -> Any:
    try:
        value, end = decoder.scan_once(text, 0)  # type: ignore[attr-defined]  # set by __init__, not typed
        if end == len(text):
            return value
    except StopIteration:
        pass
    return decoder.decode(text)


def stored(value: Any) -> Any:
    """What a jsonb column reads back for `value`: `loads(dumps(value), binary=True)`. Raises
    `JsonRefused` when jsonb cannot hold it (the sink rejects such a row)."""
    return loads(dumps(value), binary=True)
