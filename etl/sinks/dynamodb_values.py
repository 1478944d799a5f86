"""Canonical Python values <-> DynamoDB AttributeValues, with DynamoDB's limits checked before sending.

Numbers are checked here rather than left to the service so that nothing is ever rounded: a value
DynamoDB cannot hold exactly is refused with a reason, and a float goes over the wire as the
shortest decimal string that round-trips it (`repr`), so reading it back gives the same float.
Limits, from the AWS documentation:
  * numbers: up to 38 significant digits; magnitude 1E-130 .. 9.9999999999999999999999999999999999999E+125
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html
  * item size: 400 KB, computed from attribute names and values
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from etl.sinks.coltypes import ColumnType

MAX_ITEM_BYTES = 400 * 1024
MAX_SIGNIFICANT_DIGITS = 38
MIN_ADJUSTED_EXPONENT = -130
MAX_ADJUSTED_EXPONENT = 125

AttributeValue = dict[str, Any]


class ItemRejected(Exception):
    """A value DynamoDB cannot store as given; carries where and what kind, never the value itself."""

    def __init__(self, reason: str, field_path: str, value: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field_path = field_path
        self.value_type = type(value).__name__


# ---------------------------------------------------------------- numbers


def number_text(value: int | float | Decimal, path: str) -> str:
    """The wire form of a number, or ItemRejected when DynamoDB could not hold it exactly."""
    original = value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ItemRejected("NaN or Infinity is not a number DynamoDB can store", path, original)
        value = Decimal(repr(value))
    elif isinstance(value, int):
        value = Decimal(value)
    if not value.is_finite():
        raise ItemRejected("NaN or Infinity is not a number DynamoDB can store", path, original)
    if value.is_zero():
        return "0"
    digits = value.as_tuple().digits
    significant = len("".join(map(str, digits)).strip("0"))
    if significant > MAX_SIGNIFICANT_DIGITS:
        raise ItemRejected(
            f"number has {significant} significant digits; DynamoDB holds at most {MAX_SIGNIFICANT_DIGITS}"
            " (store it as a string or reduce its precision in the mapping)",
            path,
            original,
        )
    exponent = value.adjusted()
    if not MIN_ADJUSTED_EXPONENT <= exponent <= MAX_ADJUSTED_EXPONENT:
        raise ItemRejected(
            f"number magnitude 1E{exponent} is outside DynamoDB's range 1E-130 .. 9.99E+125", path, original
        )
    return str(value)


def _number_value(text: str) -> int | Decimal:
    if "." in text or "e" in text or "E" in text:
        return Decimal(text)
    return int(text)


# ---------------------------------------------------------------- encoding


def _timestamp_text(value: dt.datetime, aware: bool) -> str:
    if aware and value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.isoformat(timespec="microseconds")


def encode_value(value: Any, column: ColumnType | None, path: str) -> AttributeValue:
    """Encode one value; `column` steers scalars (timestamps to ISO text, floats exactly)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float | Decimal):
        return {"N": number_text(value, path)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"B": bytes(value)}
    if isinstance(value, dt.datetime):
        return {"S": _timestamp_text(value, aware=column is None or column.name != "timestamp")}
    if isinstance(value, dt.date | dt.time):
        return {"S": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"S": str(value)}
    if isinstance(value, dict):
        encoded = {}
        for name, member in value.items():
            if not isinstance(name, str):
                raise ItemRejected("map keys must be strings", f"{path}.{name}", name)
            encoded[name] = encode_value(member, None, f"{path}.{name}")
        return {"M": encoded}
    if isinstance(value, list | tuple):
        element = column.element if column is not None else None
        return {"L": [encode_value(member, element, f"{path}[{i}]") for i, member in enumerate(value)]}
    if isinstance(value, set | frozenset):
        return _encode_set(value, column.element if column is not None else None, path)
    raise ItemRejected(f"a {type(value).__name__} has no DynamoDB representation", path, value)


def _encode_set(value: set | frozenset, element: ColumnType | None, path: str) -> AttributeValue:
    """SS/NS/BS by member type. DynamoDB has no empty set, so an empty set is stored as an empty
    list and read back as an empty set (the column type says it is a set)."""
    if not value:
        return {"L": []}
    encoded = [encode_value(member, element, path) for member in value]
    kinds = {next(iter(member)) for member in encoded}
    if len(kinds) != 1 or not kinds <= {"S", "N", "B"}:
        raise ItemRejected(
            "a set must hold only strings, only numbers or only bytes (DynamoDB SS, NS or BS)", path, value
        )
    kind = kinds.pop()
    return {kind + "S": [member[kind] for member in encoded]}


