"""The canonical encoding: one byte string per value, equal exactly when the target cannot tell
the values apart (docs/checksum.md is the specification; this module implements it).

Every value encodes as ``tag (1 byte) + payload length (4 bytes, big-endian) + payload``.
Containers' payloads are the concatenation of their members' encodings, so the code is
prefix-free and therefore injective: two encodings are equal only when tag and payload are.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
import unicodedata
import uuid
from collections.abc import Callable
from decimal import Decimal

from etl.checksum.tolerances import Tolerances
from etl.coltypes import type_of
from etl.errors import EtlError


class UnencodableValue(EtlError):
    """A row holds a value of a type the canonical encoding does not accept."""


class _Missing:
    """A column absent from a row (a missing field), as opposed to one present with None."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<missing>"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING = _Missing()

TAG_MISSING = b"M"
TAG_NULL = b"N"
TAG_BOOL = b"b"
TAG_NUMBER = b"n"
TAG_FLOAT = b"f"
TAG_STRING = b"s"
TAG_BYTES = b"y"
TAG_UUID = b"u"
TAG_DATE = b"d"
TAG_TIMESTAMP_NAIVE = b"t"
TAG_TIMESTAMP_UTC = b"T"
TAG_TIME = b"h"
TAG_TIME_OFFSET = b"H"
TAG_INTERVAL = b"i"
TAG_MAP = b"m"
TAG_LIST = b"l"
TAG_SET = b"e"

FIXED_NOTATION_LIMIT = 1000
"""Numbers whose adjusted exponent lies within +-this are written in fixed notation, others in
scientific notation, so that a value like 1E+100000000 never expands to a 100 MB string."""

_FIXED_INT_BOUND = 10**FIXED_NOTATION_LIMIT
# PostgreSQL's own epoch, so that its binary send functions yield the payloads unchanged.
_EPOCH_UTC = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_EPOCH_NAIVE = dt.datetime(2000, 1, 1)
_EPOCH_ORDINAL = dt.date(2000, 1, 1).toordinal()
_CANONICAL_NAN = struct.pack(">d", math.nan)
_NULL = TAG_NULL + b"\x00\x00\x00\x00"
_FLOAT_PREFIX = TAG_FLOAT + b"\x00\x00\x00\x08"
_pack_double = struct.Struct(">d").pack
_UTC_PREFIX = TAG_TIMESTAMP_UTC + b"\x00\x00\x00\x08"
_MISSING = TAG_MISSING + b"\x00\x00\x00\x00"
_TRUE = TAG_BOOL + b"\x00\x00\x00\x01\x01"
_FALSE = TAG_BOOL + b"\x00\x00\x00\x01\x00"


def column_base(column_type: str) -> str:
    """The base of the column type a type text names (`etl.coltypes.type_of`: a mapping type or an
    engine's own type name), or "" for a text that names no type. The encoding reads two of them:
    float columns compare IEEE doubles bit for bit (NaN payloads aside), and set columns read as
    sets even when a reader returns lists; in every other column 1, 1.0 and Decimal("1.00") are
    one value."""
    parsed = type_of(column_type)
    return parsed.base if parsed is not None else ""


def _frame(tag: bytes, payload: bytes) -> bytes:
    if len(payload) > 0xFFFFFFFF:
        raise UnencodableValue(f"a value of {len(payload)} bytes is longer than the encoding allows (4 GiB)")
    return tag + len(payload).to_bytes(4, "big") + payload


def number_text(value: Decimal) -> str:
    """The one text of an exact number: no exponent, no trailing fractional zeros, no "-0".

    It is what PostgreSQL's ``trim_scale(numeric)::text`` prints, so SQL can produce it too.
    """
    if value.is_nan():
        return "NaN"
    if value.is_infinite():
        return "-Infinity" if value.is_signed() else "Infinity"
    if abs(value.adjusted()) > FIXED_NOTATION_LIMIT:
        return _scientific_text(value)
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _scientific_text(value: Decimal) -> str:
    """`digitsEexponent` without trailing zeros, for numbers too large or small for fixed notation."""
    sign, digit_tuple, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    if not digits:
        return "0"
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    return f"{'-' if sign else ''}{stripped}E{exponent}"


