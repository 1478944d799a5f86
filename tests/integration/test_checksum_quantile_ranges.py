"""Text and composite keys by key ranges cut at quantiles of a sample (etl/checksum/keyranges.py):
PostgreSQL and Python put every row in the same range whatever the columns' collations, pass 2
reads only the mismatched ranges, and the differences are exactly those the canonical hash
buckets find. A leading column of few values keeps the hash buckets."""

from __future__ import annotations

import psycopg
import pytest

from etl.checksum import Tolerances, validate_table
from etl.checksum.keyranges import name_prefix
from etl.checksum.postgres_sql import PostgresTableSide
from etl.records import Column, TableSpec

pytestmark = pytest.mark.integration


def run(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The pass-2 reads validation makes, in order: "ranges" or "buckets"."""
    made: list[str] = []
    by_ranges, by_buckets = PostgresTableSide.rows_in_ranges, PostgresTableSide.rows_in_buckets

    def rows_in_ranges(self, *args, **options):
        made.append("ranges")
        return by_ranges(self, *args, **options)

    def rows_in_buckets(self, *args, **options):
        made.append("buckets")
        return by_buckets(self, *args, **options)

    monkeypatch.setattr(PostgresTableSide, "rows_in_ranges", rows_in_ranges)
    monkeypatch.setattr(PostgresTableSide, "rows_in_buckets", rows_in_buckets)
    return made


def differences(result) -> list[tuple[str, tuple]]:
    return sorted((d.kind, tuple(d.key.values())) for d in result.differences)


# Keys of mixed case and beyond ASCII, so that ICU's order ('a' < 'B' < 'é' < 'Z') is not the code
# point order ('B' < 'Z' < 'a' < 'é'): the source column sorts by ICU, the copy's by bytes.
TEXT_KEYS = (
    'CREATE TABLE visits (code text COLLATE "und-x-icu" PRIMARY KEY, amount numeric(10,2), note text)',
    "INSERT INTO visits SELECT (ARRAY['a', 'B', 'é', 'Z', 'ß', '\U0001f600'])[1 + i % 6]"
    " || lpad(i::text, 5, '0'), i / 8.0, 'n' || i FROM generate_series(1, 3000) AS i",
    # keys longer than a `name` (63 bytes), cut inside a two-byte character: one range holds them all
    "INSERT INTO visits SELECT 'LL' || repeat('é', 40) || i, i, 'long' FROM generate_series(1, 20) AS i",
    'CREATE TABLE visits_copy (code text COLLATE "C" PRIMARY KEY, amount numeric(10,2), note text)',
    "INSERT INTO visits_copy SELECT * FROM visits",
    "UPDATE visits_copy SET note = 'changed' WHERE code = 'é00500'",
    "UPDATE visits_copy SET amount = 0 WHERE code = 'LL' || repeat('é', 40) || '7'",
    "DELETE FROM visits_copy WHERE code = 'ß00700'",
    "INSERT INTO visits_copy VALUES ('a99999', 1.00, 'extra'), ('Z', 2.00, 'extra')",
)
TEXT_SPEC = TableSpec("pg", "visits", ("code",), (Column("code", "string"), Column("amount", "decimal(10,2)"),
                                                  Column("note", "string")))


def test_a_text_key_is_cut_at_quantiles_in_code_point_order(pg_database: str, reads: list[str]) -> None:
    run(pg_database, *TEXT_KEYS)
    side, copy = PostgresTableSide(pg_database, "visits"), PostgresTableSide(pg_database, "visits_copy")
    ranges = side.key_quantiles(TEXT_SPEC, Tolerances(), 64)
    assert ranges is not None and (ranges.kind, ranges.buckets) == ("text", 64)
    assert list(ranges.thresholds) == sorted(ranges.thresholds)  # Python's order is the sample's order

    result = validate_table(TEXT_SPEC, side, copy, buckets=64)
    counts = (result.rows_source, result.rows_target, result.buckets)
    assert (result.row_hashes, counts) == ("native", (3020, 3021, 64))
    assert reads == ["ranges", "ranges"]
    long_key = "LL" + "é" * 40 + "7"
    expected = [("changed", (long_key,)), ("changed", ("é00500",)), ("extra", ("Z",)), ("extra", ("a99999",)),
                ("missing", ("ß00700",))]
    assert differences(result) == expected
    canonical = validate_table(TEXT_SPEC, side, copy, buckets=64, native_hashes=False)
    assert (canonical.row_hashes, differences(canonical)) == ("canonical", expected)
    assert reads[2:] == ["buckets", "buckets"]  # the canonical hash buckets, for the comparison


def test_equal_tables_with_a_text_key_are_equal_by_ranges(pg_database: str, reads: list[str]) -> None:
    run(pg_database, *TEXT_KEYS[:5])
    side, copy = PostgresTableSide(pg_database, "visits"), PostgresTableSide(pg_database, "visits_copy")
    result = validate_table(TEXT_SPEC, side, copy, buckets=64)
    assert (result.ok, result.rows_source, result.rows_target, result.mismatched_buckets) == (
        True, 3020, 3020, [])
    assert reads == []  # nothing to drill into


LINES = (
    "CREATE TABLE lines (customer {leading} NOT NULL, line int4 NOT NULL, amount numeric(10,2),"
    " PRIMARY KEY (customer, line))",
    "INSERT INTO lines SELECT {value}, i % 4, i / 8.0 FROM generate_series(0, 3999) AS i",
    "CREATE TABLE lines_copy (LIKE lines INCLUDING ALL)",
    "INSERT INTO lines_copy SELECT * FROM lines",
    "UPDATE lines_copy SET amount = amount + 0.01 WHERE customer = {c500} AND line = 1",
    "DELETE FROM lines_copy WHERE customer = {c700} AND line = 2",
    "INSERT INTO lines_copy VALUES ({c2000}, 0, 1.00)",
)


@pytest.mark.parametrize("leading", ["int8", "text"])
def test_a_composite_key_is_cut_at_quantiles_of_its_leading_column(
        pg_database: str, reads: list[str], leading: str) -> None:
    def customer(number: int) -> str:
        return str(number) if leading == "int8" else f"'c{number:04d}'"

    value = "i / 4" if leading == "int8" else "'c' || lpad((i / 4)::text, 4, '0')"
    run(pg_database, *(statement.format(leading=leading, value=value, c500=customer(500), c700=customer(700),
                                        c2000=customer(2000)) for statement in LINES))
    spec = TableSpec("pg", "lines", ("customer", "line"), (
        Column("customer", "int" if leading == "int8" else "string"), Column("line", "int"),
        Column("amount", "decimal(10,2)")))
    side, copy = PostgresTableSide(pg_database, "lines"), PostgresTableSide(pg_database, "lines_copy")
    result = validate_table(spec, side, copy, buckets=64)
    counts = (result.rows_source, result.rows_target, result.buckets)
    assert (result.row_hashes, counts) == ("native", (4000, 4000, 64))
    assert reads == ["ranges", "ranges"]

    def key(number: int, line: int) -> tuple:
        return (number if leading == "int8" else f"c{number:04d}", line)

    expected = [("changed", key(500, 1)), ("extra", key(2000, 0)), ("missing", key(700, 2))]
    assert differences(result) == expected
    assert differences(validate_table(spec, side, copy, buckets=64, native_hashes=False)) == expected


def test_a_leading_column_of_few_values_keeps_the_hash_buckets(pg_database: str, reads: list[str]) -> None:
    run(pg_database, "CREATE TABLE orders (region text, no int4, note text, PRIMARY KEY (region, no))",
        "INSERT INTO orders SELECT (ARRAY['north', 'south', 'west'])[1 + i % 3], i, 'n' || i"
        " FROM generate_series(1, 2000) AS i",
        "CREATE TABLE orders_copy (LIKE orders INCLUDING ALL)",
        "INSERT INTO orders_copy SELECT * FROM orders",
        "UPDATE orders_copy SET note = 'changed' WHERE no = 500")
    spec = TableSpec("pg", "orders", ("region", "no"), (Column("region", "string"), Column("no", "int"),
                                                         Column("note", "string")))
    side, copy = PostgresTableSide(pg_database, "orders"), PostgresTableSide(pg_database, "orders_copy")
    assert side.key_quantiles(spec, Tolerances(), 64) is None
    result = validate_table(spec, side, copy, buckets=64)
    assert (differences(result), reads) == ([("changed", ("west", 500))], ["buckets", "buckets"])


def test_python_cuts_a_long_text_where_postgresql_cuts_it(pg_database: str) -> None:
    texts = ["LL" + "é" * 40, "L" + "é" * 40, "x" * 63, "x" * 64, "a" + "\U0001f600" * 20, "短" * 30, ""]
    with psycopg.connect(pg_database) as conn:
        cut = conn.execute("SELECT array_agg(t::name::text ORDER BY n) FROM unnest(%s::text[])"
                           " WITH ORDINALITY AS u(t, n)", (texts,)).fetchone()[0]
    assert cut == [name_prefix(text) for text in texts]
    assert [len(name_prefix(text).encode()) for text in texts] == [62, 63, 63, 63, 61, 63, 0]


def test_a_tolerance_that_changes_strings_keeps_the_hash_buckets(pg_database: str) -> None:
    run(pg_database, *TEXT_KEYS[:5])
    side = PostgresTableSide(pg_database, "visits")
    for tolerances in (Tolerances(unicode_nfc=True), Tolerances(rstrip_char=True),
                       Tolerances(case_insensitive_keys=True)):
        assert side.range_kind(TEXT_SPEC, tolerances) is None
        assert side.key_quantiles(TEXT_SPEC, tolerances, 64) is None
    assert side.range_kind(TEXT_SPEC, Tolerances()) == "text"


def test_a_sample_of_a_larger_table_and_a_partitioned_one_cut_the_same_way(
        pg_database: str, reads: list[str]) -> None:
    """A table of more pages than are sampled (SYSTEM below 100%), and a partitioned one (its
    pages are its partitions'): ranges, and exactly the planted differences."""
    wide = "repeat(md5(i::text), 30)"  # 960 bytes: about 8 rows per page, not compressed
    run(pg_database,
        "CREATE TABLE wide (code text PRIMARY KEY, filler text)",
        f"INSERT INTO wide SELECT 'w' || lpad(i::text, 5, '0'), {wide} FROM generate_series(1, 9000) AS i",
        "CREATE TABLE parted (code text NOT NULL, filler text) PARTITION BY RANGE (code)",
        "CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (MINVALUE) TO ('w04500')",
        "CREATE TABLE parted_high PARTITION OF parted FOR VALUES FROM ('w04500') TO (MAXVALUE)",
        "INSERT INTO parted SELECT * FROM wide",
        "UPDATE parted SET filler = 'changed' WHERE code = 'w01234'",
        "DELETE FROM parted WHERE code = 'w08000'")
    with psycopg.connect(pg_database) as conn:
        (pages,) = conn.execute(
            "SELECT pg_relation_size('wide') / current_setting('block_size')::int8").fetchone()
    assert pages > 1000  # more than key_quantiles samples
    spec = TableSpec("pg", "wide", ("code",), (Column("code", "string"), Column("filler", "string")))
    for source, target in (("wide", "parted"), ("parted", "wide")):
        reads.clear()
        side, other = PostgresTableSide(pg_database, source), PostgresTableSide(pg_database, target)
        assert side.key_quantiles(spec, Tolerances(), 16) is not None
        result = validate_table(spec, side, other, buckets=16)
        assert reads == ["ranges", "ranges"]
        changed, gone = ("changed", ("w01234",)), ("missing" if source == "wide" else "extra", ("w08000",))
        assert differences(result) == sorted([changed, gone])


def test_a_view_keeps_the_hash_buckets(pg_database: str, reads: list[str]) -> None:
    """A view's columns are never NOT NULL in the catalog (nor could it be sampled)."""
    run(pg_database, *TEXT_KEYS[:5], "CREATE VIEW visits_view AS SELECT * FROM visits",
        "UPDATE visits_copy SET note = 'changed' WHERE code = 'é00500'")
    side, copy = PostgresTableSide(pg_database, "visits_view"), PostgresTableSide(pg_database, "visits_copy")
    assert side.key_quantiles(TEXT_SPEC, Tolerances(), 64) is None
    result = validate_table(TEXT_SPEC, side, copy, buckets=64)
    assert (differences(result), reads) == ([("changed", ("é00500",))], ["buckets", "buckets"])
