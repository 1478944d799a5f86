"""DynamoDB values: exact numbers or a reason, documented item sizes, a lossless round trip per type."""

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from etl.coltypes import parse_type
from etl.sinks.dynamodb_values import (
    MAX_ITEM_BYTES,
    ItemRejected,
    decode_item,
    encode_item,
    encode_item_sized,
    encode_value,
    item_size,
    number_text,
    stored_value,
)

LARGEST = "9.9999999999999999999999999999999999999E+125"


@pytest.mark.parametrize(
    "value, text",
    [
        (0, "0"),
        (Decimal("1.98"), "1.98"),
        (0.1, "0.1"),  # repr: the shortest text that round-trips the float
        (1e120, "1E+120"),
        (10**50, "100000000000000000000000000000000000000000000000000"),  # 1 significant digit
        (Decimal("1E-130"), "1E-130"),
        (Decimal(LARGEST), LARGEST),
        (Decimal("-12345678901234567890123456789012345678"), "-12345678901234567890123456789012345678"),
    ],
)
def test_numbers_within_limits_are_sent_exactly(value, text):
    assert number_text(value, "x") == text
    assert Decimal(text) == Decimal(repr(value) if isinstance(value, float) else value)


@pytest.mark.parametrize(
    "value, reason",
    [
        (float("nan"), "NaN or Infinity"),
        (float("inf"), "NaN or Infinity"),
        (Decimal("NaN"), "NaN or Infinity"),
        (Decimal("1.23456789012345678901234567890123456789"), "39 significant digits"),
        (2**130 + 1, "40 significant digits"),
        (Decimal("1E-131"), "outside DynamoDB's range"),
        (Decimal("1E+126"), "outside DynamoDB's range"),
        (5e-324, "outside DynamoDB's range"),
    ],
)
def test_numbers_dynamodb_cannot_hold_are_rejected_never_rounded(value, reason):
    with pytest.raises(ItemRejected) as caught:
        number_text(value, "total")
    assert reason in caught.value.reason
    assert caught.value.field_path == "total"
    assert caught.value.value_type == type(value).__name__


def test_sizes_follow_the_documented_rules():
    # name bytes + value: string utf-8 bytes; number (digits+1)//2 + 1; binary raw; bool/null 1;
    # list/map 3 + per element (size + 1) (+ name bytes for map members)
    item = {
        "s": {"S": "héllo"},  # 1 + 6
        "n": {"N": "123.45"},  # 1 + 4 (5 digits -> 3 + 1)
        "b": {"B": b"abcd"},  # 1 + 4
        "t": {"BOOL": True},  # 1 + 1
        "l": {"L": [{"N": "1"}, {"NULL": True}]},  # 1 + 3 + (2+1) + (1+1)
        "m": {"M": {"ab": {"S": "x"}}},  # 1 + 3 + (2 + 1 + 1)
        "ss": {"SS": ["a", "bc"]},  # 2 + 3
    }
    assert item_size(item) == 7 + 5 + 5 + 2 + 9 + 8 + 5


COLUMNS = {
    name: parse_type(kind)
    for name, kind in {
        "pk": "string", "sk": "int", "total": "decimal(10,2)", "ratio": "float", "when": "timestamptz(6)",
        "local": "timestamp(6)", "day": "date", "id": "uuid", "blob": "bytes", "doc": "json", "items": "list",
        "tags": "set(string)", "nums": "set(int)", "none": "set(string)", "flag": "bool", "gone": "string",
    }.items()
}


