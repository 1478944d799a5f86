"""Two PostgreSQL sides hash rows with PostgreSQL's own hash functions (etl/checksum/native.py):
they find exactly what the canonical hashes find, including differences a linear or
collation-aware hash would miss, and fall back to the canonical hashes when they cannot agree."""

from __future__ import annotations

import json
import random
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from etl.checksum import Tolerances, validate_table
from etl.checksum.canonical import encode
from etl.checksum.keyranges import KeyRanges
from etl.checksum.native import NativePlan
from etl.checksum.postgres_sql import PostgresTableSide
from etl.records import Column, TableSpec
from tests.integration.test_checksum_postgres import COLUMNS, FILL, SPEC

pytestmark = pytest.mark.integration

ROWS = 3000


def run(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture
def tables(pg_database: str) -> tuple[str, PostgresTableSide, PostgresTableSide]:
    """`people` and `people_copy` (COLUMNS of test_checksum_postgres: every native class, a float
    and a char(n) among them), equal."""
    run(pg_database, "CREATE TABLE people ({})".format(", ".join(f"{n} {t}" for n, t, _ in COLUMNS)), FILL,
        "CREATE TABLE people_copy (LIKE people INCLUDING ALL)",
        "INSERT INTO people_copy SELECT * FROM people")
    return (pg_database, PostgresTableSide(pg_database, "people"),
            PostgresTableSide(pg_database, "people_copy"))


def keys_of(result) -> list[tuple[str, int]]:
    return sorted((d.kind, d.key["id"]) for d in result.differences)


def test_both_sides_agree_on_native_hashes_of_every_native_class(tables) -> None:
    _dsn, side, copy = tables
    exact = Tolerances()
    plan = NativePlan.agree((side.native_hashing(SPEC, exact), copy.native_hashing(SPEC, exact)))
    assert plan is not None
    # float8 and char(6) are hashed through their canonical encoding (see _NATIVE_CLASSES)
    assert plan.native == {name for name, _, _ in COLUMNS} - {"ratio", "code"}
    result = validate_table(SPEC, side, copy)
    assert (result.ok, result.rows_source, result.rows_target) == (True, ROWS, ROWS)
    assert result.row_hashes == "native"


def test_values_swapped_between_two_rows_of_one_range_are_found(tables) -> None:
    """hash_record_extended sums the columns' hashes linearly; without the outer hash a bucket's
    sum would see only each column's values, and this swap would cancel out."""
    dsn, side, copy = tables
    run(dsn, "UPDATE people_copy SET amount = CASE id"
             " WHEN 101 THEN (SELECT amount FROM people WHERE id = 102)"
             " ELSE (SELECT amount FROM people WHERE id = 101) END WHERE id IN (101, 102)")
    exact = Tolerances()
    plan = NativePlan.agree((side.native_hashing(SPEC, exact), copy.native_hashing(SPEC, exact)))
    ranges = KeyRanges.spanning("id", [(1, ROWS)], 256)
    bucket = ranges.bucket({"id": 101})
    assert bucket == ranges.bucket({"id": 102})
    before, after = (s.range_checksums(SPEC, ranges, exact, native=plan) for s in (side, copy))
    # the low 64 bits of a range's sum are a plain sum of the rows' low hashes, carries aside
    assert (before.sums[bucket] - after.sums[bucket]) % 2**64 != 0
    result = validate_table(SPEC, side, copy)
    assert result.row_hashes == "native"
    assert keys_of(result) == [("changed", 101), ("changed", 102)]
    assert [f.field for d in result.differences for f in d.fields] == ["amount", "amount"]


def test_case_under_a_nondeterministic_collation_is_a_difference(tables) -> None:
    dsn, side, copy = tables
    run(dsn, "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
        'ALTER TABLE people ALTER name TYPE text COLLATE ci',
        'ALTER TABLE people_copy ALTER name TYPE text COLLATE ci',
        "UPDATE people SET name = 'cafe' WHERE id = 7", "UPDATE people_copy SET name = 'CAFE' WHERE id = 7")
    with psycopg.connect(dsn) as conn:  # equal under the column's collation
        assert conn.execute("SELECT a.name = b.name FROM people a JOIN people_copy b USING (id)"
                            " WHERE id = 7").fetchone() == (True,)
    result = validate_table(SPEC, side, copy)
    assert result.row_hashes == "native"
    assert keys_of(result) == [("changed", 7)]


@pytest.mark.parametrize("change, key", [
    ("UPDATE people_copy SET ratio = '0'::float8 WHERE id = 6", 6),  # was -0: the canonical floats differ
    ("UPDATE people_copy SET amount = amount + 0.001 WHERE id = 9", 9),
    ("UPDATE people_copy SET seen_at = seen_at + interval '1 microsecond' WHERE id = 11", 11),
    ("UPDATE people_copy SET name = name || ' ' WHERE id = 12", 12),
    ("UPDATE people_copy SET blob = blob || '\\x00'::bytea WHERE id = 13", 13),
])
def test_one_change_of_each_kind_is_found(tables, change: str, key: int) -> None:
    dsn, side, copy = tables
    run(dsn, change)
    result = validate_table(SPEC, side, copy)
    assert (result.row_hashes, keys_of(result)) == ("native", [("changed", key)])


def test_types_of_one_class_compare_by_value_and_other_types_by_canonical_encoding(tables) -> None:
    """int4 against int8, varchar against text, unconstrained numeric against numeric(12,3) are
    one class each; char(8) against char(6) is not (a client sees other blanks): a difference."""
    dsn, side, copy = tables
    run(dsn, "ALTER TABLE people_copy ALTER id TYPE int4, ALTER name TYPE varchar(100),"
             " ALTER amount TYPE numeric")
    result = validate_table(SPEC, side, copy)
    assert (result.ok, result.row_hashes, result.rows_target) == (True, "native", ROWS)
    run(dsn, "ALTER TABLE people_copy ALTER code TYPE char(8)")
    result = validate_table(SPEC, side, PostgresTableSide(dsn, "people_copy"))  # a side caches the catalog
    assert result.row_hashes == "native"
    assert (result.changed, result.rows_target) == (ROWS, ROWS)


def test_a_tolerance_hashes_its_columns_canonically_and_still_applies(tables) -> None:
    dsn, side, copy = tables
    run(dsn, "UPDATE people_copy SET seen_at = seen_at + interval '100 microseconds' WHERE id = 20")
    tolerances = Tolerances(timestamp_precision=3)
    plan = NativePlan.agree((side.native_hashing(SPEC, tolerances), copy.native_hashing(SPEC, tolerances)))
    assert plan is not None and not {"seen_at", "local_at", "at_time"} & plan.native
    result = validate_table(SPEC, side, copy, tolerances=tolerances)
    assert (result.ok, result.row_hashes) == (True, "native")


def test_servers_whose_probes_differ_use_the_canonical_hashes(tables, monkeypatch) -> None:
    dsn, side, copy = tables
    monkeypatch.setattr(copy, "_native_probe", lambda: "another implementation")
    run(dsn, "UPDATE people_copy SET name = 'x' WHERE id = 30")
    result = validate_table(SPEC, side, copy)
    assert (result.row_hashes, keys_of(result)) == ("canonical", [("changed", 30)])


DOC_SPEC = TableSpec("pg", "docs", ("id",), (Column("id", "int"), Column("doc", "json")))


def random_document(rng: random.Random, depth: int = 0) -> object:
    kind = rng.choice(["map", "list", "number", "string", "bool", "null"] if depth < 3 else
                      ["number", "string", "bool", "null"])
    if kind == "map":
        return {rng.choice("abcdé") + str(rng.randrange(5)): random_document(rng, depth + 1)
                for _ in range(rng.randrange(4))}
    if kind == "list":
        return [random_document(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == "number":
        return Decimal(rng.randrange(-10**6, 10**6)).scaleb(-rng.randrange(0, 8))
    if kind == "string":
        return rng.choice(["", "a", "A", "é", "e\u0301", "x y", "1"])
    return rng.choice([True, False]) if kind == "bool" else None


def text_of(document: object, rng: random.Random) -> str:
    """JSON text of `document` with numbers in another notation now and then (1.50, 15E-1)."""
    if isinstance(document, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {text_of(v, rng)}" for k, v in document.items()) + "}"
    if isinstance(document, list):
        return "[" + ", ".join(text_of(v, rng) for v in document) + "]"
    if isinstance(document, Decimal):
        text = str(document)
        return rng.choice([text, f"{document:E}", text + ("0" if "." in text else ".0")])
    return json.dumps(document)


def test_jsonb_texts_never_call_documents_equal_that_the_canonical_comparison_tells_apart(
        pg_database: str) -> None:
    """Property: for random documents and their variants (another number notation, a changed
    member), equal jsonb texts (what the native hash hashes) mean equal canonical encodings (numbers
    exact, as the sides read them), and unequal encodings mean unequal texts. jsonb's own hash would
    fail this: it is blind to nesting."""
    rng = random.Random(24)
    pairs = []
    for _ in range(400):
        document = random_document(rng)
        other = document if rng.random() < 0.5 else random_document(rng)
        pairs.append((text_of(document, rng), text_of(other, rng)))
    pairs.append(("false", "[false]"))
    with psycopg.connect(pg_database) as conn:
        found = conn.execute(
            "SELECT a::jsonb::text = b::jsonb::text, hash_record_extended(ROW(a::jsonb), 0)"
            " = hash_record_extended(ROW(b::jsonb), 0) FROM unnest(%s::text[], %s::text[]) AS p(a, b)",
            ([a for a, _ in pairs], [b for _, b in pairs]),
        ).fetchall()
    canonical = [encode(json.loads(a, parse_float=Decimal)) == encode(json.loads(b, parse_float=Decimal))
                 for a, b in pairs]
    texts = [same_text for same_text, _ in found]
    assert [t for t, c in zip(texts, canonical, strict=True) if t and not c] == []
    scale_only = sum(c and not t for t, c in zip(texts, canonical, strict=True))
    assert 150 < sum(canonical) < 350 and scale_only > 10  # both outcomes, and notation-only variants
    assert found[-1] == (False, True)  # `false` and `[false]`: jsonb's own hash calls them equal


DOCS = ("CREATE TABLE docs (id int8 PRIMARY KEY, doc jsonb)",
        "INSERT INTO docs SELECT i, jsonb_build_object('n', i / 4.0, 'tags', jsonb_build_array('a', i))"
        " FROM generate_series(1, 500) AS i",
        "CREATE TABLE docs_copy (LIKE docs INCLUDING ALL)", "INSERT INTO docs_copy SELECT * FROM docs")


def test_a_jsonb_table_is_hashed_natively_and_finds_a_change_deep_inside(pg_database: str) -> None:
    run(pg_database, *DOCS, "UPDATE docs_copy SET doc = jsonb_set(doc, '{tags,1}', '\"43\"') WHERE id = 43")
    side, copy = PostgresTableSide(pg_database, "docs"), PostgresTableSide(pg_database, "docs_copy")
    assert side.pushes_down(DOC_SPEC, Tolerances()) and side._codes(DOC_SPEC, Tolerances()) is None
    result = validate_table(DOC_SPEC, side, copy)
    assert (result.row_hashes, keys_of(result)) == ("native", [("changed", 43)])
    [(field, source_value, target_value)] = [(f.field, f.source_value, f.target_value)
                                             for f in result.differences[0].fields]
    assert (field, source_value["tags"], target_value["tags"]) == ("doc", ["a", 43], ["a", "43"])


def test_each_row_is_built_once_and_hashed_once_per_seed(pg_database: str) -> None:
    """The plan of a native checksum query: the scan builds each row (its jsonb text once), a
    subquery scan hashes it with seeds 0 and 1, and the aggregate only reads those hashes; a
    query flattened into the aggregate hashes `low` a second time for its FILTER."""
    run(pg_database, *DOCS)
    side = PostgresTableSide(pg_database, "docs")
    plan = NativePlan.agree((side.native_hashing(DOC_SPEC, Tolerances()),) * 2)
    assert plan is not None
    query = side.native_checksum_query(DOC_SPEC, Tolerances(), plan, sql.SQL("id % 7"))
    with psycopg.connect(pg_database) as conn:
        [[[explained]]] = conn.execute(sql.SQL("EXPLAIN (VERBOSE, FORMAT JSON) {}").format(query)).fetchall()
    aggregate = explained["Plan"]
    [hashing] = aggregate["Plans"]
    [scan] = hashing["Plans"]
    assert (aggregate["Node Type"], hashing["Node Type"], scan["Node Type"]) == (
        "Aggregate", "Subquery Scan", "Seq Scan")
    assert sum(out.count("hash_record_extended(") for out in hashing["Output"]) == 2
    assert sum(out.count("(docs.doc)::text") for out in scan["Output"]) == 1


def test_a_number_written_with_another_scale_is_settled_by_the_canonical_hashes(pg_database: str) -> None:
    run(pg_database, *DOCS, "UPDATE docs_copy SET doc = jsonb_set(doc, '{n}', '10.2500') WHERE id = 41")
    side, copy = PostgresTableSide(pg_database, "docs"), PostgresTableSide(pg_database, "docs_copy")
    result = validate_table(DOC_SPEC, side, copy)  # 41 / 4.0 is 10.25: the same number
    assert (result.ok, result.row_hashes, result.rows_target) == (True, "canonical", 500)


ORDERS = ("CREATE TABLE orders (region text, no int4, amount numeric(10,2), note text,"
          " PRIMARY KEY (region, no))",
          "INSERT INTO orders SELECT (ARRAY['north', 'south', 'é-east'])[1 + i % 3], i, i / 8.0, 'n' || i"
          " FROM generate_series(1, 2000) AS i",
          "CREATE TABLE orders_copy (LIKE orders INCLUDING ALL)",
          "INSERT INTO orders_copy SELECT * FROM orders",
          "UPDATE orders_copy SET note = 'changed' WHERE no = 500",
          "DELETE FROM orders_copy WHERE no = 700",
          "INSERT INTO orders_copy VALUES ('west', 9000, 1.00, 'extra')")


@pytest.mark.parametrize("key", [("region", "no"), ("note",)], ids=["composite", "text"])
def test_text_and_composite_keys_use_native_hash_buckets_and_find_every_difference(
        pg_database: str, key: tuple[str, ...]) -> None:
    run(pg_database, *ORDERS)
    spec = TableSpec("pg", "orders", key, (Column("region", "string"), Column("no", "int"),
                                           Column("amount", "decimal(10,2)"), Column("note", "string")))
    side, copy = PostgresTableSide(pg_database, "orders"), PostgresTableSide(pg_database, "orders_copy")
    result = validate_table(spec, side, copy, buckets=64)
    assert (result.row_hashes, result.rows_source, result.rows_target) == ("native", 2000, 2000)
    found = sorted((d.kind, tuple(d.key.values())) for d in result.differences)
    if key == ("note",):  # a changed key is a missing and an extra row
        assert found == [("extra", ("changed",)), ("extra", ("extra",)), ("missing", ("n500",)),
                         ("missing", ("n700",))]
    else:
        assert found == [("changed", ("é-east", 500)), ("extra", ("west", 9000)), ("missing", ("south", 700))]
    canonical = validate_table(spec, side, copy, buckets=64, native_hashes=False)
    assert canonical.row_hashes == "canonical"
    assert sorted((d.kind, tuple(d.key.values())) for d in canonical.differences) == found
