"""The SQL the Oracle and SQL Server sources generate, run for real against Chinook in PostgreSQL.

No Oracle or SQL Server server can run here, so every statement the two sources issue (paging,
partition planning) is parsed by sqlglot in the source's own dialect — a statement sqlglot cannot
parse as Oracle/T-SQL fails the test — then transpiled to PostgreSQL and executed on the real
Chinook data. Catalog queries are the one part replaced: the table shapes come from PostgreSQL's
catalog, typed as the Chinook_Oracle.sql / Chinook_SqlServer.sql scripts declare them.
"""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
import sqlglot

from etl.errors import EtlError
from etl.sources import mssql, oracle
from etl.sources.base import BatchLimits
from etl.sources.postgres import Config as PostgresConfig
from etl.sources.postgres import PostgresSource
from etl.sources.sql import SqlColumn
from tests.integration.chinook import CHINOOK_COUNTS, load_chinook

pytestmark = pytest.mark.integration


class TranspilingCursor:
    """A DB-API cursor that accepts Oracle/T-SQL text, parses it with sqlglot and runs it on PostgreSQL."""

    def __init__(self, cursor: psycopg.Cursor, dialect: str, log: list[str], rewrite=None) -> None:
        self._cursor = cursor
        self._dialect = dialect
        self._log = log
        self._rewrite = rewrite
        self.arraysize = 100
        self.prefetchrows = 2

    def execute(self, sql: str, params=None, **driver_options) -> None:
        if self._rewrite is not None:  # engine-only clauses sqlglot cannot parse (see its caller)
            sql = self._rewrite(sql)
        tree = sqlglot.parse_one(sql, read=self._dialect)  # raises on SQL the dialect does not accept
        self._log.append(sql)
        self._cursor.execute(tree.sql(dialect="postgres"), params or None)

    def fetchmany(self, size: int) -> list[tuple]:
        return self._cursor.fetchmany(size)

    def fetchall(self) -> list[tuple]:
        return self._cursor.fetchall()

    def close(self) -> None:
        self._cursor.close()


class TranspilingConnection:
    def __init__(self, dsn: str, dialect: str, log: list[str], rewrite=None) -> None:
        self.raw = psycopg.connect(dsn, options="-c TimeZone=UTC")
        self._dialect = dialect
        self._log = log
        self._rewrite = rewrite

    def cursor(self) -> TranspilingCursor:
        return TranspilingCursor(self.raw.cursor(), self._dialect, self._log, self._rewrite)

    def commit(self) -> None:
        self.raw.commit()

    @property
    def autocommit(self) -> bool:
        return self.raw.autocommit

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        self.raw.autocommit = value

    def execute(self, sql: str) -> None:
        self.cursor().execute(sql)

    def close(self) -> None:
        self.raw.close()


ORACLE_TYPES = {
    # Chinook_Oracle.sql: ids are NUMBER (no precision), money NUMBER(10,2), dates DATE.
    "INT4": ("NUMBER", None, None),
    "NUMERIC": ("NUMBER", 10, 2),
    "VARCHAR": ("VARCHAR2", None, None),
    "TIMESTAMP": ("DATE", None, None),
}
MSSQL_TYPES = {
    # Chinook_SqlServer.sql: INT, NUMERIC(10,2), NVARCHAR(n), DATETIME.
    "INT4": ("INT", 10, 0),
    "NUMERIC": ("NUMERIC", 10, 2),
    "VARCHAR": ("NVARCHAR", None, None),
    "TIMESTAMP": ("DATETIME", 23, 3),
}


def on_postgres(source_class, types: dict, dialect: str, dsn: str, log: list[str], rewrite=None):
    """`source_class` with its connection transpiling to PostgreSQL and its catalog read from there;
    `rewrite(sql)` replaces clauses sqlglot cannot parse before the rest is parsed and run."""
    catalog = PostgresSource("catalog", PostgresConfig(type="postgres", dsn=dsn, tables={}), BatchLimits())

    def typed(found: list[SqlColumn]) -> list[SqlColumn]:
        columns = []
        for column in found:
            kind, precision, scale = types[column.type]
            columns.append(SqlColumn(column.name, kind, precision, scale, column.length, column.nullable))
        return columns

    class OnPostgres(source_class):
        def connect(self):
            return TranspilingConnection(dsn, dialect, log, rewrite)

        def find_tables(self, connection, schema, table):
            return catalog.find_tables(connection.raw, schema, table)

        def default_schema(self, connection):
            return "public"

        def columns(self, connection, schema, table):
            return typed(catalog.columns(connection.raw, schema, table))

        def query_columns(self, connection, query):
            return typed(catalog.query_columns(connection.raw, query))

        def primary_key(self, connection, schema, table):
            return catalog.primary_key(connection.raw, schema, table)

        def unique_keys(self, connection, schema, table):
            return catalog.unique_keys(connection.raw, schema, table)

    return OnPostgres


