"""The canonical encoding of a jsonb value computed in PostgreSQL (`JSONB_FUNCTION`) equals the Python
encoding of the value the PostgreSQL sink reads back from that column, for any JSON the sink can
write: maps (keys of any length and script, sorted by their encoding), lists, strings, booleans,
null, integers of any size, decimals across the fixed/scientific boundary (1E1000), and the
`$binary` tags of bytes. A property test, so the two encodings are held equal, not sampled."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.checksum.canonical import encode
from etl.checksum.postgres_sql import JSONB_FUNCTION, JSONB_FUNCTION_SQL
from etl.sinks import jsontext

pytestmark = pytest.mark.integration

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
        lambda d: abs(d.adjusted()) < 16000),
    st.builds(lambda digits, exponent, sign: Decimal(f"{sign}{digits}E{exponent}"),
              st.integers(min_value=0, max_value=10**12), st.integers(min_value=-1010, max_value=1010),
              st.sampled_from(["", "-"])),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, st.binary(max_size=10))
JSON = st.recursive(SCALARS, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)), max_leaves=12)


@pytest.fixture
def connection(pg_database):
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(JSONB_FUNCTION_SQL)
        yield conn


def both(conn: psycopg.Connection, value) -> tuple[bytes, bytes]:
    """(SQL encoding, Python encoding of what the sink reads back) of `value` stored in jsonb."""
    text, encoded = conn.execute(f"SELECT v::text, {JSONB_FUNCTION}(v) FROM (SELECT %s::jsonb AS v) AS s",
                                 (jsontext.dumps(value),)).fetchone()
    return bytes(encoded), encode(jsontext.loads(text, binary=True), "json")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(JSON)
def test_sql_and_python_encode_every_jsonb_value_alike(connection, value):
    sql_bytes, python_bytes = both(connection, value)
    assert sql_bytes == python_bytes


@pytest.mark.parametrize("value", [
    {"b": 1, "a": 2, "aa": 3, "é": 4, "z" * 40: 5},
    [Decimal("1.50"), Decimal("-0.0"), 0, Decimal("1E+1000"), Decimal("1E+1001"), Decimal("-12.5E+1001"),
     Decimal("1E-1000"), Decimal("1E-1001"), Decimal("123000E+1000"), 10**40],
    {"$binary": {"base64": "AAE=", "subType": "00"}},
    {"$binary": {"base64": "AAE", "subType": "00"}},  # not valid base64: a map, on both sides
    {"$binary": {"base64": "AAE=", "subType": "01"}, "x": None},
    [None, True, False, "", {}, []],
])
def test_edges(connection, value):
    sql_bytes, python_bytes = both(connection, value)
    assert sql_bytes == python_bytes


def test_a_side_hashing_jsonb_in_sql_gives_the_python_checksums(pg_database):
    """`PostgresTableSide(hash_jsonb=True)`: the bucket checksums from SQL equal those of the same
    rows read back the sink's way and hashed in Python."""
    from psycopg.types.json import set_json_loads

    from etl.checksum import BucketChecksums
    from etl.checksum.postgres_sql import PostgresTableSide
    from etl.records import Column, TableSpec

    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id int8 PRIMARY KEY, doc jsonb)")
        conn.execute("INSERT INTO docs SELECT i, jsonb_build_object('n', i / 7.0, 'k',"
                     " jsonb_build_array(i, 'x', null, i % 2 = 0), 'big', 1e1005 * i)"
                     " FROM generate_series(1, 500) i")
        conn.execute("INSERT INTO docs VALUES (0, NULL), (-1, 'null'),"
                     " (-2, '{\"$binary\": {\"base64\": \"AAE=\", \"subType\": \"00\"}}')")

    def connect():
        conn = psycopg.connect(pg_database)
        set_json_loads(lambda text: jsontext.loads(text, binary=True), context=conn)
        return conn

    spec = TableSpec("pg", "docs", ("id",), (Column("id", "int"), Column("doc", "json")))
    side = PostgresTableSide(pg_database, "docs", connect=connect, hash_jsonb=True)
    assert side.pushes_down(spec, _tolerances())
    pushed = side.bucket_checksums(spec, 64, _tolerances())
    python = BucketChecksums.for_table(spec, buckets=64, tolerances=_tolerances()).add_all(side())
    assert (pushed.counts, pushed.sums) == (python.counts, python.sums) and pushed.rows == 503
    plain = PostgresTableSide(pg_database, "docs", connect=connect)
    assert plain.bucket_checksums(spec, 64, _tolerances()) is None  # canonically in SQL only with hash_jsonb


def _tolerances():
    from etl.checksum.tolerances import Tolerances

    return Tolerances()