def encode_item(row: dict, columns: dict[str, ColumnType], key: tuple[str, ...]) -> dict[str, AttributeValue]:
    """Encode a row as an item, checking the key and the 400 KB limit; raises ItemRejected."""
    for name in key:
        value = row.get(name)
        if value is None:
            raise ItemRejected(f"key attribute {name!r} is missing or null", name, value)
        if value == "" or value == b"":
            reason = f"key attribute {name!r} is empty; DynamoDB keys must be non-empty"
            raise ItemRejected(reason, name, value)
    item = {name: encode_value(value, columns.get(name), name) for name, value in row.items()}
    for name in key:
        if next(iter(item[name])) not in ("S", "N", "B"):
            raise ItemRejected(f"key attribute {name!r} must be a string, number or bytes", name, row[name])
    size = item_size(item)
    if size > MAX_ITEM_BYTES:
        raise ItemRejected(
            f"item is {size} bytes; DynamoDB's item size limit is {MAX_ITEM_BYTES} bytes (400 KB)", "", row
        )
    return item


# ---------------------------------------------------------------- size


def _number_size(text: str) -> int:
    digits = Decimal(text).as_tuple().digits
    significant = len("".join(map(str, digits)).strip("0")) or 1
    return (significant + 1) // 2 + 1


def value_size(value: AttributeValue) -> int:
    """Bytes a value counts for, per DynamoDB's documented sizing rules (CapacityUnitCalculations)."""
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return len(inner.encode("utf-8"))
    if kind == "N":
        return _number_size(inner)
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(member.encode("utf-8")) for member in inner)
    if kind == "NS":
        return sum(_number_size(member) for member in inner)
    if kind == "BS":
        return sum(len(member) for member in inner)
    if kind == "L":
        return 3 + sum(value_size(member) + 1 for member in inner)
    if kind == "M":
        return 3 + sum(len(name.encode("utf-8")) + value_size(member) + 1 for name, member in inner.items())
    raise ValueError(f"unknown AttributeValue type {kind}")


def item_size(item: dict[str, AttributeValue]) -> int:
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


# ---------------------------------------------------------------- decoding


def decode_any(value: AttributeValue) -> Any:
    """Decode without a column type: the closest canonical Python value of what is stored."""
    kind, inner = next(iter(value.items()))
    if kind in ("S", "B", "BOOL"):
        return inner
    if kind == "N":
        return _number_value(inner)
    if kind == "NULL":
        return None
    if kind == "M":
        return {name: decode_any(member) for name, member in inner.items()}
    if kind == "L":
        return [decode_any(member) for member in inner]
    if kind == "SS" or kind == "BS":
        return set(inner)
    if kind == "NS":
        return {_number_value(member) for member in inner}
    raise ValueError(f"unknown AttributeValue type {kind}")


def decode_value(value: AttributeValue, column: ColumnType | None) -> Any:
    """Decode what `encode_value` wrote for `column`; anything that does not decode comes back as stored."""
    if column is None:
        return decode_any(value)
    kind, inner = next(iter(value.items()))
    name = column.name
    try:
        if kind == "N" and name == "decimal":
            return Decimal(inner)
        if kind == "N" and name == "float":
            return float(Decimal(inner))
        if kind == "S" and name in ("timestamp", "timestamptz"):
            parsed = dt.datetime.fromisoformat(inner)
            if (parsed.tzinfo is not None) == (name == "timestamptz"):
                return parsed
            return inner
        if kind == "S" and name == "date" and len(inner) == 10:
            return dt.date.fromisoformat(inner)
        if kind == "S" and name == "time":
            return dt.time.fromisoformat(inner)
        if kind == "S" and name == "uuid":
            return uuid.UUID(inner)
        if kind == "L" and name == "list" and column.element is not None:
            return [decode_value(member, column.element) for member in inner]
        if name == "set" and kind == "L" and not inner:
            return set()
        if name == "set" and kind in ("SS", "NS", "BS") and column.element is not None:
            scalar = {"SS": "S", "NS": "N", "BS": "B"}[kind]
            return {decode_value({scalar: member}, column.element) for member in inner}
    except (ValueError, InvalidOperation):
        return decode_any(value)
    return decode_any(value)


def decode_item(item: dict[str, AttributeValue], columns: dict[str, ColumnType]) -> dict:
    return {name: decode_value(value, columns.get(name)) for name, value in item.items()}