@pytest.fixture
def chinook(pg_database):
    load_chinook(pg_database)
    return pg_database


def pg_keys(dsn: str, table: str, key: list[str]) -> set[tuple]:
    with psycopg.connect(dsn) as connection:
        columns = ", ".join(key)
        return set(connection.execute(f"SELECT {columns} FROM {table}").fetchall())


def oracle_source(dsn: str, log: list[str], tables: dict, page_rows: int = 500,
                  limits: BatchLimits = BatchLimits(records=300)):
    config = oracle.Config(
        type="oracle",
        dsn="unused",
        user="chinook",
        password="unused",
        consistent=False,
        page_rows=page_rows,
        tables=tables,
    )
    cls = on_postgres(oracle.OracleSource, ORACLE_TYPES, "oracle", dsn, log)
    return cls("chinook_oracle", config, limits)


def mssql_source(dsn: str, log: list[str], tables: dict, page_rows: int = 500,
                 limits: BatchLimits = BatchLimits(records=300)):
    config = mssql.Config(type="mssql", server="unused", consistent=False, page_rows=page_rows, tables=tables)
    cls = on_postgres(mssql.MssqlSource, MSSQL_TYPES, "tsql", dsn, log)
    return cls("chinook_mssql", config, limits)


SOURCES = {"oracle": oracle_source, "tsql": mssql_source}


def read_all(source, table: str, partitions: int) -> list[tuple]:
    key = source.describe(table).key
    keys = []
    for partition in source.plan(table, partitions):
        for batch in source.read(partition):
            assert batch.rejects == []
            keys.extend(tuple(_plain(record[name]) for name in key) for record in batch.records)
    return keys


def _plain(value):
    return int(value) if isinstance(value, Decimal) and value == value.to_integral_value() else value


@pytest.mark.parametrize("dialect", ["oracle", "tsql"])
def test_every_chinook_table_read_once_with_1_and_4_partitions(chinook, dialect):
    log: list[str] = []
    tables = {name: {"mapping": "m.yaml"} for name in CHINOOK_COUNTS}
    source = SOURCES[dialect](chinook, log, tables)
    for table, count in CHINOOK_COUNTS.items():
        expected = pg_keys(chinook, table, list(source.describe(table).key))
        for partitions in (1, 4):
            keys = read_all(source, table, partitions)
            assert len(keys) == count, (table, partitions)
            assert set(keys) == expected, (table, partitions)
    # PlaylistTrack's composite key is paged without row values: the expanded OR form was run.
    composite = [sql for sql in log if "playlist_track" in sql and "track_id" in sql and " OR " in sql]
    assert composite, "no expanded keyset condition was executed"
    assert all("(playlist_id, track_id) >" not in sql.replace('"', "") for sql in log)
    assert len(log) > 100


@pytest.mark.parametrize("dialect", ["oracle", "tsql"])
def test_invoice_totals_are_exact_decimals(chinook, dialect):
    source = SOURCES[dialect](chinook, [], {"invoice": {"mapping": "m.yaml"}})
    totals = [
        record["total"]
        for partition in source.plan("invoice", 4)
        for batch in source.read(partition)
        for record in batch.records
    ]
    assert len(totals) == 412
    assert all(isinstance(total, Decimal) and total.as_tuple().exponent == -2 for total in totals)
    assert sum(totals) == Decimal("2328.60")


@pytest.mark.parametrize("dialect", ["oracle", "tsql"])
def test_text_first_composite_key_partitions_by_quantiles(chinook, dialect):
    log: list[str] = []
    source = SOURCES[dialect](chinook, log, {"track": {"mapping": "m.yaml", "key": ["name", "track_id"]}})
    partitions = source.plan("track", 4)
    assert len(partitions) == 4
    assert any("NTILE(4)" in sql for sql in log)
    keys = read_all(source, "track", 4)
    assert len(keys) == 3503 and len(set(keys)) == 3503


