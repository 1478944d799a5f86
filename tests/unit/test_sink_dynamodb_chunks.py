"""Before BatchWriteItem: one row per key (the later wins), chunks of at most 25 items and 16 MB."""

from decimal import Decimal

from etl.coltypes import parse_type
from etl.records import Column, TableRows, TableSpec
from etl.sinks.dynamodb import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ITEMS,
    _chunks,
    _Entry,
    _key_id,
    _latest_by_key,
    _Table,
)
from etl.sinks.dynamodb_values import item_size


def entry(n, size):
    item = {"pk": {"S": f"k{n:05d}"}, "blob": {"S": "x" * size}}
    return _Entry(_key_id(item, ("pk",)), item, {}, str(n), item_size(item))


def test_small_items_go_25_to_a_call():
    entries = [entry(n, 10) for n in range(60)]
    chunks = list(_chunks(entries))
    assert [len(chunk) for chunk in chunks] == [25, 25, 10]
    assert [e.source_key for chunk in chunks for e in chunk] == [str(n) for n in range(60)]


def test_large_items_stay_within_16_mb_per_call():
    # 25 items of up to 400 KB are 10 MB, so for checked items the count limit binds first
    entries = [entry(n, 390 * 1024) for n in range(90)]
    chunks = list(_chunks(entries))
    assert all(len(chunk) <= MAX_BATCH_ITEMS for chunk in chunks)
    assert all(sum(item_size(e.item) for e in chunk) <= MAX_BATCH_BYTES for chunk in chunks)
    assert [len(chunk) for chunk in chunks] == [25, 25, 25, 15]


def test_numeric_keys_equal_in_dynamodb_are_one_key():
    one = _key_id({"pk": {"N": "1"}}, ("pk",))
    assert one == _key_id({"pk": {"N": "1.0"}}, ("pk",)) == _key_id({"pk": {"N": "1E0"}}, ("pk",))
    assert one != _key_id({"pk": {"S": "1"}}, ("pk",))


def test_latest_row_per_key_and_unkeyed_rows_kept_for_their_rejects():
    spec = TableSpec("d", "t", ("pk",), (Column("pk", "int"), Column("v", "string")))
    table = _Table(spec, {c.name: parse_type(c.type) for c in spec.columns})
    rows = [{"pk": 1, "v": "a"}, {"pk": 2, "v": "b"}, {"pk": Decimal("1.0"), "v": "c"}, {"v": "no key"},
            {"pk": None, "v": "null key"}, {"pk": None, "v": "another"}, {"pk": 10**40 + 1, "v": "too long"},
            {"pk": 10**40 + 2, "v": "too long too"}, {"pk": True, "v": "bool"},
            {"pk": False, "v": "bool too"}, {"pk": 0.5, "v": "float"},
            {"pk": Decimal("0.50"), "v": "same number"}]
    latest = _latest_by_key(table, TableRows(rows, [str(n) for n in range(len(rows))]))
    assert [(row["v"], key) for row, key in latest] == [
        ("b", "1"), ("c", "2"), ("no key", "3"), ("null key", "4"), ("another", "5"), ("too long", "6"),
        ("too long too", "7"), ("bool", "8"), ("bool too", "9"), ("same number", "11")]


def test_numbers_beyond_28_digits_stay_distinct_keys():
    a = _key_id({"pk": {"N": "1234567890123456789012345678901234567"}}, ("pk",))
    b = _key_id({"pk": {"N": "1234567890123456789012345678901234568"}}, ("pk",))
    assert a != b
