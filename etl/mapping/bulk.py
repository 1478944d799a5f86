"""Casts of a whole column at once, for values that already are what the column holds.

A relational source hands over canonical values (int, Decimal, aware UTC datetimes...), so for most
columns the per-value cast of `types.py` is a check that passes. A bulk cast makes that check over
the whole column with builtins (`set(map(type, ...))`, `min`/`max`, `map(Decimal.quantize, ...)`)
and returns exactly the list the per-value cast would give, or raises `CloserLook` when any value
needs the per-value cast (another type, a value out of range, one that would round, a null or
missing value where the column has a default or is required). Nothing is skipped: every value is
checked, by type and by value, on every batch, whatever the source declares.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable
from decimal import Decimal
from itertools import repeat
from operator import attrgetter

from bson.tz_util import utc as bson_utc

from etl.coltypes import ColumnType
from etl.mapping.paths import MISSING
from etl.mapping.types import INT64_MAX, INT64_MIN, UTC

BulkCast = Callable[[list, set], list]
"""(values, the set of their types) -> cast values; CloserLook when any value needs the per-value cast."""

_EMPTY = frozenset({type(None), type(MISSING)})
_tzinfo = attrgetter("tzinfo")


class CloserLook(Exception):
    """Some value of the column needs the per-value cast (which rejects or converts it)."""


def bulk_cast(kind: ColumnType, *, tz: str | None, nullable: bool) -> Callable[[list], list] | None:
    """The whole-column cast of a column type, or None when the type has none (json, lists, sets).

    `nullable`: null and missing values become None (a column with neither default nor
    `required`); otherwise they leave it to the per-value path. The column's rounding mode is not
    needed: a value that would round is a closer look, so rounding happens only in the per-value cast.
    """
    cast = _cast_of(kind, tz)
    if cast is None:
        return None

    def column(values: list) -> list:
        kinds = set(map(type, values))
        if not kinds & _EMPTY:
            return cast(values, kinds)
        if not nullable:
            raise CloserLook
        present = [value for value in values if value is not None and value is not MISSING]
        cast_values = iter(cast(present, kinds - _EMPTY) if present else ())
        return [None if value is None or value is MISSING else next(cast_values) for value in values]

    return column


def _cast_of(kind: ColumnType, tz: str | None) -> BulkCast | None:
    base = kind.base
    if base in _SAME:
        allowed = _SAME[base]
        return lambda values, kinds: _same(values, kinds, allowed)
    if base == "int":
        return _int
    if base == "float":
        return _float
    if base == "decimal":
        return _decimal if kind.precision is None else _fixed_decimal(kind.precision, kind.scale or 0)
    if base in ("timestamp", "timestamptz") and not tz:  # naive values are UTC wall time (make_cast)
        return _timestamp(base == "timestamptz", 6 if kind.precision is None else kind.precision)
    return None


_SAME: dict[str, set[type]] = {
    "string": {str}, "bool": {bool}, "date": {dt.date}, "uuid": {uuid.UUID}, "bytes": {bytes}
}
"""Types whose values the per-value cast returns unchanged (exact types: no subclasses)."""


def _same(values: list, kinds: set, allowed: set) -> list:
    if kinds - allowed:
        raise CloserLook
    return values


def _int(values: list, kinds: set) -> list:
    if kinds - {int} or (values and not (INT64_MIN <= min(values) and max(values) <= INT64_MAX)):
        raise CloserLook
    return values


def _float(values: list, kinds: set) -> list:
    if kinds - {float} or not all(map(math.isfinite, values)):
        raise CloserLook
    return values


def _decimal(values: list, kinds: set) -> list:
    if kinds - {Decimal} or not all(map(Decimal.is_finite, values)):
        raise CloserLook
    return values


def _fixed_decimal(precision: int, scale: int) -> BulkCast:
    """decimal(p,s): each value quantized to exactly `s` places, as the per-value cast returns it;
    a value that changes (would round), NaN (never equal to itself), infinity (quantize raises) or a
    value with more than p-s integer digits is a closer look."""
    quantum = Decimal(1).scaleb(-scale)
    limit = Decimal(10) ** (precision - scale)

    def cast(values: list, kinds: set) -> list:
        if kinds - {Decimal}:
            raise CloserLook
        try:
            fitted = list(map(Decimal.quantize, values, repeat(quantum, len(values))))
        except ArithmeticError:  # InvalidOperation (infinity, too many digits) is one
            raise CloserLook from None
        if fitted != values or (fitted and not (-limit < min(fitted) and max(fitted) < limit)):
            raise CloserLook
        return fitted

    return cast


def _timestamp(aware: bool, precision: int) -> BulkCast:
    """Datetimes already in UTC (aware ones in `datetime.UTC` or the BSON decoder's own UTC zone,
    naive ones as UTC wall time), with no more fractional digits than `precision`: the per-value
    cast only moves the zone marker."""
    step = 10 ** (6 - precision)

    def cast(values: list, kinds: set) -> list:
        if kinds - {dt.datetime}:
            raise CloserLook
        zones = set(map(_tzinfo, values))
        if step > 1 and any(value.microsecond % step for value in values):
            raise CloserLook
        if zones <= {UTC}:
            return values if aware else [value.replace(tzinfo=None) for value in values]
        if zones <= {None}:
            return [value.replace(tzinfo=UTC) for value in values] if aware else values
        if zones <= {bson_utc}:  # the per-value cast's own step, without its checks per value
            stamps = [value.astimezone(UTC) for value in values]
            return stamps if aware else [stamp.replace(tzinfo=None) for stamp in stamps]
        raise CloserLook

    return cast