def test_every_column_type_round_trips():
    row = {
        "pk": "CUSTOMER#1", "sk": 7, "total": Decimal("2328.60"), "ratio": 0.1,
        "when": dt.datetime(2009, 1, 1, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "local": dt.datetime(2009, 1, 1, 10, 30, 0, 5), "day": dt.date(2009, 1, 1), "id": uuid.UUID(int=5),
        "blob": b"\x00\x01", "doc": {"city": "Oslo", "state": None, "n": Decimal("0.99"), "k": [1, "a"]},
        "items": [{"unit_price": Decimal("0.99"), "quantity": 1}], "tags": {"a", "b"}, "nums": {1, 2},
        "none": set(), "flag": False, "gone": None,
    }
    item, size = encode_item_sized(row, COLUMNS, ("pk", "sk"))
    assert size == item_size(item)  # sizes computed while encoding agree with the documented rules
    assert item == encode_item(row, COLUMNS, ("pk", "sk"))
    assert item["when"] == {"S": "2009-01-01T08:30:00.000000+00:00"}
    assert item["none"] == {"L": []}  # DynamoDB has no empty set
    assert sorted(item["tags"]["SS"]) == ["a", "b"]
    assert sorted(item["nums"]["NS"]) == ["1", "2"]
    back = decode_item(item, COLUMNS)
    assert back == row
    assert back["when"].utcoffset() == dt.timedelta(0)
    assert type(back["total"]) is Decimal and type(back["ratio"]) is float and type(back["sk"]) is int


def test_values_that_do_not_decode_come_back_as_stored():
    stored = {"when": {"S": "not a time"}, "id": {"S": "xyz"}, "total": {"S": "1.5"}, "day": {"N": "3"}}
    assert decode_item(stored, COLUMNS) == {"when": "not a time", "id": "xyz", "total": "1.5", "day": 3}
    # a naive timestamp in a timestamptz column is not silently given a zone
    assert decode_item({"when": {"S": "2009-01-01T00:00:00"}}, COLUMNS) == {"when": "2009-01-01T00:00:00"}


def test_no_float_reaches_the_wire():
    item = encode_item({"pk": "k", "sk": 1, "doc": {"x": 1.5, "y": [2.25]}}, COLUMNS, ("pk", "sk"))
    assert item["doc"] == {"M": {"x": {"N": "1.5"}, "y": {"L": [{"N": "2.25"}]}}}


@pytest.mark.parametrize(
    "row, path, reason",
    [
        ({"sk": 1}, "pk", "missing or null"),
        ({"pk": "", "sk": 1}, "pk", "empty"),
        ({"pk": "k", "sk": 1, "tags": {"a", 1}}, "tags", "only strings"),
        ({"pk": "k", "sk": 1, "doc": {"d": dt.timedelta(1)}}, "doc.d", "no DynamoDB representation"),
        ({"pk": "k", "sk": 1, "items": [1, float("nan")]}, "items[1]", "NaN or Infinity"),
    ],
)
def test_bad_items_are_rejected_with_the_field(row, path, reason):
    with pytest.raises(ItemRejected) as caught:
        encode_item(row, COLUMNS, ("pk", "sk"))
    assert caught.value.field_path == path
    assert reason in caught.value.reason


def test_item_size_limit():
    fits = {"pk": "k", "sk": 1, "doc": "x" * (MAX_ITEM_BYTES - 20)}
    assert item_size(encode_item(fits, COLUMNS, ("pk", "sk"))) <= MAX_ITEM_BYTES
    too_big = {"pk": "k", "sk": 1, "doc": "x" * MAX_ITEM_BYTES}
    with pytest.raises(ItemRejected) as caught:
        encode_item(too_big, COLUMNS, ("pk", "sk"))
    size = MAX_ITEM_BYTES + 3 + 2 + 3 + 2  # doc + its name, pk + its value, sk + its number
    assert caught.value.reason == f"item is {size} bytes; DynamoDB's item size limit is 409600 bytes (400 KB)"


def test_number_subclasses_are_sent_as_numbers():
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    assert encode_value(Level.HIGH, None, "x") == {"N": "3"}


def test_empty_strings_are_kept_outside_keys():
    assert encode_value("", None, "x") == {"S": ""}


def test_stored_value_is_what_a_map_reads_back():
    """The source side of a validation: the writer's encoding, then the reader's decoding."""
    value = {"at": dt.datetime(1970, 1, 1, tzinfo=dt.UTC), "day": dt.date(2020, 1, 2), "id": uuid.UUID(int=1),
             "raw": b"", "n": Decimal("1.10"), "f": -0.0, "tags": set(), "l": [dt.time(1, 2)]}
    assert stored_value(value, parse_type("json")) == {
        "at": "1970-01-01T00:00:00.000000+00:00", "day": "2020-01-02",
        "id": "00000000-0000-0000-0000-000000000001", "raw": b"", "n": Decimal("1.1"), "f": 0, "tags": [],
        "l": ["01:02:00"]}
    assert stored_value([{"a": 1}], parse_type("list")) == [{"a": 1}]


@pytest.mark.parametrize(("row", "path"), [
    ({"doc": {"": 1}}, 'doc.""'),
    ({"doc": {"a": [{"x": {"": None}}]}}, 'doc.a[0].x.""'),
])
def test_an_empty_map_key_is_refused_naming_its_path(row, path):
    with pytest.raises(ItemRejected) as refused:
        encode_item({"pk": "k", **row}, {}, ("pk",))
    assert (refused.value.field_path, refused.value.reason) == (
        path, "an empty attribute name; DynamoDB names (map keys included) must be at least one character")
