"""PostgreSQL pushdown: SQL-computed bucket checksums equal the Python path's, and validation of
two PostgreSQL tables finds exactly the row that differs."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from etl.checksum import BucketChecksums, Tolerances, validate_table
from etl.checksum.postgres_sql import PostgresTableSide
from etl.records import Column, TableSpec

pytestmark = pytest.mark.integration

COLUMNS = [
    ("id", "int8 PRIMARY KEY", "int"),
    ("amount", "numeric(12,3)", "decimal(12,3)"),
    ("ratio", "float8", "float"),
    ("name", "text", "string"),
    ("code", "char(6)", "string"),
    ("active", "bool", "bool"),
    ("born", "date", "date"),
    ("seen_at", "timestamptz", "timestamptz(6)"),
    ("local_at", "timestamp", "timestamp(6)"),
    ("at_time", "time", "time"),
    ("ref", "uuid", "uuid"),
    ("blob", "bytea", "bytes"),
]
SPEC = TableSpec("pg", "people", ("id",), tuple(Column(name, kind) for name, _, kind in COLUMNS))
FILL = """
INSERT INTO people
SELECT i, i / 7.0, CASE WHEN i = 5 THEN 'NaN'::float8 WHEN i = 6 THEN '-0'::float8 ELSE i / 3.0 END,
       CASE WHEN i % 10 = 0 THEN NULL ELSE 'Stra' || chr(223) || 'e cafe' || chr(769) || ' ' || i || '  ' END,
       'ab', i % 2 = 0, date '1950-01-01' + i,
       timestamptz '2020-01-01 00:00:00.123456+00' + i * interval '1.000001 s',
       timestamp '1960-01-01 00:00:00.5' - i * interval '1.000003 s', time '10:00:00.25' + i * interval '1 s',
       md5(i::text)::uuid, decode(lpad(to_hex(i), 8, '0'), 'hex')
FROM generate_series(1, 3000) AS i
"""


@pytest.fixture
def side(pg_database: str) -> PostgresTableSide:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE people ({})".format(", ".join(f"{n} {t}" for n, t, _ in COLUMNS)))
        conn.execute(FILL)
    return PostgresTableSide(pg_database, "people")


@pytest.mark.parametrize(
    "tolerances",
    [
        Tolerances(),
        Tolerances(timestamp_precision=3, unicode_nfc=True, rstrip_char=True),
        Tolerances(timestamp_precision=0),
    ],
)
def test_sql_checksums_equal_the_python_path(side: PostgresTableSide, tolerances: Tolerances) -> None:
    pushed = side.bucket_checksums(SPEC, 128, tolerances)
    python = BucketChecksums.for_table(SPEC, buckets=128, tolerances=tolerances).add_all(side())
    assert pushed is not None
    assert pushed.rows == python.rows == 3000
    assert pushed.mismatched(python) == []
    assert pushed == python


def test_case_insensitive_keys_and_unsupported_types_fall_back_to_python(side: PostgresTableSide) -> None:
    assert side.bucket_checksums(SPEC, 16, Tolerances(case_insensitive_keys=True)) is None
    as_json = TableSpec("pg", "people", ("id",), (Column("id", "int"), Column("ratio", "json")))
    assert side.bucket_checksums(as_json, 16, Tolerances()) is None
    result = validate_table(as_json, side, side, buckets=16)
    assert result.ok and result.rows_source == 3000


def test_two_tables_differing_in_one_field_name_that_key_and_field(
    side: PostgresTableSide, pg_database
) -> None:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE people_copy AS SELECT * FROM people")
        conn.execute("UPDATE people_copy SET amount = 1.5 WHERE id = 2024")
    copy = PostgresTableSide(pg_database, "people_copy")
    result = validate_table(SPEC, side, copy)
    assert (result.rows_source, result.rows_target, result.missing, result.extra, result.changed) == (
        3000,
        3000,
        0,
        0,
        1,
    )
    [difference] = result.differences
    assert difference.key == {"id": 2024}
    assert [(f.field, f.source_value, f.target_value) for f in difference.fields] == [
        ("amount", Decimal("289.143"), Decimal("1.500"))
    ]
