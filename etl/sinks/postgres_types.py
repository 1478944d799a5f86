"""Mapping column types -> PostgreSQL column types, and values -> what binary COPY needs.

Values are checked against the target column before COPY because PostgreSQL would silently round
some of them: a numeric(p,s) column rounds extra decimal places and timestamp(p) rounds extra
fractional seconds (https://www.postgresql.org/docs/15/datatype-numeric.html#DATATYPE-NUMERIC-DECIMAL,
https://www.postgresql.org/docs/15/datatype-datetime.html). Such a value is rejected, never rounded.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from itertools import repeat
from operator import attrgetter
from typing import Any

from etl.coltypes import ColumnType
from etl.records import nested_path
from etl.sinks import jsontext

_SCALAR_DDL = {
    "string": "text", "int": "bigint", "decimal": "numeric", "float": "double precision", "bool": "boolean",
    "date": "date", "time": "time", "timestamp": "timestamp", "timestamptz": "timestamptz", "uuid": "uuid",
    "bytes": "bytea",
}
# udt names (pg_type.typname) an existing column may have for each mapping type
_COMPATIBLE = {
    "string": {"text", "varchar", "bpchar", "citext", "name"},
    "int": {"int2", "int4", "int8", "numeric"},
    "decimal": {"numeric"},
    "float": {"float8", "numeric"},
    "bool": {"bool"},
    "date": {"date"},
    "time": {"time"},
    "timestamp": {"timestamp"},
    "timestamptz": {"timestamptz"},
    "uuid": {"uuid"},
    "bytes": {"bytea"},
    "json": {"jsonb", "json"},
}
_INT_RANGE = {"int2": 2**15, "int4": 2**31, "int8": 2**63}


def ddl_type(column: ColumnType) -> str:
    """The column type used when the sink creates the table."""
    if column.base in ("list", "set"):
        return "jsonb" if column.element is None else ddl_type(column.element) + "[]"
    if column.base == "json":
        return "jsonb"
    base = _SCALAR_DDL[column.base]
    if column.base == "string" and column.args:
        return f"varchar({column.args[0]})"
    if column.base == "decimal" and column.args:
        return f"numeric({','.join(map(str, column.args))})"
    if column.is_timestamp and column.args:
        return f"{base}({column.args[0]})"
    return base


def compatible_udts(column: ColumnType) -> set[str]:
    """udt names an existing column may have to hold this mapping type without loss."""
    if column.base in ("list", "set"):
        if column.element is None:
            return {"jsonb", "json"}
        return {"_" + udt for udt in compatible_udts(column.element)} | {"jsonb", "json"}
    return _COMPATIBLE[column.base]


_UDT = {"string": "text", "int": "int8", "decimal": "numeric", "float": "float8", "bool": "bool",
        "date": "date", "time": "time", "timestamp": "timestamp", "timestamptz": "timestamptz",
        "uuid": "uuid", "bytes": "bytea", "json": "jsonb"}


def planned_column(name: str, column: ColumnType) -> TargetColumn:
    """The column `ddl_type` creates, as information_schema would then describe it: what values are
    checked against before the table exists (`--profile`)."""
    if column.base in ("list", "set"):
        if column.element is None:
            return TargetColumn(name, "jsonb")
        element = planned_column(name, column.element)
        return TargetColumn(name, "_" + element.udt, element.numeric_scale, element.numeric_precision,
                            element.datetime_precision)
    udt = "varchar" if column.base == "string" and column.args else _UDT[column.base]
    if column.base == "decimal" and column.args:
        scale = column.args[1] if len(column.args) > 1 else 0
        return TargetColumn(name, udt, scale, column.args[0])
    if column.is_timestamp:
        return TargetColumn(name, udt, datetime_precision=column.args[0] if column.args else 6)
    return TargetColumn(name, udt)


@dataclass(frozen=True)
class TargetColumn:
    """A column as it exists in the target table (from information_schema.columns)."""

    name: str
    udt: str
    """pg_type.typname, e.g. int8, numeric, _text (arrays start with an underscore)."""
    numeric_scale: int | None = None
    numeric_precision: int | None = None
    datetime_precision: int | None = None

    @property
    def copy_type(self) -> str:
        """Type name psycopg's binary COPY dumps this column with."""
        return self.udt[1:] + "[]" if self.udt.startswith("_") else self.udt


class ValueRefused(Exception):
    """A value the target column cannot hold exactly; the message never contains the value.
    `path` is where inside the column's value (`d`, `items[2].x`; "" for the value itself), and
    `value_type` the type of the value found there when it is not the column's value itself."""

    def __init__(self, reason: str, path: str = "", value_type: str | None = None) -> None:
        super().__init__(reason)
        self.path = path
        self.value_type = value_type


