"""The identity of a MongoDB `_id` as records carry it: key JSON for the engine, and back to BSON values.

Records carry `_id` in its canonical form (docs/types.md, "MongoDB"): an ObjectId is an `ObjectIdText`,
an int64 an `int`, a Decimal128 a `Decimal`, a binary of subtype 0 or 2 `bytes`, values without a
Python equivalent their Extended JSON `dict`. `key_json` turns that back into the BSON value and writes
it as canonical Extended JSON, so every type keeps its identity (the ObjectId `5f1d...` and the string
`"5f1d..."` are different keys). Numbers are written by value, as MongoDB compares them: `_id` 1,
1.0, NumberLong(1) and NumberDecimal("1.00") are one key (a unique index refuses the second), so they
give one JSON text; 0.1 (a double) and NumberDecimal("0.1") are different numbers and stay apart.

`candidates` lists the BSON values a key JSON may stand for at the server (a `bytes` key was read from
subtype 0 or 2), so that a lookup never calls a key missing because of a type the canonical form dropped.
"""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from typing import Any

from bson import json_util
from bson.binary import Binary
from bson.code import Code
from bson.dbref import DBRef
from bson.decimal128 import Decimal128
from bson.objectid import ObjectId

from etl.sources.bson_values import ObjectIdText, id_from_json, id_to_json

_INT64 = (-(2**63), 2**63)
_DECIMAL128 = decimal.Context(prec=34)
"""Decimal128's precision: normalising a Decimal128 value in it never rounds."""


def key_json(value: Any) -> str:
    """The key JSON of a canonical `_id` value (equal `_id`s at the server give equal text)."""
    return id_to_json(native(value))


def native(value: Any) -> Any:
    """A canonical value as the BSON value it was read from (numbers by value, see the module doc)."""
    if isinstance(value, ObjectIdText):
        return ObjectId(value)
    if value is None or isinstance(value, bool | str | datetime.datetime):
        return value
    if isinstance(value, int | float | decimal.Decimal):
        return _number(value)
    if isinstance(value, bytes) and not isinstance(value, Binary):
        return Binary(value, 0)
    if isinstance(value, uuid.UUID):
        return Binary.from_uuid(value)
    if isinstance(value, list):
        return [native(item) for item in value]
    if isinstance(value, dict):
        return _document(value)
    return value  # already a BSON value (a native `_id`)


def _document(value: dict) -> Any:
    """A `dict`: a document, or the Extended JSON form of a value without a Python equivalent (an
    `_id` document cannot hold `$`-prefixed fields, so `$` keys always mean the latter)."""
    if "$ref" in value and "$id" in value:
        extra = {name: native(item) for name, item in value.items() if name not in ("$ref", "$id", "$db")}
        return DBRef(value["$ref"], native(value["$id"]), value.get("$db"), **extra)
    if "$code" in value and "$scope" in value:
        return Code(value["$code"], _document(value["$scope"]))
    if value and all(name.startswith("$") for name in value):
        return json_util.loads(json.dumps(value))
    return {name: native(item) for name, item in value.items()}


def _number(value: int | float | decimal.Decimal) -> Any:
    """A number written by value: an integer in the int64 range as an int, else a double when the
    value is exactly one, else a normalised Decimal128; every NaN is one NaN."""
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != value:
            return value
        return int(value) if value.is_integer() and _INT64[0] <= value < _INT64[1] else value
    if value.is_nan():
        return float("nan")
    if value.is_infinite():
        return float(value)
    if value == value.to_integral_value() and _INT64[0] <= value < _INT64[1]:
        return int(value)
    as_double = float(value)
    if decimal.Decimal(as_double) == value:
        return as_double
    try:
        return Decimal128(value.normalize(_DECIMAL128))
    except (decimal.InvalidOperation, ValueError):  # stripped zeros took the exponent past Decimal128's
        return Decimal128(value)


def candidates(key: str) -> list[Any]:
    """The BSON values the key JSON `key` may stand for at the server."""
    value = id_from_json(key)
    if isinstance(value, bytes) and getattr(value, "subtype", 0) == 0:  # subtype 0 loads as bytes
        return [Binary(value, 0), Binary(value, 2)]  # and a subtype 2 `_id` reads as bytes too
    return [value]
