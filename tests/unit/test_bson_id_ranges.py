"""`_id` range conditions across BSON type classes (no server: the queries themselves)."""

from __future__ import annotations

import uuid

from bson import Decimal128, MaxKey, MinKey, ObjectId

from etl.sources.mongo_ranges import TYPE_CLASSES, range_filters, type_class

OID = ObjectId("5f1d7a2b9c8e4d3a2b1c0f9e")


def test_type_classes_follow_mongodb_order():
    values = [MinKey(), None, 1, 2.5, Decimal128("3"), "s", {"a": 1}, [1], uuid.UUID(int=1), OID, True,
              MaxKey()]
    assert [TYPE_CLASSES[type_class(v)][0] for v in values] == [
        "minKey", "null", "number", "number", "number", "string", "object", "array", "binData", "objectId",
        "bool", "maxKey"]


def test_unbounded_is_one_plain_scan():
    assert range_filters(None, True, None, has_start=False, has_end=False) == [{}]


def test_same_class_bounds_are_one_range():
    assert range_filters(5, True, 9, has_start=True, has_end=True) == [{"_id": {"$gte": 5, "$lt": 9}}]
    assert range_filters(5, False, 9, has_start=True, has_end=True) == [{"_id": {"$gt": 5, "$lt": 9}}]


def test_bounds_of_different_classes_are_start_middle_and_end_queries():
    assert range_filters(5, True, OID, has_start=True, has_end=True) == [
        {"_id": {"$gte": 5}},
        {"_id": {"$type": ["string", "symbol", "object", "array", "binData"]}},
        {"_id": {"$lt": OID}},
    ]


def test_adjacent_classes_have_no_middle_query():
    assert range_filters("k", True, uuid.UUID(int=3), has_start=True, has_end=True) == [
        {"_id": {"$gte": "k"}}, {"_id": {"$type": ["object", "array"]}}, {"_id": {"$lt": uuid.UUID(int=3)}}]
    assert range_filters(1, True, "a", has_start=True, has_end=True) == [
        {"_id": {"$gte": 1}}, {"_id": {"$lt": "a"}}]


def test_open_ends_cover_every_class_before_and_after():
    before = range_filters(None, True, 7, has_start=False, has_end=True)
    assert before == [{"_id": {"$type": ["minKey", "null", "undefined"]}}, {"_id": {"$lt": 7}}]
    after = range_filters(OID, False, None, has_start=True, has_end=False)
    assert after == [{"_id": {"$gt": OID}}, {"_id": {"$type": [
        "bool", "date", "timestamp", "regex", "dbPointer", "javascript", "javascriptWithScope", "maxKey"]}}]


def test_one_value_classes_are_never_compared():
    # resuming after the only MinKey skips the class; a MaxKey upper bound excludes the class
    assert range_filters(MinKey(), False, MaxKey(), has_start=True, has_end=True)[0]["_id"]["$type"][:2] == [
        "null", "undefined"]
    assert all("$lt" not in f["_id"] for f in range_filters(1, True, MaxKey(), has_start=True, has_end=True))
    assert range_filters(None, True, None, has_start=True, has_end=True) == []  # [null, null) is empty
    assert range_filters(None, True, 3, has_start=True, has_end=True) == [
        {"_id": {"$type": ["null", "undefined"]}}, {"_id": {"$lt": 3}}]
    assert range_filters(None, False, 3, has_start=True, has_end=True) == [{"_id": {"$lt": 3}}]