def adapter(column: TargetColumn) -> Callable[[Any], Any]:
    """A function turning a canonical value into what binary COPY expects for this column, or raising
    ValueRefused."""
    udt = column.udt
    if udt.startswith("_"):
        element = adapter(TargetColumn(column.name, udt[1:], column.numeric_scale, column.numeric_precision,
                                       column.datetime_precision))
        return lambda value: _array(value, element)
    if udt in ("jsonb", "json"):
        return _json
    if udt in _INT_RANGE:
        return lambda value: _int(value, _INT_RANGE[udt])
    if udt == "numeric":
        return lambda value: _numeric(value, column.numeric_precision, column.numeric_scale)
    if udt == "float8":
        return _float
    if udt in ("timestamp", "timestamptz"):
        precision = 6 if column.datetime_precision is None else column.datetime_precision
        return lambda value: _timestamp(value, udt == "timestamptz", precision)
    if udt in _TEXT:
        return _text
    simple = _SIMPLE.get(udt)
    if simple is None:
        return _as_is
    kinds, label = simple
    return lambda value: _typed(value, kinds, label)


def _as_is(value: Any) -> Any:
    return value


def _typed(value: Any, kinds: tuple[type, ...], label: str) -> Any:
    if value is None or type(value) in kinds:
        return value
    wrong_kind = isinstance(value, bool) != (bool in kinds) or (
        dt.date in kinds and isinstance(value, dt.datetime)
    )
    if isinstance(value, kinds) and not wrong_kind:
        return value
    if label == "uuid" and isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ValueRefused(f"expected {label}, got {type(value).__name__}")


def _text(value: Any) -> Any:
    """A string for a text column: PostgreSQL text cannot hold U+0000, so it is refused here, naming the
    cause, instead of by the server."""
    if type(value) is str and "\x00" not in value:
        return value
    value = _typed(value, (str,), "a string")
    if value is not None and "\x00" in value:
        raise ValueRefused(jsontext.NUL_REFUSED)
    return value


_TEXT = frozenset({"text", "varchar", "bpchar", "citext", "name"})
_SIMPLE: dict[str, tuple[tuple[type, ...], str]] = {
    "text": ((str,), "a string"), "varchar": ((str,), "a string"), "bpchar": ((str,), "a string"),
    "citext": ((str,), "a string"), "name": ((str,), "a string"), "bool": ((bool,), "a bool"),
    "date": ((dt.date,), "a date"), "time": ((dt.time,), "a time"), "uuid": ((uuid.UUID,), "uuid"),
    "bytea": ((bytes, bytearray, memoryview), "bytes"),
}


def _array(value: Any, element: Callable[[Any], Any]) -> Any:
    if value is None:
        return None
    if isinstance(value, set | frozenset):
        value = sorted(value, key=repr)
    if not isinstance(value, list | tuple):
        raise ValueRefused(f"expected a list, got {type(value).__name__}")
    try:
        return [element(member) for member in value]
    except ValueRefused:
        pass
    for index, member in enumerate(value):  # find the refused member, to name it
        try:
            element(member)
        except ValueRefused as problem:
            raise ValueRefused(str(problem), nested_path(f"[{index}]", problem.path),
                               problem.value_type or type(member).__name__) from None
    raise AssertionError("a member was refused once and accepted again")


def _json(value: Any) -> Any:
    """JSON text: the sink's connections dump json/jsonb values as the text they are given
    (`already_json`), so each value is encoded once, losslessly, by `jsontext`."""
    if value is None:
        return None
    try:
        return jsontext.dumps(value)
    except jsontext.JsonRefused as problem:
        raise ValueRefused(problem.reason, problem.field_path, problem.value_type) from None


def already_json(text: str) -> str:
    return text


def _int(value: Any, bound: int) -> Any:
    if value is None:
        return None
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueRefused(f"expected an integer, got {type(value).__name__}")
    if not -bound <= value < bound:
        raise ValueRefused("integer out of range for the column")
    return value


def _numeric(value: Any, precision: int | None, scale: int | None) -> Any:
    if type(value) is Decimal and value.is_finite():  # the common case, checked cheaply
        # a finite Decimal's exponent is an int, not one of the letters of NaN and infinity
        if (scale is None or value.as_tuple().exponent >= -scale) and (  # type: ignore[operator]
            precision is None or value.adjusted() < precision - (scale or 0)
        ):
            return value
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueRefused(f"expected a number, got {type(value).__name__}")
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueRefused("NaN or Infinity in a numeric column")
        value = Decimal(repr(value))
    elif isinstance(value, int):
        value = Decimal(value)
    if not value.is_finite():
        if scale is not None:
            raise ValueRefused("NaN or Infinity in a numeric column with a precision")
        return value
    sign, digits, exponent = value.as_tuple()
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    significant_exponent = exponent + trailing if trailing < len(digits) else 0
    if scale is not None and significant_exponent < -scale:
        raise ValueRefused(f"more than {scale} decimal places; numeric(…,{scale}) would round it")
    if precision is not None and value.adjusted() >= precision - (scale or 0):
        raise ValueRefused(f"too large for numeric({precision},{scale or 0})")
    return value


def _float(value: Any) -> Any:
    if value is None or (isinstance(value, float)):
        return value
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        as_float = float(value)
        if math.isfinite(as_float) and Decimal(as_float) == Decimal(value):
            return as_float
        raise ValueRefused("number cannot be held exactly by double precision")
    raise ValueRefused(f"expected a float, got {type(value).__name__}")


