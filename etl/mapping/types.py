"""Column types of the mapping language and the casts that turn source values into them.

A cast either returns the canonical Python value of docs/internals.md or raises CastError with a
reason; it never rounds or truncates silently (decimals and timestamps round only when the
mapping says `round: half_even`). Source values may be plain Python or BSON types.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import bson

from etl.coltypes import ColumnType, ColumnTypeError, parse_type
from etl.records import OutOfRangeTime, nested_path

Cast = Callable[[Any], Any]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UTC = dt.UTC


class CastError(Exception):
    """A value that cannot become the column's type; `value_type` names its type, never the value."""

    def __init__(self, reason: str, value: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.value_type = type_name(value)
        self.path = ""
        """Where inside the value (`d`, `items[2].x`) when it is a document or an array; "" otherwise."""

    def within(self, name: str) -> CastError:
        """The same problem seen from the enclosing document's member `name` (a key, or `[index]`)."""
        self.path = nested_path(name, self.path)
        return self


def type_name(value: Any) -> str:
    """The Python/BSON type name of a value, for rejects (the value itself is never reported)."""
    kind = type(value)
    module = kind.__module__
    if module.startswith("bson"):
        return f"bson.{kind.__name__}"
    return kind.__name__


SIMPLE_TYPES = ("string", "int", "float", "bool", "date", "uuid", "bytes", "json", "list", "set")
ALL_TYPE_WORDS = (*SIMPLE_TYPES, "decimal", "decimal(p,s)", "timestamp(p)", "timestamptz(p)", "map")
"""The types a mapping file may declare (with their aliases, see `etl.coltypes.ALIASES`)."""


def mapping_type(text: str) -> ColumnType:
    """A type a mapping file may declare: a column type without a string length or an element type
    (those are written `items:`), and not `time`; raises ColumnTypeError (a ValueError) otherwise."""
    kind = parse_type(text)
    plain = kind.base in SIMPLE_TYPES and not kind.args and kind.element is None
    if not (plain or kind.base == "decimal" or kind.is_timestamp):
        raise ColumnTypeError(f"unknown type `{text}`")
    return kind


def make_cast(
    kind: ColumnType, *, rounding: str | None = None, tz: str | None = None, items: ColumnType | None = None
) -> Cast:
    """The cast function for a column type, with its options bound once."""
    if kind.base == "string":
        return to_string
    if kind.base == "int":
        return to_int
    if kind.base == "float":
        return to_float
    if kind.base == "bool":
        return to_bool
    if kind.base == "decimal":
        return _decimal_cast(kind, rounding)
    if kind.base == "date":
        return to_date
    if kind.base in ("timestamp", "timestamptz"):
        return _timestamp_cast(kind, rounding, zone(tz) if tz else UTC)
    if kind.base == "uuid":
        return to_uuid
    if kind.base == "bytes":
        return to_bytes
    if kind.base == "json":
        return to_plain
    if kind.base in ("list", "set"):
        item_cast = make_cast(items, rounding=rounding, tz=tz) if items else to_plain
        return _list_cast(item_cast) if kind.base == "list" else _set_cast(item_cast)
    raise ValueError(f"unknown type {kind.text}")


def zone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone `{name}` (use an IANA name such as Europe/Paris or UTC)"
        ) from None


