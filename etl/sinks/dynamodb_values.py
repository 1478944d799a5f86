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

from etl.coltypes import ColumnType
from etl.records import FieldProblem

MAX_ITEM_BYTES = 400 * 1024
MAX_SIGNIFICANT_DIGITS = 38
MIN_ADJUSTED_EXPONENT = -130
MAX_ADJUSTED_EXPONENT = 125

AttributeValue = dict[str, Any]


class ItemRejected(FieldProblem):
    """A value DynamoDB cannot store as given; carries where and what kind, never the value itself."""


NOT_A_NUMBER = "NaN or Infinity is not a number DynamoDB can store"
EMPTY_NAME = "an empty attribute name; DynamoDB names (map keys included) must be at least one character"


# ---------------------------------------------------------------- numbers


def number_text(value: int | float | Decimal, path: str) -> str:
    """The wire form of a number, or ItemRejected when DynamoDB could not hold it exactly."""
    try:
        return _number(value)[0]
    except ItemRejected as problem:
        raise problem.within(path) from None


def _number(value: int | float | Decimal) -> tuple[str, int]:
    """(wire text, size in bytes) of a number; checks digits and magnitude from its exact text."""
    original = value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ItemRejected(NOT_A_NUMBER, "", original)
        value = Decimal(repr(value))
    if isinstance(value, int):
        text = str(value)
        digits = text.lstrip("-")
        exponent = len(digits) - 1
        significant = len(digits.rstrip("0"))
    else:
        if not value.is_finite():
            raise ItemRejected(NOT_A_NUMBER, "", original)
        text = str(value)
        significant = len(text.partition("E")[0].replace("-", "").replace(".", "").strip("0"))
        exponent = value.adjusted()
    if significant == 0:
        return "0", 2
    if significant > MAX_SIGNIFICANT_DIGITS:
        raise ItemRejected(
            f"number has {significant} significant digits; DynamoDB holds at most {MAX_SIGNIFICANT_DIGITS}"
            " (store it as a string or reduce its precision in the mapping)",
            "",
            original,
        )
    if not MIN_ADJUSTED_EXPONENT <= exponent <= MAX_ADJUSTED_EXPONENT:
        raise ItemRejected(
            f"number magnitude 1E{exponent} is outside DynamoDB's range 1E-130 .. 9.99E+125", "", original
        )
    return text, (significant + 1) // 2 + 1


def _number_value(text: str) -> int | Decimal:
    if "." in text or "e" in text or "E" in text:
        return Decimal(text)
    return int(text)


# ---------------------------------------------------------------- encoding


def _text_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _timestamp_text(value: dt.datetime, aware: bool) -> str:
    if aware and value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.isoformat(timespec="microseconds")


_ATTRIBUTE_TYPES = {
    "string": "S", "int": "N", "decimal": "N", "float": "N", "bool": "BOOL", "date": "S (ISO 8601 date)",
    "time": "S (ISO 8601 time)", "timestamp": "S (ISO 8601)", "timestamptz": "S (ISO 8601, UTC)",
    "uuid": "S", "bytes": "B", "json": "M, L or a scalar", "list": "L", "set": "SS, NS or BS",
}


def attribute_type(column: ColumnType) -> str:
    """The DynamoDB attribute type values of a mapping type are stored as, for proposals."""
    return _ATTRIBUTE_TYPES[column.base]


def encode_value(value: Any, column: ColumnType | None, path: str) -> AttributeValue:
    """Encode one value; `column` steers scalars (timestamps to ISO text, floats exactly)."""
    try:
        return _encode(value, column)[0]
    except ItemRejected as problem:
        raise problem.within(path) from None


def _encode(value: Any, column: ColumnType | None) -> tuple[AttributeValue, int]:
    """(AttributeValue, size in bytes by DynamoDB's rules) in one pass; the common types first."""
    kind = type(value)
    if kind is str:
        return {"S": value}, _text_size(value)
    if value is None:
        return {"NULL": True}, 1
    if kind is bool:
        return {"BOOL": value}, 1
    if kind is int or kind is Decimal or kind is float:
        text, size = _number(value)
        return {"N": text}, size
    if kind is dict:
        encoded: dict[str, AttributeValue] = {}
        size = 3
        for name, member in value.items():
            if not isinstance(name, str):
                raise ItemRejected("map keys must be strings", str(name), name)
            if not name:
                raise ItemRejected(EMPTY_NAME, '""', name)
            try:
                encoded[name], member_size = _encode(member, None)
            except ItemRejected as problem:
                raise problem.within(name) from None
            size += _text_size(name) + member_size + 1
        return {"M": encoded}, size
    if kind is list or kind is tuple:
        element = column.element if column is not None else None
        members = []
        size = 3
        for index, member in enumerate(value):
            try:
                encoded_member, member_size = _encode(member, element)
            except ItemRejected as problem:
                raise problem.within(f"[{index}]") from None
            members.append(encoded_member)
            size += member_size + 1
        return {"L": members}, size
    return _encode_other(value, column)