def _timestamp(value: Any, aware: bool, precision: int) -> Any:
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        raise ValueRefused(f"expected a datetime, got {type(value).__name__}")
    if aware and value.tzinfo is None:
        raise ValueRefused("timestamptz needs a timezone-aware datetime, got a naive one")
    if not aware and value.tzinfo is not None:
        raise ValueRefused("timestamp without time zone needs a naive datetime, got an aware one")
    if value.microsecond % (10 ** (6 - min(precision, 6))):
        raise ValueRefused(f"more fractional seconds than timestamp({precision}) holds; it would round")
    return value


# ---------------------------------------------------------------- whole columns at once

NONE = type(None)


@dataclass(frozen=True)
class ColumnAdapter:
    """Adapts a whole column of a batch: a bulk check with builtins first (the usual case, where every
    value is already right), value by value only when that finds something to refuse or convert."""

    one: Callable[[Any], Any]
    """Per value: the adapted value, or ValueRefused."""
    bulk: Callable[[list], list] | None
    """Whole column: the adapted values, or ValueRefused when any value needs a closer look."""

    def column(self, values: list) -> tuple[list, dict[int, ValueRefused]]:
        """(adapted values, {index: why} of the refused ones, whose slot holds None)."""
        if self.bulk is not None:
            try:
                return self.bulk(values), {}
            except (ValueRefused, TypeError, ValueError, ArithmeticError):
                pass
        adapted, refused = [], {}
        for index, value in enumerate(values):
            try:
                adapted.append(self.one(value))
            except ValueRefused as problem:
                refused[index] = problem
                adapted.append(None)
        return adapted, refused


def column_adapter(column: TargetColumn) -> ColumnAdapter:
    return ColumnAdapter(adapter(column), _bulk(column))


def _types_within(values: list, allowed: set[type]) -> None:
    if not set(map(type, values)) <= allowed:
        raise ValueRefused("a value of another type")


def _bulk(column: TargetColumn) -> Callable[[list], list] | None:
    udt = column.udt
    if udt in ("jsonb", "json"):
        return _bulk_json
    if udt in _INT_RANGE:
        return lambda values: _bulk_int(values, _INT_RANGE[udt])
    if udt == "numeric":
        return lambda values: _bulk_numeric(values, column.numeric_precision, column.numeric_scale)
    if udt == "float8":
        return lambda values: _bulk_types(values, {float, NONE})
    if udt in ("timestamp", "timestamptz"):
        precision = 6 if column.datetime_precision is None else column.datetime_precision
        return lambda values: _bulk_timestamp(values, udt == "timestamptz", precision)
    if udt in _TEXT:
        return _bulk_text
    if udt in _SIMPLE:
        allowed = {*_SIMPLE[udt][0], NONE} - {dt.date} | ({dt.date} if udt == "date" else set())
        return lambda values: _bulk_types(values, allowed)
    return None


def _bulk_types(values: list, allowed: set[type]) -> list:
    _types_within(values, allowed)
    return values


def _bulk_text(values: list) -> list:
    _types_within(values, {str, NONE})
    if "\x00" in "".join(_present(values)):  # no NUL is made by joining strings without one
        raise ValueRefused(jsontext.NUL_REFUSED)
    return values


def _bulk_json(values: list) -> list:
    dumps = jsontext.dumps
    return [None if value is None else dumps(value) for value in values]


def _present(values: list) -> list:
    """The values that are not None (the list itself when there is none: `in` runs in C)."""
    return [value for value in values if value is not None] if None in values else values


def _bulk_int(values: list, bound: int) -> list:
    _types_within(values, {int, NONE})
    present = _present(values)
    if present and not (-bound <= min(present) and max(present) < bound):
        raise ValueRefused("integer out of range")
    return values


def _bulk_numeric(values: list, precision: int | None, scale: int | None) -> list:
    _types_within(values, {Decimal, NONE})
    present = _present(values)
    if not present:
        return values
    if scale is not None:
        # quantize is exact when nothing is lost; NaN never equals itself, Infinity raises: a closer look
        step = _STEPS.get(scale) or Decimal(1).scaleb(-scale)
        if list(map(Decimal.quantize, present, repeat(step, len(present)))) != present:
            raise ValueRefused("more decimal places than the column's scale")
    if precision is not None and max(map(Decimal.adjusted, present)) >= precision - (scale or 0):
        raise ValueRefused("too large")
    return values


_STEPS = {scale: Decimal(1).scaleb(-scale) for scale in range(0, 39)}
_TZINFO = attrgetter("tzinfo")


def _bulk_timestamp(values: list, aware: bool, precision: int) -> list:
    _types_within(values, {dt.datetime, NONE})
    present = _present(values)
    zones = set(map(_TZINFO, present))
    if aware and None in zones:
        raise ValueRefused("naive")
    if not aware and zones - {None}:
        raise ValueRefused("aware")
    step = 10 ** (6 - min(precision, 6))
    if step > 1 and any(value.microsecond % step for value in present):
        raise ValueRefused("too precise")
    return values
