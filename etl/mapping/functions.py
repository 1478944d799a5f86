"""The fixed set of functions an expression may call, and the size limits every result obeys.

Nothing here reaches Python objects beyond plain values: no attribute access, no imports.
Results that would exceed MAX_TEXT characters or MAX_INT_BITS bits raise EvalError, so a
mapping cannot make the process run out of memory.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

import bson

from etl.mapping.types import CastError, decimal128_to_decimal, to_decimal_exact, to_int, to_string, type_name

MAX_TEXT = 1_000_000
"""Longest text an expression may build (characters)."""
MAX_INT_BITS = 512
"""Largest integer an expression may build (bits)."""
MAX_EXPONENT = 1000
"""Largest exponent `**` accepts."""


class EvalError(Exception):
    """An expression failed on one record; `value_type` names the offending value's type."""

    def __init__(self, reason: str, value: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.value_type = None if value is None else type_name(value)


def number(value: Any) -> Any:
    """A value usable in arithmetic: BSON decimals become Decimal; others must already be numbers."""
    if isinstance(value, bool):
        raise EvalError("a bool is not a number", value)
    if isinstance(value, (int, float, Decimal)):
        return value
    if isinstance(value, bson.Decimal128):
        return decimal128_to_decimal(value)
    raise EvalError(f"a {type_name(value)} is not a number", value)


def align(left: Any, right: Any) -> tuple[Any, Any]:
    """Mix Decimal and float exactly: the float becomes the Decimal of its shortest repr."""
    if isinstance(left, Decimal) and isinstance(right, float):
        return left, Decimal(repr(right))
    if isinstance(left, float) and isinstance(right, Decimal):
        return Decimal(repr(left)), right
    return left, right


def bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise EvalError(f"the text would be longer than {MAX_TEXT} characters", value)
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise EvalError(f"the integer would be larger than {MAX_INT_BITS} bits", value)
    if isinstance(value, float) and not math.isfinite(value):
        raise EvalError("the result is not a finite number", value)
    return value


def power(base: Any, exponent: Any) -> Any:
    base, exponent = align(number(base), number(exponent))
    if abs(exponent) > MAX_EXPONENT:
        raise EvalError(f"exponents above {MAX_EXPONENT} are refused", exponent)
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        if base.bit_length() * exponent > MAX_INT_BITS + exponent:
            raise EvalError(f"the integer would be larger than {MAX_INT_BITS} bits", base)
    try:
        return bounded(base**exponent)
    except (OverflowError, ZeroDivisionError, InvalidOperation, ArithmeticError) as exc:
        raise EvalError(f"cannot raise to that power ({type(exc).__name__})", base) from None


def repeat(text: str, times: Any) -> str:
    if not isinstance(times, int) or isinstance(times, bool):
        raise EvalError("text can only be repeated an integer number of times", times)
    if len(text) * max(times, 0) > MAX_TEXT:
        raise EvalError(f"the text would be longer than {MAX_TEXT} characters", text)
    return text * times


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise EvalError(f"{what} needs text, not a {type_name(value)}", value)
    return value


def _date_part(value: Any, what: str) -> dt.date:
    if isinstance(value, (dt.date, dt.datetime)):
        return value
    raise EvalError(f"{what} needs a date or timestamp, not a {type_name(value)}", value)


def _round(value: Any, places: Any = 0) -> Any:
    if value is None:
        return None
    value = number(value)
    if not isinstance(places, int) or not -30 <= places <= 30:
        raise EvalError("round() takes 0..30 decimal places", places)
    if isinstance(value, float):
        value = Decimal(repr(value))
    quantum = Decimal(1).scaleb(-places)
    try:
        return Decimal(value).quantize(quantum, rounding=ROUND_HALF_EVEN)
    except InvalidOperation:
        raise EvalError("the number is too large to round", value) from None


def _cast(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def call(value: Any) -> Any:
        if value is None:
            return None
        try:
            return convert(value)
        except CastError as exc:
            raise EvalError(exc.reason, value) from None

    return call


def _concat(*values: Any) -> str:
    return bounded("".join("" if value is None else _cast(to_string)(value) for value in values))


def _substr(value: Any, start: Any, length: Any = None) -> Any:
    if value is None:
        return None
    text = _text(value, "substr()")
    if not isinstance(start, int) or (length is not None and not isinstance(length, int)):
        raise EvalError("substr() takes integer positions", start)
    return text[start:] if length is None else text[start : start + max(length, 0)]


def _replace(value: Any, old: Any, new: Any) -> Any:
    if value is None:
        return None
    text, old, new = _text(value, "replace()"), _text(old, "replace()"), _text(new, "replace()")
    if not old:
        raise EvalError("replace() cannot replace empty text", old)
    if len(new) > len(old) and len(text) + text.count(old) * (len(new) - len(old)) > MAX_TEXT:
        raise EvalError(f"the text would be longer than {MAX_TEXT} characters", text)
    return text.replace(old, new)


def _length(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (str, list, dict)):
        return len(value)
    raise EvalError(f"len() needs text, an array or a document, not a {type_name(value)}", value)


def _strftime(value: Any, pattern: Any) -> Any:
    if value is None:
        return None
    return bounded(_date_part(value, "format_date()").strftime(_text(pattern, "format_date()")))


def _split(value: Any, separator: Any) -> Any:
    if value is None:
        return None
    separator = _text(separator, "split()")
    if not separator:
        raise EvalError("split() needs a non-empty separator", separator)
    return _text(value, "split()").split(separator)


def _join(values: Any, separator: Any) -> Any:
    if values is None:
        return None
    if not isinstance(values, list):
        raise EvalError(f"join() needs an array, not a {type_name(values)}", values)
    return bounded(
        _text(separator, "join()").join(_cast(to_string)(item) for item in values if item is not None)
    )


def _nullsafe(function: Callable[..., Any]) -> Callable[..., Any]:
    def call(value: Any, *rest: Any) -> Any:
        return None if value is None else function(value, *rest)

    return call


def _minmax(pick: Callable[..., Any]) -> Callable[..., Any]:
    def call(*values: Any) -> Any:
        present = [number(value) for value in values if value is not None]
        if not present:
            return None
        aligned = [
            Decimal(repr(v)) if isinstance(v, float) and any(isinstance(p, Decimal) for p in present) else v
            for v in present
        ]
        return pick(aligned)

    return call


@dataclass(frozen=True)
class Function:
    """An expression function: `call(*values)` with its accepted argument counts."""

    call: Callable[..., Any]
    min_args: int
    max_args: int | None
    doc: str


FUNCTIONS: dict[str, Function] = {
    "lower": Function(_nullsafe(lambda v: _text(v, "lower()").lower()), 1, 1, "lower-case text"),
    "upper": Function(_nullsafe(lambda v: _text(v, "upper()").upper()), 1, 1, "upper-case text"),
    "trim": Function(
        _nullsafe(lambda v: _text(v, "trim()").strip()), 1, 1, "text without surrounding blanks"
    ),
    "len": Function(_length, 1, 1, "length of text, array or document"),
    "substr": Function(_substr, 2, 3, "substr(text, start, length): part of a text (0-based)"),
    "replace": Function(_replace, 3, 3, "replace(text, old, new)"),
    "starts_with": Function(
        lambda v, p: None if v is None else _text(v, "starts_with()").startswith(_text(p, "starts_with()")),
        2,
        2,
        "whether text starts with a prefix",
    ),
    "ends_with": Function(
        lambda v, p: None if v is None else _text(v, "ends_with()").endswith(_text(p, "ends_with()")),
        2,
        2,
        "whether text ends with a suffix",
    ),
    "contains": Function(
        lambda v, p: None if v is None else _text(p, "contains()") in _text(v, "contains()"),
        2,
        2,
        "whether text contains another",
    ),
    "split": Function(_split, 2, 2, "split(text, separator) -> array"),
    "join": Function(_join, 2, 2, "join(array, separator) -> text"),
    "concat": Function(_concat, 1, None, "concat(a, b, ...): texts of the values joined; nulls are skipped"),
    "coalesce": Function(
        lambda *values: next((v for v in values if v is not None), None),
        1,
        None,
        "the first value that is not null",
    ),
    "is_null": Function(lambda v: v is None, 1, 1, "whether a value is null or absent"),
    "abs": Function(_nullsafe(lambda v: abs(number(v))), 1, 1, "absolute value"),
    "round": Function(_round, 1, 2, "round(x, places): decimal rounded half-even"),
    "min": Function(_minmax(min), 1, None, "smallest of the non-null numbers"),
    "max": Function(_minmax(max), 1, None, "largest of the non-null numbers"),
    "int": Function(_cast(to_int), 1, 1, "integer of a number or numeric text (fractions refused)"),
    "decimal": Function(_cast(to_decimal_exact), 1, 1, "exact decimal of a number or numeric text"),
    "str": Function(_cast(to_string), 1, 1, "text of a value"),
    "year": Function(_nullsafe(lambda v: _date_part(v, "year()").year), 1, 1, "year of a date"),
    "month": Function(_nullsafe(lambda v: _date_part(v, "month()").month), 1, 1, "month (1-12) of a date"),
    "day": Function(_nullsafe(lambda v: _date_part(v, "day()").day), 1, 1, "day of month of a date"),
    "date": Function(
        _nullsafe(lambda v: v.date() if isinstance(v, dt.datetime) else _date_part(v, "date()")),
        1,
        1,
        "the date part of a timestamp",
    ),
    "format_date": Function(_strftime, 2, 2, "format_date(x, '%Y-%m-%d'): strftime text"),
}
