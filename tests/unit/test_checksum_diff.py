"""Bucket checksums and validate_table: exact differences, order independence, tolerances."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.checksum import (
    MISSING,
    BucketChecksums,
    Difference,
    FieldDifference,
    Tolerances,
    row_hash,
    validate_table,
)
from etl.records import Column, TableSpec

UTC = dt.UTC
SPEC = TableSpec(
    target="pg",
    table="visits",
    key=("patient_id", "visit"),
    columns=(
        Column("patient_id", "string"),
        Column("visit", "int"),
        Column("amount", "decimal(10,2)"),
        Column("weight", "float"),
        Column("seen_at", "timestamptz(6)"),
        Column("note", "string", pii="hmac"),
        Column("tags", "set"),
    ),
)


def make_rows(n: int) -> list[dict]:
    start = dt.datetime(2024, 1, 1, tzinfo=UTC)
    return [
        {
            "patient_id": f"P{i // 3:05d}",
            "visit": i % 3,
            "amount": Decimal(i) / 4,
            "weight": 50 + i / 7,
            "seen_at": start + dt.timedelta(minutes=i, microseconds=i),
            "note": f"h{i:08x}",
            "tags": {"a", f"t{i % 5}"},
        }
        for i in range(n)
    ]


def copy_rows(rows: list[dict]) -> list[dict]:
    return [dict(row) for row in rows]


def validate(source: list[dict], target: list[dict], **options) -> object:
    return validate_table(SPEC, lambda: iter(source), lambda: iter(target), **options)


def test_equal_in_any_order_gives_zero_differences() -> None:
    source = make_rows(500)
    target = copy_rows(source)
    random.Random(7).shuffle(target)
    result = validate(source, target, buckets=64)
    assert result.ok
    assert (result.rows_source, result.rows_target, result.mismatched_buckets) == (500, 500, [])
    assert (result.missing, result.extra, result.changed, result.differences) == (0, 0, 0, [])


def test_one_field_changed_names_that_key_and_field_with_both_values() -> None:
    source = make_rows(500)
    target = copy_rows(source)
    target[123]["amount"] = Decimal("99.99")
    result = validate(source, target)
    assert not result.ok
    assert (result.missing, result.extra, result.changed) == (0, 0, 1)
    assert len(result.mismatched_buckets) == 1
    [difference] = result.differences
    assert difference.kind == "changed"
    assert difference.key == {"patient_id": "P00041", "visit": 0}
    assert difference.fields == (FieldDifference("amount", Decimal("30.75"), Decimal("99.99")),)
    frame = result.to_pandas()
    assert frame[["key", "kind", "field"]].values.tolist() == [
        ["patient_id='P00041', visit=0", "changed", "amount"]
    ]
    assert frame["source_value"].tolist() == [Decimal("30.75")]


def test_one_row_deleted_is_exactly_that_key_missing() -> None:
    source = make_rows(500)
    target = [row for row in source if not (row["patient_id"] == "P00010" and row["visit"] == 2)]
    result = validate(source, target)
    assert (result.missing, result.extra, result.changed, result.rows_target) == (1, 0, 0, 499)
    assert [(d.kind, d.key) for d in result.differences] == [
        ("missing", {"patient_id": "P00010", "visit": 2})
    ]


def test_one_extra_row_is_exactly_that_key_extra() -> None:
    source = make_rows(500)
    target = [*copy_rows(source), {**source[0], "patient_id": "P99999"}]
    result = validate(source, target)
    assert (result.missing, result.extra, result.changed) == (0, 1, 0)
    assert [(d.kind, d.key) for d in result.differences] == [("extra", {"patient_id": "P99999", "visit": 0})]


def test_numbers_a_dynamodb_target_returns_as_decimal_are_equal() -> None:
    source = [{**row, "amount": 1} for row in make_rows(10)]
    target = [{**row, "amount": Decimal("1.00")} for row in source]
    also = [{**row, "amount": 1.0} for row in source]
    assert validate(source, target).ok
    assert validate(source, also).ok


def test_null_and_missing_are_different() -> None:
    source = make_rows(10)
    target = copy_rows(source)
    target[4]["note"] = None
    del source[4]["note"]
    result = validate(source, target)
    assert result.changed == 1
    assert result.differences[0].fields == (FieldDifference("note", MISSING, None),)


def test_a_timestamp_off_by_one_microsecond_differs_unless_the_precision_tolerance_allows() -> None:
    source = make_rows(50)
    source[9]["seen_at"] = dt.datetime(2024, 3, 1, 10, 0, 0, 500000, tzinfo=UTC)
    target = copy_rows(source)
    target[9]["seen_at"] = dt.datetime(2024, 3, 1, 10, 0, 0, 500001, tzinfo=UTC)
    exact = validate(source, target)
    assert exact.changed == 1 and exact.differences[0].fields[0].field == "seen_at"
    milliseconds = validate(source, target, tolerances=Tolerances(timestamp_precision=3))
    assert milliseconds.ok and milliseconds.tolerances == {"timestamp_precision": 3}
    assert validate(source, target, tolerances=Tolerances(timestamp_precision=6)).changed == 1


def test_float_ulp_tolerance_is_honoured_row_by_row() -> None:
    source = make_rows(50)
    target = copy_rows(source)
    target[3]["weight"] = source[3]["weight"] + 2 * (source[3]["weight"] * 2**-52)  # about 2 ULPs
    target[8]["weight"] = source[8]["weight"] + 1.0
    exact = validate(source, target)
    assert exact.changed == 2
    tolerant = validate(source, target, tolerances=Tolerances(float_ulps=4))
    assert tolerant.changed == 1 and tolerant.unresolved_buckets == 0
    assert tolerant.differences[0].key == {"patient_id": "P00002", "visit": 2}
    assert tolerant.tolerances == {"float_ulps": 4}


def test_nfc_rstrip_and_key_case_tolerances() -> None:
    source = make_rows(30)
    target = copy_rows(source)
    target[1]["note"] = source[1]["note"] + "  "
    target[2]["patient_id"] = source[2]["patient_id"].lower()
    source[3]["note"], target[3]["note"] = "caf\u00e9", "cafe\u0301"
    exact = validate(source, target)
    assert (exact.changed, exact.missing, exact.extra) == (2, 1, 1)
    tolerant = validate(
        source, target, tolerances=Tolerances(unicode_nfc=True, rstrip_char=True, case_insensitive_keys=True)
    )
    assert tolerant.ok
    assert validate(source, target, tolerances=Tolerances(unicode_nfc=True, rstrip_char=True)).extra == 1
    assert (
        validate(source, target, tolerances=Tolerances(unicode_nfc=True, case_insensitive_keys=True)).changed
        == 1
    )
    assert (
        validate(source, target, tolerances=Tolerances(rstrip_char=True, case_insensitive_keys=True)).changed
        == 1
    )


def test_listing_stops_at_max_differences_but_counting_goes_on() -> None:
    source = make_rows(300)
    target = copy_rows(source)
    for row in target:
        row["amount"] += 1
    result = validate(source, target, max_differences=5)
    assert result.changed == 300 and len(result.differences) == 5 and result.truncated


def test_duplicate_keys_are_reported_on_their_side() -> None:
    source = make_rows(20)
    target = [*copy_rows(source), dict(source[6])]
    result = validate(source, target)
    assert (result.duplicates, result.missing, result.extra, result.changed) == (1, 0, 0, 0)
    assert result.differences == [
        Difference(
            "duplicate", {"patient_id": "P00002", "visit": 0}, result.mismatched_buckets[0], side="target"
        )
    ]


def test_a_side_that_changes_between_the_passes_leaves_unresolved_buckets() -> None:
    source = make_rows(20)
    reads = iter([copy_rows(source)[:-1], copy_rows(source)])  # first read misses a row, second has it
    result = validate_table(SPEC, lambda: iter(source), lambda: next(reads))
    assert (result.unresolved_buckets, result.missing, result.ok) == (1, 0, False)
    assert result.differences[0].kind == "bucket"
    assert (result.differences[0].source_count, result.differences[0].target_count) == (1, 0)


@settings(max_examples=50, deadline=None)
@given(st.permutations(range(60)), st.integers(min_value=1, max_value=40))
def test_bucket_checksums_do_not_depend_on_order_or_partitioning(order: list[int], cut: int) -> None:
    rows = make_rows(60)
    whole = BucketChecksums.for_table(SPEC, buckets=16).add_all(rows)
    shuffled = [rows[i] for i in order]
    first = BucketChecksums.for_table(SPEC, buckets=16).add_all(shuffled[:cut])
    second = BucketChecksums.for_table(SPEC, buckets=16).add_all(shuffled[cut:])
    assert first.merge(second) == whole
    assert BucketChecksums.from_json(whole.to_json()) == whole
    assert whole.rows == 60


def test_row_hash_is_128_bits_and_sees_every_column() -> None:
    row = make_rows(1)[0]
    digest = row_hash(row, SPEC)
    assert 0 <= digest < 2**128 and digest.bit_length() > 64
    assert row_hash({**row, "tags": {"a", "t0", "t1"}}, SPEC) != digest
    assert row_hash({**row, "not_in_spec": 1}, SPEC) == digest
    assert row_hash(dict(reversed(list(row.items()))), SPEC) == digest


def test_merge_refuses_other_bucket_counts() -> None:
    with pytest.raises(ValueError, match="cannot merge 8 buckets into 16"):
        BucketChecksums(16).merge(BucketChecksums(8))


def test_wholly_different_tables_are_compared_in_bounded_rounds() -> None:
    source = make_rows(400)
    target = copy_rows(source)
    for row in target:
        row["note"] = "changed"
    reads = {"target": 0}

    def target_rows():
        reads["target"] += 1
        return iter(target)

    result = validate_table(SPEC, lambda: iter(source), target_rows, buckets=32, max_rows_held=100)
    assert result.changed == 400 and len(result.mismatched_buckets) == 32
    assert reads["target"] >= 1 + 800 // 100  # pass 1, then one read per round of at most 100 held rows


@pytest.mark.parametrize(
    "tolerances", [Tolerances(), Tolerances(case_insensitive_keys=True, unicode_nfc=True)]
)
def test_bucket_and_hash_agrees_with_its_parts(tolerances: Tolerances) -> None:
    from etl.checksum import RowHasher, bucket_of

    keyed_outside = TableSpec("pg", "t", ("id", "extra_key"), SPEC.columns)
    for spec in (SPEC, keyed_outside):
        hasher = RowHasher(spec, tolerances)
        for row in make_rows(30):
            row = {**row, "id": row["visit"], "extra_key": row["patient_id"]}
            expected = (bucket_of(hasher.key_encoding(row), 64), hasher.row_hash(row))
            assert hasher.bucket_and_hash(row, 64) == expected


def test_within_ulps_counts_units_in_the_last_place() -> None:
    import math

    from etl.checksum.diff import within_ulps

    one_up = math.nextafter(1.0, 2.0)
    assert within_ulps(1.0, one_up, 1) and not within_ulps(1.0, math.nextafter(one_up, 2.0), 1)
    assert within_ulps(0.0, -0.0, 0)
    assert within_ulps(-5e-324, 5e-324, 2) and not within_ulps(-5e-324, 5e-324, 1)
    assert within_ulps(math.nan, math.nan, 0) and not within_ulps(math.nan, 1.0, 10**9)
    assert within_ulps(Decimal("0.1"), 0.1, 0)  # a DynamoDB reader's Decimal for a float column
    assert not within_ulps(True, 1.0, 5) and not within_ulps("1.0", 1.0, 5)
