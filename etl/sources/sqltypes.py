"""Driver values -> canonical values (docs/internals.md) for the relational sources.

Each converter takes one non-NULL value as a driver returns it and gives the canonical value.
A converter that cannot keep the value exactly never guesses: it raises `ValueRejected` (the
record goes to the dead-letter store) or `Truncated` (the value is kept at the precision Python
can hold and the loss is counted, see docs/types.md). Key positions are encoded as JSON with
type tags so that Decimal, datetime, uuid and bytes survive a checkpoint exactly.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import struct
import uuid
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import Any

from etl.records import Json
from etl.sinks import jsontext

Converter = Callable[[Any], Any]

UTC = dt.UTC


class ValueRejected(Exception):
    """The value has no exact canonical form; the record is rejected with this reason."""


class Truncated(Exception):
    """The value was kept with less precision than the source holds (e.g. nanoseconds)."""

    def __init__(self, value: Any, reason: str) -> None:
        super().__init__(reason)
        self.value = value
        self.reason = reason


# --- large objects and text -------------------------------------------------------------


def decimal_type(precision: int | None, scale: int | None) -> str:
    """The mapping type of an exact number column: `decimal(p,s)` when its precision fits DynamoDB's 38
    digits (and the mapping's), unconstrained `decimal` otherwise."""
    if precision is not None and 1 <= precision <= 38 and scale is not None and 0 <= scale <= precision:
        return f"decimal({precision},{scale})"
    return "decimal"


def read_lob(value: Any) -> Any:
    """oracledb LOB objects (CLOB, NCLOB, BLOB) are read whole; str/bytes pass through."""
    read = getattr(value, "read", None)
    return read() if read is not None else value


def strip_char_padding(value: str) -> str:
    """CHAR(n)/NCHAR(n) pad with spaces; the pad is not data (CHAR comparison ignores it)."""
    return read_lob(value).rstrip(" ")


# --- numbers ---------------------------------------------------------------------------


def to_decimal(value: Any) -> Decimal:
    """Exact decimal; a float from a driver is taken by its shortest repr, never its binary value."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def decimal_with_scale(scale: int) -> Converter:
    """NUMBER(p,s)/NUMERIC(p,s) with s > 0: the declared scale is restored (1.5 -> 1.50)."""
    exponent = Decimal(1).scaleb(-scale)

    def convert(value: Any) -> Decimal:
        number = to_decimal(value)
        fixed = number.quantize(exponent)
        if fixed != number:
            raise ValueRejected(f"value has more than {scale} decimal places")
        return fixed

    return convert


def to_int(value: Any) -> int:
    """NUMBER(p,0) and NUMBER(p,-s): whole numbers as int (exact at any size)."""
    if isinstance(value, int):
        return value
    number = to_decimal(value)
    if number != number.to_integral_value():
        raise ValueRejected("value declared as integer has a fraction")
    return int(number)


MONEY_SCALE = decimal_with_scale(4)
"""SQL Server MONEY/SMALLMONEY: four decimal places."""


# --- date and time ---------------------------------------------------------------------

_ISO_TIMESTAMP = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?\s*(?:([+-])(\d\d):?(\d\d)|Z)?$"
)


def _fraction(digits: str | None) -> tuple[int, bool]:
    """Microseconds of a fractional-second string and whether non-zero digits beyond 6 were lost."""
    if not digits:
        return 0, False
    padded = digits.ljust(9, "0")
    return int(padded[:6]), padded[6:] != "000"


def parse_timestamp(text: str, *, aware: bool) -> dt.datetime:
    """ISO-8601 text (up to nanoseconds) from the server -> datetime; sub-microsecond digits -> Truncated.

    `aware`: the text is UTC (or carries an offset) and the result is UTC-aware.
    """
    match = _ISO_TIMESTAMP.match(text.strip())
    if match is None:
        raise ValueRejected("timestamp text is not ISO-8601")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    micros, lost = _fraction(match.group(7))
    value = dt.datetime(year, month, day, hour, minute, second, micros)
    if aware:
        offset = dt.timedelta()
        if match.group(8):
            offset = dt.timedelta(hours=int(match.group(9)), minutes=int(match.group(10)))
            if match.group(8) == "-":
                offset = -offset
        value = (value - offset).replace(tzinfo=UTC)
    if lost:
        raise Truncated(value, "sub-microsecond digits dropped")
    return value


def naive_timestamp(value: Any) -> dt.datetime:
    """A timestamp without time zone; FreeTDS may return text."""
    if isinstance(value, str):
        return parse_timestamp(value, aware=False)
    return value


def utc_timestamp(value: Any) -> dt.datetime:
    """A naive datetime known to be UTC (SYS_EXTRACT_UTC, session time zone UTC) -> aware UTC."""
    if isinstance(value, str):
        return parse_timestamp(value, aware=True)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def to_date(value: Any) -> dt.date:
    """DATE without time; FreeTDS may return text, some drivers a midnight datetime."""
    if isinstance(value, str):
        return dt.date.fromisoformat(value.strip()[:10])
    if isinstance(value, dt.datetime):
        return value.date()
    return value


def to_time(value: Any) -> dt.time:
    """TIME(n); text (FreeTDS) with 7 fractional digits reports the dropped 100 ns."""
    if isinstance(value, dt.time):
        return value
    text = value.strip()
    head, _, digits = text.partition(".")
    hour, minute, second = (int(part) for part in head.split(":"))
    micros, lost = _fraction(digits or None)
    result = dt.time(hour, minute, second, micros)
    if lost:
        raise Truncated(result, "sub-microsecond digits dropped")
    return result


_DATETIMEOFFSET = struct.Struct("<6hI2h")
"""SQL_SS_TIMESTAMPOFFSET_STRUCT: year, month, day, hour, minute, second, fraction (ns),
timezone_hour, timezone_minute (msodbcsql docs, "Data Type Support for ODBC Date and Time
Improvements": https://learn.microsoft.com/sql/relational-databases/native-client-odbc-date-time/data-type-support-for-odbc-date-and-time-improvements)."""


def datetimeoffset(value: Any) -> dt.datetime:
    """SQL Server DATETIMEOFFSET -> UTC-aware datetime; raw ODBC bytes (SQL type -155) or text."""
    if isinstance(value, dt.datetime):
        return utc_timestamp(value)
    if isinstance(value, str):
        return parse_timestamp(value, aware=True)
    year, month, day, hour, minute, second, nanos, tz_hour, tz_minute = _DATETIMEOFFSET.unpack(value)
    local = dt.datetime(year, month, day, hour, minute, second, nanos // 1000)
    result = (local - dt.timedelta(hours=tz_hour, minutes=tz_minute)).replace(tzinfo=UTC)
    if nanos % 1000:
        raise Truncated(result, "sub-microsecond digits dropped")
    return result


_ISO_DURATION = re.compile(
    r"P(?:(-?\d+)Y)?(?:(-?\d+)M)?(?:(-?\d+)D)?(?:T(?:(-?\d+)H)?(?:(-?\d+)M)?(?:(-?[\d.]+)S)?)?$"
)


def iso_interval(text: str) -> dt.timedelta:
    """PostgreSQL interval as ISO-8601 text -> timedelta; a months/years part has no fixed length."""
    match = _ISO_DURATION.match(text)
    if match is None:
        raise ValueRejected("interval text is not ISO-8601")
    years, months, days, hours, minutes = (int(part or 0) for part in match.groups()[:5])
    if years or months:
        raise ValueRejected("interval has a year/month part, which has no fixed length in days")
    seconds = Decimal(match.group(6) or 0)
    micros = seconds * 1_000_000
    if micros != micros.to_integral_value():
        raise ValueRejected("interval has sub-microsecond seconds")
    return dt.timedelta(days=days, hours=hours, minutes=minutes, microseconds=int(micros))


def year_month_interval(value: Any) -> str:
    """Oracle INTERVAL YEAR TO MONTH (oracledb IntervalYM) -> ISO-8601 text 'P1Y2M'."""
    return f"P{value.years}Y{value.months}M"


# --- identifiers and binary ----------------------------------------------------------------


def raw_guid(value: bytes) -> uuid.UUID:
    """Oracle RAW(16) (SYS_GUID): the 16 bytes in order."""
    return uuid.UUID(bytes=bytes(value))


def uniqueidentifier(value: Any) -> uuid.UUID:
    """SQL Server UNIQUEIDENTIFIER: text, uuid.UUID, or its 16-byte binary form.

    The binary form stores the first three groups little-endian (Microsoft GUID layout), so
    bytes go through `bytes_le`; text is in display order already.
    """
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, bytes | bytearray):
        return uuid.UUID(bytes_le=bytes(value))
    return uuid.UUID(value)


def rowversion(value: bytes) -> int:
    """ROWVERSION/TIMESTAMP(8 bytes, big-endian counter) -> int, comparable as a watermark."""
    return int.from_bytes(value, "big")


def sql_variant(text: str) -> dict:
    """SQL_VARIANT selected as 'basetype|value text' -> {"type": basetype, "value": text}."""
    base_type, _, rest = text.partition("|")
    return {"type": base_type, "value": rest}


def json_loads_exact(text: str | bytes) -> Any:
    """JSON with numbers kept exact: fractions become Decimal, never float, and integers of any
    length are read (one longer than Python's int-from-text limit as a Decimal)."""
    return jsontext.loads(text)


def chain(*steps: Converter) -> Converter:
    """Apply converters in order (e.g. read a LOB, then parse it)."""

    def convert(value: Any) -> Any:
        for step in steps:
            value = step(value)
        return value

    return convert


# --- key positions as tagged JSON ----------------------------------------------------------


def encode_value(value: Any) -> Json:
    """One key value -> JSON that decodes to an equal value of the same type."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, float):
        return {"$float": repr(value)}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$time": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"cannot encode a key value of type {type(value).__name__}")


_DECODERS: dict[str, Converter] = {
    "$decimal": Decimal,
    "$float": float,
    "$datetime": dt.datetime.fromisoformat,
    "$date": dt.date.fromisoformat,
    "$time": dt.time.fromisoformat,
    "$timedelta": lambda parts: dt.timedelta(days=parts[0], seconds=parts[1], microseconds=parts[2]),
    "$uuid": uuid.UUID,
    "$bytes": partial(base64.b64decode, validate=True),
}


def decode_value(value: Json) -> Any:
    """Inverse of `encode_value`."""
    if isinstance(value, dict):
        ((tag, payload),) = value.items()
        return _DECODERS[tag](payload)
    return value


def encode_key(values: tuple | list) -> list[Json]:
    return [encode_value(value) for value in values]


def decode_key(values: list[Json]) -> tuple:
    return tuple(decode_value(value) for value in values)