@pytest.mark.parametrize("dialect", ["oracle", "tsql"])
def test_resume_after_a_batch_continues_with_the_next_row(chinook, dialect):
    source = SOURCES[dialect](chinook, [], {"playlist_track": {"mapping": "m.yaml"}}, page_rows=1000)
    (partition,) = source.plan("playlist_track", 1)
    batches = source.read(partition)
    first, second = next(batches), next(batches)
    batches.close()
    assert len(first.records) == 300 and len(second.records) == 300
    rest = [
        (int(r["playlist_id"]), int(r["track_id"]))
        for batch in source.read(partition, resume_after=second.resume_after)
        for r in batch.records
    ]
    seen = [(int(r["playlist_id"]), int(r["track_id"])) for r in first.records + second.records]
    assert len(rest) == 8715 - 600
    assert set(rest).isdisjoint(seen)
    assert len(set(seen + rest)) == 8715
    assert rest == sorted(rest)


ARTIST_TREE = {
    "children": {
        "albums": {
            "table": "album",
            "parent_key": ["artist_id"],
            "where": "album_id <> 5",
            "children": {"tracks": {"table": "track", "parent_key": ["album_id"]}},
        }
    }
}


@pytest.mark.parametrize("dialect", ["oracle", "tsql"])
def test_child_streams_nest_albums_and_tracks_under_artists(chinook, dialect):
    log: list[str] = []
    source = SOURCES[dialect](chinook, log, {"artist": {"mapping": "m.yaml", **ARTIST_TREE}}, page_rows=70)
    with psycopg.connect(chinook) as connection:
        expected: dict = {artist: {} for (artist,) in connection.execute("SELECT artist_id FROM artist")}
        for album, artist in connection.execute("SELECT album_id, artist_id FROM album WHERE album_id <> 5"):
            expected[artist][album] = []
        for track, album in connection.execute(
            "SELECT track_id, album_id FROM track WHERE album_id <> 5 ORDER BY track_id"
        ):
            expected[next(a for a, albums in expected.items() if album in albums)][album].append(track)
    for partitions in (1, 4):
        got = {}
        for partition in source.plan("artist", partitions):
            for batch in source.read(partition):
                assert batch.rejects == []
                for record in batch.records:
                    got[_plain(record["artist_id"])] = {
                        _plain(album["album_id"]): [_plain(track["track_id"]) for track in album["tracks"]]
                        for album in record["albums"]
                    }
        assert got == expected, partitions
        assert sum(map(len, got.values())) == 346
        assert sum(len(tracks) for albums in got.values() for tracks in albums.values()) == 3503 - 15
    # The track stream: joined to its album and artist as derived tables, ordered by their keys.
    tracks = [sql for sql in log if "etl_a1" in sql]
    assert tracks and all("JOIN (SELECT" in sql for sql in tracks)
    # Resume: the second batch's last artist, then the rest; children come with their parent.
    (partition,) = source.plan("artist", 1)
    batches = source.read(partition)
    first, second = next(batches), next(batches)
    batches.close()
    rest = [r for batch in source.read(partition, resume_after=second.resume_after) for r in batch.records]
    ids = [_plain(r["artist_id"]) for r in first.records + second.records + rest]
    assert ids == sorted(expected)
    assert sum(len(a["tracks"]) for r in first.records + second.records + rest for a in r["albums"]) == 3488


LINES_QUERY = (
    "SELECT l.invoice_line_id, i.customer_id, l.unit_price * l.quantity AS amount"
    " FROM invoice_line l JOIN invoice i ON i.invoice_id = l.invoice_id"
)


@pytest.mark.parametrize("dialect", ["oracle", "tsql"])
def test_query_table_read_by_its_key_and_refused_when_the_key_repeats(chinook, dialect):
    log: list[str] = []
    tables = {
        "lines": {"mapping": "m.yaml", "query": LINES_QUERY, "key": ["invoice_line_id"]},
        "by_customer": {"mapping": "m.yaml", "query": LINES_QUERY, "key": ["customer_id"]},
    }
    source = SOURCES[dialect](chinook, log, tables, page_rows=700)
    for partitions in (1, 3):
        amounts = {}
        for partition in source.plan("lines", partitions):
            for batch in source.read(partition):
                amounts |= {_plain(r["invoice_line_id"]): r["amount"] for r in batch.records}
        assert len(amounts) == 2240 and sorted(amounts) == list(range(1, 2241))
        assert sum(amounts.values()) == Decimal("2328.60")
    assert any("GROUP BY" in sql and "HAVING COUNT(*) > 1" in sql for sql in log)
    with pytest.raises(EtlError, match=r"59 values of `key:` \[customer_id\] occur in more than one row"):
        source.plan("by_customer", 2)
