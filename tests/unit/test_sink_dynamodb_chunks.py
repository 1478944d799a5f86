"""BatchWriteItem chunks: at most 25 items and 16 MB each, every item in exactly one chunk, order kept."""

from etl.sinks.dynamodb import MAX_BATCH_BYTES, MAX_BATCH_ITEMS, _chunks, _Entry, _key_id
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