def _encode_number(value: int | float | Decimal) -> bytes:
    if isinstance(value, int):
        if -_FIXED_INT_BOUND < value < _FIXED_INT_BOUND:
            return _frame(TAG_NUMBER, str(value).encode())
        return _frame(TAG_NUMBER, number_text(Decimal(value)).encode())
    if isinstance(value, float):
        if math.isnan(value):
            return _frame(TAG_NUMBER, b"NaN")
        if math.isinf(value):
            return _frame(TAG_NUMBER, b"Infinity" if value > 0 else b"-Infinity")
        # The shortest text that reads back as this float: what a writer stores for it.
        return _frame(TAG_NUMBER, number_text(Decimal(repr(value))).encode())
    return _frame(TAG_NUMBER, number_text(value).encode())


def _encode_float(value: float) -> bytes:
    if math.isnan(value):
        return _frame(TAG_FLOAT, _CANONICAL_NAN)
    return _frame(TAG_FLOAT, struct.pack(">d", value))


def _signed(value: int) -> bytes:
    """Minimal two's-complement big-endian bytes of an integer."""
    return value.to_bytes((value + (value < 0)).bit_length() // 8 + 1, "big", signed=True)


def _truncate(micros: int, tolerances: Tolerances) -> int:
    precision = tolerances.timestamp_precision
    if precision is None or precision >= 6:
        return micros
    quantum = 10 ** (6 - precision)
    return micros - micros % quantum


def _micros(delta: dt.timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _encode_string(value: str, tolerances: Tolerances, is_key: bool) -> bytes:
    if tolerances.unicode_nfc:
        value = unicodedata.normalize("NFC", value)
    if tolerances.rstrip_char:
        value = value.rstrip(" ")
    if is_key and tolerances.case_insensitive_keys:
        value = value.casefold()
    return _frame(TAG_STRING, value.encode("utf-8", "surrogatepass"))


def encode(
    value: object, column_type: str = "", tolerances: Tolerances | None = None, *, is_key: bool = False
) -> bytes:
    """The canonical encoding of `value` stored in a column of `column_type`.

    `tolerances` quantise before encoding (timestamp precision, NFC, trailing blanks and, with
    `is_key`, letter case of key strings); float ULPs cannot be hashed and are honoured by the
    row-level compare in `diff.py`. Raises `UnencodableValue` (naming the type, never the value).
    """
    return _encode(value, column_base(column_type), tolerances or _EXACT, is_key)


_EXACT = Tolerances()


def _encode(value: object, base: str, tolerances: Tolerances, is_key: bool) -> bytes:
    if value is None:
        return _NULL
    if value is MISSING:
        return _MISSING
    if value is True:
        return _TRUE
    if value is False:
        return _FALSE
    if isinstance(value, str):
        return _encode_string(value, tolerances, is_key)
    if isinstance(value, int | float | Decimal):
        return _encode_in_float_column(value) if base == "float" else _encode_number(value)
    if isinstance(value, dt.date | dt.time | dt.timedelta):
        return _encode_temporal(value, tolerances)
    return _encode_other(value, base, tolerances)


def _encode_in_float_column(value: int | float | Decimal) -> bytes:
    try:
        return _encode_float(float(value))
    except OverflowError:
        raise UnencodableValue(
            f"a {type(value).__name__} too large for a float column", hint="use a decimal column"
        ) from None


def _encode_temporal(value: dt.date | dt.time | dt.timedelta, tolerances: Tolerances) -> bytes:
    """Timestamps (UTC or naive), dates, times of day (with or without an offset) and intervals."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            micros = _micros(value - _EPOCH_UTC)
            return _frame(TAG_TIMESTAMP_UTC, _truncate(micros, tolerances).to_bytes(8, "big", signed=True))
        micros = _micros(value.replace(tzinfo=None) - _EPOCH_NAIVE)
        return _frame(TAG_TIMESTAMP_NAIVE, _truncate(micros, tolerances).to_bytes(8, "big", signed=True))
    if isinstance(value, dt.date):
        return _frame(TAG_DATE, (value.toordinal() - _EPOCH_ORDINAL).to_bytes(4, "big", signed=True))
    if isinstance(value, dt.time):
        micros = _truncate(
            ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond, tolerances
        )
        offset = value.utcoffset()
        if offset is None:
            return _frame(TAG_TIME, micros.to_bytes(8, "big"))
        return _frame(TAG_TIME_OFFSET, micros.to_bytes(8, "big") + _signed(_micros(offset)))
    return _frame(TAG_INTERVAL, _signed(_micros(value)))


def _encode_other(value: object, base: str, tolerances: Tolerances) -> bytes:
    """UUIDs, bytes, maps, sets and lists; anything else is not a canonical value."""
    if isinstance(value, uuid.UUID):
        return _frame(TAG_UUID, value.bytes)
    if isinstance(value, bytes | bytearray | memoryview):
        return _frame(TAG_BYTES, bytes(value))
    if isinstance(value, dict):
        pairs = []
        for key, member in value.items():
            if not isinstance(key, str):
                raise UnencodableValue(f"a map key of type {type(key).__name__}; map keys must be strings")
            pairs.append((_encode_string(key, tolerances, False), _encode(member, "", tolerances, False)))
        pairs.sort()
        return _frame(TAG_MAP, b"".join(k + v for k, v in pairs))
    if isinstance(value, set | frozenset) or (base == "set" and isinstance(value, list | tuple)):
        members = sorted({_encode(member, "", tolerances, False) for member in value})
        return _frame(TAG_SET, b"".join(members))
    if isinstance(value, list | tuple):
        return _frame(TAG_LIST, b"".join(_encode(member, "", tolerances, False) for member in value))
    raise UnencodableValue(
        f"a value of type {type(value).__name__}, which the canonical encoding does not accept",
        hint="map it to one of the canonical Python types listed in docs/internals.md",
    )


def encoder_for(
    column_type: str, tolerances: Tolerances, *, is_key: bool = False
) -> Callable[[object], bytes]:
    """A one-argument encoder for one column, with its type and tolerances bound (used per row)."""
    base = column_base(column_type)
    plain_strings = not (
        tolerances.unicode_nfc or tolerances.rstrip_char or (is_key and tolerances.case_insensitive_keys)
    )
    exact_times = tolerances.timestamp_precision is None or tolerances.timestamp_precision >= 6
    numbers_as_text = base != "float"

    def encode_value(value: object) -> bytes:
        # Fast paths for the commonest values; each gives exactly what `_encode` gives.
        cls = type(value)
        if cls is str and plain_strings:
            data = value.encode("utf-8", "surrogatepass")  # type: ignore[attr-defined]
            return TAG_STRING + len(data).to_bytes(4, "big") + data
        if cls is int and numbers_as_text and -_FIXED_INT_BOUND < value < _FIXED_INT_BOUND:
            data = str(value).encode()
            return TAG_NUMBER + len(data).to_bytes(4, "big") + data
        if cls is float and not numbers_as_text and value == value:  # NaN takes the slow path
            return _FLOAT_PREFIX + _pack_double(value)
        if cls is Decimal and numbers_as_text and value.is_finite():  # type: ignore[attr-defined]
            data = number_text(value).encode()  # type: ignore[arg-type]
            return TAG_NUMBER + len(data).to_bytes(4, "big") + data
        if cls is bool:
            return _TRUE if value else _FALSE
        if cls is dt.datetime and exact_times and value.tzinfo is dt.UTC:  # type: ignore[attr-defined]
            return _UTC_PREFIX + _micros(value - _EPOCH_UTC).to_bytes(8, "big", signed=True)  # type: ignore[operator]
        return _encode(value, base, tolerances, is_key)

    return encode_value
