"""`_id` ranges that cover mixed BSON types without gaps, despite MongoDB's type bracketing.

MongoDB sorts values of different types by a fixed type order
(https://www.mongodb.com/docs/manual/reference/bson-type-comparison-order/), but a query
`{_id: {$gte: a, $lt: b}}` only matches values of the same type class as its operand
(https://www.mongodb.com/docs/manual/reference/method/db.collection.find/#type-bracketing).
A range whose bounds are of different classes is therefore expressed as at most three
index-friendly queries, each sorted by `_id`, read one after another:

1. the start's own class from the start on (`$gte`/`$gt`, plus `$lt` when the end is in the
   same class);
2. every class strictly between the two, whole (`$type`);
3. the end's own class up to the end (`$lt`).
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from bson.binary import Binary
from bson.code import Code
from bson.datetime_ms import DatetimeMS
from bson.dbref import DBRef
from bson.decimal128 import Decimal128
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.objectid import ObjectId
from bson.regex import Regex
from bson.timestamp import Timestamp

TYPE_CLASSES: list[tuple[str, tuple[str, ...]]] = [
    ("minKey", ("minKey",)),
    ("null", ("null", "undefined")),
    ("number", ("double", "int", "long", "decimal")),
    ("string", ("string", "symbol")),
    ("object", ("object",)),
    ("array", ("array",)),
    ("binData", ("binData",)),
    ("objectId", ("objectId",)),
    ("bool", ("bool",)),
    ("date", ("date",)),
    ("timestamp", ("timestamp",)),
    ("regex", ("regex",)),
    ("dbPointer", ("dbPointer",)),
    ("javascript", ("javascript",)),
    ("javascriptWithScope", ("javascriptWithScope",)),
    ("maxKey", ("maxKey",)),
]
"""BSON type classes in MongoDB's comparison order, with the `$type` aliases of each."""

_SINGLE_VALUED = {"minKey", "null", "maxKey"}
"""Classes holding one value only: compared by class alone (no `$gt` on them)."""


def type_class(value: Any) -> int:
    """Position in TYPE_CLASSES of a native (NATIVE_CODEC-decoded) value."""
    if isinstance(value, MinKey):
        return 0
    if value is None:
        return 1
    if isinstance(value, bool):
        return 8
    if isinstance(value, int | float | Decimal128):
        return 2
    if isinstance(value, str):
        return 3
    if isinstance(value, dict | DBRef):
        return 4
    if isinstance(value, list):
        return 5
    if isinstance(value, bytes | Binary | uuid.UUID):
        return 6
    if isinstance(value, ObjectId):
        return 7
    if isinstance(value, datetime.datetime | DatetimeMS):
        return 9
    if isinstance(value, Timestamp):
        return 10
    if isinstance(value, Regex):
        return 11
    if isinstance(value, Code):
        return 13 if value.scope is None else 14
    if isinstance(value, MaxKey):
        return 15
    raise TypeError(f"no BSON type class for {type(value).__name__}")


def range_filters(start: Any, start_inclusive: bool, end: Any, *, has_start: bool, has_end: bool
                  ) -> list[dict]:
    """`_id` conditions, in `_id` order, that together match exactly [start, end).

    `has_start` / `has_end` False means unbounded on that side. With both unbounded one empty
    condition is returned (a plain scan)."""
    if not has_start and not has_end:
        return [{}]
    first = type_class(start) if has_start else 0
    last = type_class(end) if has_end else len(TYPE_CLASSES) - 1
    if first > last:
        return []
    filters: list[dict] = []
    middle_from, middle_to = first, last
    if has_start:
        middle_from = first + 1
        condition = _start_condition(first, start, start_inclusive)
        if condition is not None and has_end and last == first:
            condition = _add_end(condition, first, end)
        if condition is not None:
            filters.append({"_id": condition})
        if has_end and last == first:
            return filters
    if has_end:
        middle_to = last - 1
    aliases = [alias for index in range(middle_from, middle_to + 1) for alias in TYPE_CLASSES[index][1]]
    if aliases:
        filters.append({"_id": {"$type": aliases}})
    if has_end and not (has_start and first == last):
        end_condition = _end_condition(last, end)
        if end_condition is not None:
            filters.append({"_id": end_condition})
    return filters


def _start_condition(index: int, start: Any, inclusive: bool) -> dict | None:
    name, aliases = TYPE_CLASSES[index]
    if name in _SINGLE_VALUED:
        return {"$type": list(aliases)} if inclusive else None
    return {"$gte" if inclusive else "$gt": start}


def _add_end(condition: dict, index: int, end: Any) -> dict | None:
    if TYPE_CLASSES[index][0] in _SINGLE_VALUED:
        return None  # [x, x) within a one-value class is empty
    return {**condition, "$lt": end}


def _end_condition(index: int, end: Any) -> dict | None:
    if TYPE_CLASSES[index][0] in _SINGLE_VALUED:
        return None  # the end is exclusive and the class has no smaller value
    return {"$lt": end}