def to_string(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal, bson.ObjectId, uuid.UUID)):
        return str(value)
    if isinstance(value, bson.Decimal128):
        return str(decimal128_to_decimal(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CastError("a non-finite float cannot become text", value)
        return repr(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    raise CastError(
        f"a {type_name(value)} cannot become text (use type json for documents and arrays)", value
    )


def to_int(value: Any) -> int:
    if type(value) is int and INT64_MIN <= value <= INT64_MAX:
        return value
    if isinstance(value, bool):
        raise CastError("a bool is not an integer (use type bool)", value)
    if isinstance(value, int):
        result = int(value)
    elif isinstance(value, (Decimal, bson.Decimal128, float, str)):
        number = to_decimal_exact(value)
        if number != number.to_integral_value():
            raise CastError("the number has a fractional part; an integer column would lose it", value)
        result = int(number)
    else:
        raise CastError(f"a {type_name(value)} cannot become an integer", value)
    if not INT64_MIN <= result <= INT64_MAX:
        raise CastError("the integer does not fit in 64 bits", value)
    return result


def decimal128_to_decimal(value: bson.Decimal128) -> Decimal:
    """Exact Decimal of a BSON Decimal128, decoding the IEEE 754-2008 BID layout directly (several
    times faster than bson's bit-by-bit loop); the rare large-coefficient form, NaN and infinity
    are left to bson. Layout: https://github.com/mongodb/specifications (bson-decimal128)."""
    bid = value.bid
    high = int.from_bytes(bid[8:], "little")
    if (high >> 61) & 3 == 3:
        return value.to_decimal()
    coefficient = ((high & 0x1FFFFFFFFFFFF) << 64) | int.from_bytes(bid[:8], "little")
    exponent = ((high >> 49) & 0x3FFF) - 6176
    return Decimal(f"{'-' if high >> 63 else ''}{coefficient}E{exponent}")


def to_decimal_exact(value: Any) -> Decimal:
    """Any number (or numeric text) as an exact, finite Decimal."""
    if isinstance(value, bool):
        raise CastError("a bool is not a number", value)
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, bson.Decimal128):
        number = decimal128_to_decimal(value)
    elif isinstance(value, int):
        number = Decimal(int(value))
    elif isinstance(value, float):
        number = Decimal(repr(value)) if math.isfinite(value) else Decimal("NaN")
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise CastError("the text is not a number", value) from None
    else:
        raise CastError(f"a {type_name(value)} cannot become a number", value)
    if not number.is_finite():
        raise CastError("NaN and infinity cannot be stored as a decimal", value)
    return number


def _decimal_cast(kind: ColumnType, rounding: str | None) -> Cast:
    if kind.precision is None:
        return to_decimal_exact
    precision, scale = kind.precision, kind.scale or 0
    quantum = Decimal(1).scaleb(-scale)
    limit = Decimal(10) ** (precision - scale)

    def cast(value: Any) -> Decimal:
        number = to_decimal_exact(value)
        try:
            fitted = number.quantize(quantum, rounding=ROUND_HALF_EVEN)
        except InvalidOperation:
            raise CastError(f"the number does not fit decimal({precision},{scale})", value) from None
        if fitted != number and rounding != "half_even":
            raise CastError(
                f"the number has more than {scale} decimal places; decimal({precision},{scale}) "
                "would round it (add `round: half_even` to allow rounding)",
                value,
            )
        if abs(fitted) >= limit:
            raise CastError(
                f"the number has more than {precision - scale} digits before the point "
                f"and does not fit decimal({precision},{scale})",
                value,
            )
        return fitted

    return cast


def _float_of(number: int | float | Decimal) -> float:
    """float() of a number; a signalling NaN (which float() refuses with ValueError) is NaN, so
    it is rejected with the other non-finite numbers instead of failing the batch."""
    if isinstance(number, Decimal) and number.is_snan():
        return math.nan
    return float(number)


def to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise CastError("a bool is not a number", value)
    if isinstance(value, (int, float, Decimal)):
        result = _float_of(value)
    elif isinstance(value, bson.Decimal128):
        result = _float_of(decimal128_to_decimal(value))
    elif isinstance(value, str):
        try:
            result = float(value)
        except ValueError:
            raise CastError("the text is not a number", value) from None
    else:
        raise CastError(f"a {type_name(value)} cannot become a float", value)
    if not math.isfinite(result):
        raise CastError("the number is not finite (NaN or infinity, or too large for a float)", value)
    return result


_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise CastError("the text is not one of true/false/yes/no/1/0", value)
    raise CastError(f"a {type_name(value)} cannot become a bool", value)


def _out_of_range(value: OutOfRangeTime) -> NoReturn:
    raise CastError("the source's date or time is infinite or outside years 1-9999, which no "
                    "date or time type here can hold", value)


def to_date(value: Any) -> dt.date:
    if isinstance(value, OutOfRangeTime):
        _out_of_range(value)
    if isinstance(value, dt.datetime):
        if value.time() != dt.time(0) or (value.tzinfo and value.utcoffset()):
            raise CastError(
                "the timestamp has a time of day; type date would drop it "
                "(use type timestamptz, or expr `date(x)` to drop it on purpose)",
                value,
            )
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise CastError("the text is not an ISO date (YYYY-MM-DD)", value) from None
    raise CastError(f"a {type_name(value)} cannot become a date", value)


def _timestamp_cast(kind: ColumnType, rounding: str | None, tz: dt.tzinfo) -> Cast:
    precision = 6 if kind.precision is None else kind.precision
    step = 10 ** (6 - precision)
    aware = kind.base == "timestamptz"

    def cast(value: Any) -> dt.datetime:
        if isinstance(value, dt.datetime):
            stamp = value
        elif isinstance(value, OutOfRangeTime):
            _out_of_range(value)
        elif isinstance(value, bson.Timestamp):
            stamp = value.as_datetime()
        elif isinstance(value, str):
            try:
                stamp = dt.datetime.fromisoformat(value.strip())
            except ValueError:
                raise CastError("the text is not an ISO 8601 timestamp", value) from None
        elif isinstance(value, dt.date):
            stamp = dt.datetime(value.year, value.month, value.day)
        else:
            raise CastError(f"a {type_name(value)} cannot become a timestamp", value)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=tz)
        stamp = stamp.astimezone(UTC)
        extra = stamp.microsecond % step
        if extra:
            if rounding != "half_even":
                raise CastError(
                    f"the timestamp has more than {precision} fractional digits; "
                    "add `round: half_even` to allow rounding",
                    value,
                )
            down = stamp - dt.timedelta(microseconds=extra)
            half = step / 2
            up = extra > half or (extra == half and (down.microsecond // step) % 2 == 1)
            stamp = down + dt.timedelta(microseconds=step) if up else down
        return stamp if aware else stamp.replace(tzinfo=None)

    return cast


def to_uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, bson.Binary) and value.subtype in (bson.binary.UUID_SUBTYPE, 3):
        return uuid.UUID(bytes=bytes(value))
    if isinstance(value, (bytes, bytearray)) and len(value) == 16:
        return uuid.UUID(bytes=bytes(value))
    if isinstance(value, str):
        try:
            return uuid.UUID(value.strip())
        except ValueError:
            raise CastError("the text is not a UUID", value) from None
    raise CastError(f"a {type_name(value)} cannot become a UUID", value)


def to_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, uuid.UUID):
        return value.bytes
    raise CastError(f"a {type_name(value)} cannot become bytes", value)


_UNCHANGED = frozenset({str, bool, type(None), dt.date, dt.time, dt.timedelta, uuid.UUID})


def to_plain(value: Any) -> Any:
    """A value (deeply) as canonical Python kinds: BSON numbers, ids and binaries become plain values."""
    kind = type(value)
    if kind in _UNCHANGED:
        return value
    if kind is int:
        return value
    if kind is dict:
        result = {}
        for key, item in value.items():
            if type(key) is not str:
                raise CastError("a document key is not text", key)
            try:
                result[key] = to_plain(item)
            except CastError as problem:
                raise problem.within(key) from None
        return result
    if kind is list:
        return _plain_list(value)
    if kind is bson.Decimal128:
        return to_decimal_exact(value)
    if kind is Decimal:
        if not value.is_finite():
            raise CastError("NaN and infinity cannot be stored", value)
        return value
    if kind is dt.datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return _to_plain_other(value)


def _plain_list(value: list | tuple) -> list:
    try:
        return [to_plain(item) for item in value]
    except CastError:
        pass
    for index, item in enumerate(value):  # find the member at fault, to name it
        try:
            to_plain(item)
        except CastError as problem:
            raise problem.within(f"[{index}]") from None
    raise AssertionError("a member was refused once and accepted again")


def _to_plain_other(value: Any) -> Any:
    """The slower, subclass-aware path of to_plain."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CastError("NaN and infinity cannot be stored", value)
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, dt.datetime):
        return to_plain(dt.datetime.combine(value.date(), value.timetz()))
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (dt.date, dt.time, dt.timedelta, uuid.UUID)):
        return value
    if isinstance(value, Decimal):
        return to_plain(Decimal(value))
    if isinstance(value, dict):
        return to_plain(dict(value))
    if isinstance(value, (list, tuple)):
        return _plain_list(value)
    if isinstance(value, (set, frozenset)):
        return {to_plain(item) for item in value}
    return _binary_to_plain(value)


def _binary_to_plain(value: Any) -> Any:
    """ObjectIds as their hex text, binaries as bytes (UUID subtype as UUID); nothing else is plain."""
    if isinstance(value, bson.ObjectId):
        return str(value)
    if isinstance(value, bson.Binary):
        if value.subtype == bson.binary.UUID_SUBTYPE:
            return uuid.UUID(bytes=bytes(value))
        return bytes(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise CastError(f"a {type_name(value)} has no plain equivalent (see docs/types.md)", value)


def _list_cast(item_cast: Cast) -> Cast:
    def cast(value: Any) -> list:
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise CastError(f"a {type_name(value)} is not an array", value)
        return [None if item is None else item_cast(item) for item in value]

    return cast


def _set_cast(item_cast: Cast) -> Cast:
    def cast(value: Any) -> set:
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise CastError(f"a {type_name(value)} is not an array", value)
        result = set()
        for item in value:
            if item is None:
                raise CastError("a set cannot hold null", value)
            member = item_cast(item)
            if isinstance(member, (dict, list, set)):
                raise CastError("a set holds only scalars (use type list for documents)", item)
            result.add(member)
        return result

    return cast