def _encode_other(value: Any, column: ColumnType | None) -> tuple[AttributeValue, int]:
    if isinstance(value, bool):
        return {"BOOL": bool(value)}, 1
    if isinstance(value, int | float):  # subclasses (an IntEnum's str() is its name, not its number)
        text, size = _number(int(value) if isinstance(value, int) else float(value))
        return {"N": text}, size
    if isinstance(value, Decimal):
        text, size = _number(value)
        return {"N": text}, size
    if isinstance(value, str):
        return {"S": str(value)}, _text_size(value)
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return {"B": data}, len(data)
    if isinstance(value, dt.datetime):
        text = _timestamp_text(value, aware=column is None or column.base != "timestamp")
        return {"S": text}, len(text)
    if isinstance(value, dt.date | dt.time):
        text = value.isoformat()
        return {"S": text}, len(text)
    if isinstance(value, uuid.UUID):
        return {"S": str(value)}, 36
    if isinstance(value, dict | list | tuple):
        return _encode(dict(value) if isinstance(value, dict) else list(value), column)
    if isinstance(value, set | frozenset):
        return _encode_set(value, column.element if column is not None else None)
    raise ItemRejected(f"a {type(value).__name__} has no DynamoDB representation", "", value)


def _encode_set(value: set | frozenset, element: ColumnType | None) -> tuple[AttributeValue, int]:
    """SS/NS/BS by member type. DynamoDB has no empty set, so an empty set is stored as an empty
    list and read back as an empty set (the column type says it is a set)."""
    if not value:
        return {"L": []}, 3
    encoded = [_encode(member, element) for member in value]
    kinds = {next(iter(member)) for member, _ in encoded}
    if len(kinds) != 1 or not kinds <= {"S", "N", "B"}:
        raise ItemRejected(
            "a set must hold only strings, only numbers or only bytes (DynamoDB SS, NS or BS)", "", value
        )
    kind = kinds.pop()
    return {kind + "S": [member[kind] for member, _ in encoded]}, sum(size for _, size in encoded)


def encode_item(row: dict, columns: dict[str, ColumnType], key: tuple[str, ...]) -> dict[str, AttributeValue]:
    """Encode a row as an item, checking the key and the 400 KB limit; raises ItemRejected."""
    return encode_item_sized(row, columns, key)[0]


def encode_item_sized(
    row: dict, columns: dict[str, ColumnType], key: tuple[str, ...]
) -> tuple[dict[str, AttributeValue], int]:
    """`encode_item` plus the item's size in bytes (as `item_size` computes it)."""
    for name in key:
        value = row.get(name)
        if value is None:
            raise ItemRejected(f"key attribute {name!r} is missing or null", name, value)
        if value == "" or value == b"":
            reason = f"key attribute {name!r} is empty; DynamoDB keys must be non-empty"
            raise ItemRejected(reason, name, value)
    item = {}
    size = 0
    for name, value in row.items():
        try:
            item[name], value_size = _encode(value, columns.get(name))
        except ItemRejected as problem:
            raise problem.within(name) from None
        size += _text_size(name) + value_size
    for name in key:
        if next(iter(item[name])) not in ("S", "N", "B"):
            raise ItemRejected(f"key attribute {name!r} must be a string, number or bytes", name, row[name])
    if size > MAX_ITEM_BYTES:
        raise ItemRejected(
            f"item is {size} bytes; DynamoDB's item size limit is {MAX_ITEM_BYTES} bytes (400 KB)", "", row
        )
    return item, size


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
    name = column.base
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


STORED_FORM_TYPES = frozenset({"json", "list", "set"})
"""Column types whose values may hold values DynamoDB stores in another form (inside maps, lists and
untyped sets: datetimes, dates, times and UUIDs as text, an empty set as an empty list)."""


def stored_value(value: Any, column: ColumnType | None) -> Any:
    """What `read_back` gives for `value` written in `column`: the writer's encoding, then the reader's
    decoding. Raises ItemRejected when the writer would refuse it."""
    return decode_value(_encode(value, column)[0], column)


def decode_item(item: dict[str, AttributeValue], columns: dict[str, ColumnType]) -> dict:
    return {name: decode_value(value, columns.get(name)) for name, value in item.items()}
