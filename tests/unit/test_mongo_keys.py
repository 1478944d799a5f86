"""Key JSON of MongoDB `_id`s as records carry them (etl/sources/mongo_keys.py): every BSON type keeps
its identity, numbers are keys by value as MongoDB compares them."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal

import bson
import pytest
from bson import Code, DBRef, Decimal128, Int64, MaxKey, MinKey, ObjectId, Timestamp
from bson.binary import Binary

from etl.sources.bson_values import CANONICAL_CODEC, id_to_json
from etl.sources.mongo_keys import candidates, key_json

OID = ObjectId("5f1d7a2b9c8e4d3a2b1c0f9e")


def as_record(native_id):
    """The `_id` as a record carries it: the document decoded the way the sources decode it."""
    return bson.decode(bson.encode({"_id": native_id}), CANONICAL_CODEC)["_id"]


@pytest.mark.parametrize("native_id", [
    OID, "5f1d7a2b9c8e4d3a2b1c0f9e", "", "ünïcode", True, False, None,
    Binary(b"bytes", 0), Binary(b"", 0), Binary(b"legacy uuid bytes", 3), Binary(b"md5", 5),
    Binary(b"x", 0x80),
    Binary.from_uuid(uuid.UUID("12345678-1234-5678-1234-567812345678")),
    datetime.datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=datetime.UTC),
    datetime.datetime(9999, 12, 31, tzinfo=datetime.UTC),
    Decimal128("0.1"), Decimal128("-1.25E-300"), Decimal128("1E+6000"),
    3.5, -0.25, float("inf"), 2.0**70,
    Timestamp(1700000000, 7), MinKey(), MaxKey(), Code("f()"), Code("f()", {"x": 1}),
    DBRef("things", OID), DBRef("things", 5, "elsewhere"),
    {"a": 1, "b": {"c": [OID, "x"]}}, {"b": 1, "a": 1}, {},
], ids=repr)
def test_a_key_is_the_bson_value_the_record_was_read_from(native_id):
    assert key_json(as_record(native_id)) == id_to_json(native_id)


@pytest.mark.parametrize(("values", "key"), [
    ([1, Int64(1), 1.0, Decimal128("1.00"), Decimal128("1")], '{"v": {"$numberInt": "1"}}'),
    ([2**40, Int64(2**40), float(2**40)], '{"v": {"$numberLong": "1099511627776"}}'),
    ([0, -0.0, Decimal128("-0.000")], '{"v": {"$numberInt": "0"}}'),
    ([1.5, Decimal128("1.50")], '{"v": {"$numberDouble": "1.5"}}'),
    ([Decimal128("0.1"), Decimal128("0.10")], '{"v": {"$numberDecimal": "0.1"}}'),
    ([float("nan"), Decimal128("NaN")], '{"v": {"$numberDouble": "NaN"}}'),
    ([{"n": 1}, {"n": 1.0}, {"n": Int64(1)}], '{"v": {"n": {"$numberInt": "1"}}}'),
], ids=str)
def test_equal_numbers_are_one_key(values, key):
    assert {key_json(as_record(value)) for value in values} == {key}


def test_different_keys_stay_apart():
    distinct = [OID, str(OID), 0.1, Decimal128("0.1"), Binary(b"ab", 0), Binary(b"ab", 5), "1", 1,
                {"a": 1, "b": 2}, {"b": 2, "a": 1}, True, 1.5, [1]]
    assert len({key_json(as_record(value)) for value in distinct}) == len(distinct)


def test_canonical_values_made_in_python_give_the_same_keys():
    assert key_json(Decimal("7.000")) == key_json(7) == key_json(as_record(Int64(7)))
    assert key_json(uuid.UUID(int=1)) == key_json(as_record(Binary.from_uuid(uuid.UUID(int=1))))


def test_a_bytes_key_stands_for_subtypes_0_and_2():
    assert candidates(key_json(b"ab")) == [Binary(b"ab", 0), Binary(b"ab", 2)]
    assert candidates(key_json(as_record(Binary(b"ab", 5)))) == [Binary(b"ab", 5)]
    assert candidates(key_json(as_record(OID))) == [OID]
