"""The same-engine mode: two PostgreSQL tables keyed by one NOT NULL integer column are
checksummed and drilled down by key range. The range sums equal the Python row hashes, and
validation names exactly the rows that differ; sides that cannot use key ranges fall back to the
canonical hash buckets and give the same answer."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from etl.checksum import BucketChecksums, RowHasher, Tolerances, validate_table
from etl.checksum.keyranges import KeyRanges
from etl.checksum.postgres_sql import PostgresTableSide
from tests.integration.test_checksum_postgres import COLUMNS, FILL, SPEC

pytestmark = pytest.mark.integration

ROWS = 3000
RANGE_BUCKETS = 250
"""3000 keys in 256 requested buckets: width 12, so 250 ranges (the hash buckets would be 256)."""


@pytest.fixture
def tables(pg_database: str) -> tuple[str, PostgresTableSide, PostgresTableSide]:
    """`people` and `people_copy`, equal, both with an int8 primary key."""
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE people ({})".format(", ".join(f"{n} {t}" for n, t, _ in COLUMNS)))
        conn.execute(FILL)
        conn.execute("CREATE TABLE people_copy (LIKE people INCLUDING ALL)")
        conn.execute("INSERT INTO people_copy SELECT * FROM people")
    side, copy = PostgresTableSide(pg_database, "people"), PostgresTableSide(pg_database, "people_copy")
    return pg_database, side, copy


def run(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement)


@pytest.mark.parametrize(
    "tolerances",
    [Tolerances(), Tolerances(timestamp_precision=3, unicode_nfc=True, rstrip_char=True)],
)
def test_range_checksums_equal_the_python_row_hashes_per_range(tables, tolerances: Tolerances) -> None:
    _dsn, side, _copy = tables
    span = side.key_span(SPEC, tolerances)
    ranges = KeyRanges.spanning("id", [span], 64)
    hasher = RowHasher(SPEC, tolerances)
    expected = BucketChecksums(ranges.buckets)
    for row in side():
        expected.add_hash(ranges.bucket(row), hasher.row_hash(row))
    assert span == (1, ROWS)
    assert side.range_checksums(SPEC, ranges, tolerances) == expected
    assert expected.rows == ROWS


def test_equal_tables_have_no_differences(tables) -> None:
    _dsn, side, copy = tables
    result = validate_table(SPEC, side, copy)
    assert (result.ok, result.rows_source, result.rows_target) == (True, ROWS, ROWS)
    assert result.buckets == RANGE_BUCKETS
    assert result.differences == [] and result.mismatched_buckets == []


def test_one_changed_row_names_that_key_and_field_only(tables) -> None:
    dsn, side, copy = tables
    run(dsn, "UPDATE people_copy SET amount = 1.5 WHERE id = 2024")
    result = validate_table(SPEC, side, copy)
    assert (result.buckets, result.missing, result.extra, result.changed) == (RANGE_BUCKETS, 0, 0, 1)
    assert result.mismatched_buckets == [(2024 - 1) // 12]
    [difference] = result.differences
    assert difference.key == {"id": 2024}
    assert [(f.field, f.source_value, f.target_value) for f in difference.fields] == [
        ("amount", Decimal("289.143"), Decimal("1.500"))
    ]


def test_missing_and_extra_keys_inside_and_outside_the_source_span(tables) -> None:
    dsn, side, copy = tables
    run(dsn, "DELETE FROM people_copy WHERE id = 17")
    run(dsn, "INSERT INTO people_copy SELECT id + 5000, amount FROM people_copy WHERE id = 1")
    run(dsn, "INSERT INTO people_copy SELECT -id, amount FROM people_copy WHERE id = 3")
    result = validate_table(SPEC, side, copy)
    assert (result.rows_source, result.rows_target, result.missing, result.extra, result.changed) == (
        ROWS, ROWS + 1, 1, 2, 0,
    )
    assert sorted((d.kind, d.key["id"]) for d in result.differences) == [
        ("extra", -3), ("extra", 5001), ("missing", 17),
    ]


def test_other_column_types_are_still_compared_by_canonical_value(tables) -> None:
    """int4 key, unconstrained numeric, varchar: still key ranges, and 289.1430 equals 289.143."""
    dsn, side, _copy = tables
    run(dsn, "CREATE TABLE people_wide (LIKE people INCLUDING ALL)")
    run(dsn, "ALTER TABLE people_wide ALTER id TYPE int4, ALTER amount TYPE numeric,"
             " ALTER name TYPE varchar(100)")
    run(dsn, "INSERT INTO people_wide SELECT * FROM people")
    run(dsn, "UPDATE people_wide SET amount = amount::numeric(14,4)")
    wide = PostgresTableSide(dsn, "people_wide")
    assert validate_table(SPEC, side, wide).ok
    run(dsn, "UPDATE people_wide SET name = 'x' WHERE id = 99")
    result = validate_table(SPEC, side, wide)
    assert (result.buckets, result.changed, [d.key for d in result.differences]) == (
        RANGE_BUCKETS, 1, [{"id": 99}],
    )
    assert [f.field for f in result.differences[0].fields] == ["name"]


@pytest.mark.parametrize(
    "change",
    [
        "ALTER TABLE people_copy ALTER id TYPE numeric",  # not an integer key
        "ALTER TABLE people_copy DROP CONSTRAINT people_copy_pkey, ALTER id DROP NOT NULL",  # nullable
    ],
)
def test_a_side_without_an_integer_not_null_key_falls_back_to_hash_buckets(tables, change: str) -> None:
    dsn, side, copy = tables
    run(dsn, change)
    run(dsn, "UPDATE people_copy SET active = NOT active WHERE id = 777")
    assert copy.key_span(SPEC, Tolerances()) is None
    result = validate_table(SPEC, side, copy)
    assert (result.buckets, result.changed, [d.key for d in result.differences]) == (256, 1, [{"id": 777}])
    assert [f.field for f in result.differences[0].fields] == ["active"]


def test_a_postgresql_side_against_python_rows_uses_hash_buckets(tables) -> None:
    _dsn, side, _copy = tables
    rows = list(side())
    rows[41] = {**rows[41], "code": "zz"}
    del rows[7]
    result = validate_table(SPEC, side, lambda: rows)
    assert (result.buckets, result.missing, result.changed) == (256, 1, 1)
    assert sorted((d.kind, d.key["id"]) for d in result.differences) == [("changed", 42), ("missing", 8)]


def test_an_empty_side_makes_every_row_missing_and_two_empty_sides_are_equal(tables) -> None:
    dsn, side, copy = tables
    run(dsn, "DELETE FROM people WHERE id > 2")
    run(dsn, "DELETE FROM people_copy")
    result = validate_table(SPEC, side, copy)
    assert (result.rows_source, result.rows_target, result.missing, result.buckets) == (2, 0, 2, 2)
    assert sorted(d.key["id"] for d in result.differences) == [1, 2]
    run(dsn, "DELETE FROM people")
    result = validate_table(SPEC, side, copy)
    assert (result.ok, result.rows_source, result.rows_target, result.buckets) == (True, 0, 0, 1)


def test_mismatched_ranges_beyond_max_rows_held_are_read_in_rounds(tables) -> None:
    dsn, side, copy = tables
    run(dsn, "UPDATE people_copy SET born = born + 1 WHERE id IN (100, 1500, 2900)")
    result = validate_table(SPEC, side, copy, max_rows_held=30)  # 24 rows per range, both sides
    assert (result.changed, result.unresolved_buckets) == (3, 0)
    assert sorted((d.key["id"], d.fields[0].field) for d in result.differences) == [
        (100, "born"), (1500, "born"), (2900, "born"),
    ]
