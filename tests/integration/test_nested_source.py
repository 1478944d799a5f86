"""Nested records from the PostgreSQL source: Chinook's artist -> albums -> tracks and
customer -> invoices -> lines read as parallel ordered streams, compared with what plain SQL says."""

from __future__ import annotations

from collections import Counter

import psycopg
import pytest

from etl.errors import EtlError
from etl.sources.base import BatchLimits
from etl.sources.postgres import Config, open_source
from tests.integration.chinook import load_chinook

pytestmark = pytest.mark.integration

ARTIST_TREE = {
    "children": {
        "albums": {
            "table": "album",
            "parent_key": ["artist_id"],
            "children": {"tracks": {"table": "track", "parent_key": ["album_id"]}},
        }
    }
}
CUSTOMER_TREE = {
    "children": {
        "invoices": {
            "table": "invoice",
            "parent_key": ["customer_id"],
            "children": {"lines": {"table": "invoice_line", "parent_key": ["invoice_id"]}},
        }
    }
}


@pytest.fixture(scope="module")
def chinook():
    """Chinook in a database of this module's own (read only by these tests)."""
    from tests.conftest import pg_dsn, unique_name

    name = unique_name("etl_nested")
    with psycopg.connect(pg_dsn("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = pg_dsn(name)
    load_chinook(dsn)
    yield dsn
    with psycopg.connect(pg_dsn("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def source_for(dsn: str, tables: dict, *, records: int = 1000, **options):
    config = Config(
        type="postgres", dsn=dsn, tables={t: {"mapping": "m.yaml", **o} for t, o in tables.items()}, **options
    )
    return open_source("pg", config, BatchLimits(records=records))


def expected_tree(dsn: str) -> dict:
    """artist_id -> {album_id: sorted track ids} by plain SQL."""
    with psycopg.connect(dsn) as connection:
        artists = {artist_id: {} for (artist_id,) in connection.execute("SELECT artist_id FROM artist")}
        for album_id, artist_id in connection.execute("SELECT album_id, artist_id FROM album"):
            artists[artist_id][album_id] = []
        for track_id, album_id, artist_id in connection.execute(
            "SELECT t.track_id, t.album_id, a.artist_id FROM track t JOIN album a USING (album_id)"
            " ORDER BY t.track_id"
        ):
            artists[artist_id][album_id].append(track_id)
    return artists


def as_tree(records: list[dict]) -> dict:
    return {
        record["artist_id"]: {
            album["album_id"]: [track["track_id"] for track in album["tracks"]] for album in record["albums"]
        }
        for record in records
    }


def rows_of(record: dict) -> int:
    """The record's row and its descendants' rows."""
    return 1 + sum(rows_of(child) for value in record.values() if isinstance(value, list) for child in value)


def read_all(source, table: str, partitions: int, **options) -> tuple[list[dict], list[int]]:
    """Every record, and the rows (of all levels) of each batch."""
    records, sizes = [], []
    for partition in source.plan(table, partitions):
        for batch in source.read(partition, **options):
            assert batch.rejects == []
            records.extend(batch.records)
            sizes.append((len(batch.records), sum(map(rows_of, batch.records))))
    return records, sizes


@pytest.mark.parametrize("partitions", [1, 4])
def test_artists_with_albums_and_tracks(chinook, partitions):
    source = source_for(chinook, {"artist": ARTIST_TREE}, records=200, page_rows=300)
    try:
        records, sizes = read_all(source, "artist", partitions)
    finally:
        source.close()
    assert len(records) == 275
    assert sum(len(r["albums"]) for r in records) == 347
    assert sum(len(a["tracks"]) for r in records for a in r["albums"]) == 3503
    assert as_tree(records) == expected_tree(chinook)
    # Children are records of their own columns, in key order; rows of all levels bound a batch.
    (ac_dc,) = [r for r in records if r["artist_id"] == 1]
    assert ac_dc["name"] == "AC/DC"
    titles = [a["title"] for a in ac_dc["albums"]]
    assert titles == ["For Those About To Rock We Salute You", "Let There Be Rock"]
    assert set(ac_dc["albums"][0]["tracks"][0]) == {
        "track_id", "name", "album_id", "media_type_id", "genre_id", "composer", "milliseconds", "bytes",
        "unit_price",
    }
    # A batch stops before the parent that would take it past 200 rows; Iron Maiden (213 tracks) alone.
    assert all(rows <= 200 for count, rows in sizes if count > 1)
    assert [rows for count, rows in sizes if rows > 200] == [1 + 21 + 213]
    assert rows_of(next(r for r in records if r["artist_id"] == 90)) == 1 + 21 + 213


def test_customers_with_invoices_and_lines_resume_on_a_parent(chinook):
    source = source_for(chinook, {"customer": CUSTOMER_TREE}, records=100, page_rows=7)
    try:
        (partition,) = source.plan("customer", 1)
        batches = source.read(partition)
        first, second = next(batches), next(batches)
        batches.close()
        after = second.resume_after
        rest = [r for batch in source.read(partition, resume_after=after) for r in batch.records]
    finally:
        source.close()
    seen = first.records + second.records
    assert second.resume_after == [seen[-1]["customer_id"]]
    ids = [r["customer_id"] for r in seen + rest]
    assert ids == list(range(1, 60))
    everything = seen + rest
    assert sum(len(r["invoices"]) for r in everything) == 412
    lines = [line for r in everything for invoice in r["invoices"] for line in invoice["lines"]]
    assert len(lines) == 2240
    assert sum(line["unit_price"] * line["quantity"] for line in lines) == sum(
        invoice["total"] for r in everything for invoice in r["invoices"]
    )
    assert all(invoice["customer_id"] == r["customer_id"] for r in everything for invoice in r["invoices"])


def test_children_filters_and_unread_children(chinook):
    tree = {
        "where": "artist_id <= 10",
        "children": {
            "albums": {
                "table": "album",
                "parent_key": ["artist_id"],
                "where": "title LIKE 'A%'",
                "children": {
                    "tracks": {"table": "track", "parent_key": ["album_id"], "where": "genre_id = 1"}
                },
            }
        },
    }
    source = source_for(chinook, {"artist": tree})
    try:
        records, _ = read_all(source, "artist", 2)
        plain, _ = read_all(source, "artist", 1, fields=["name"])  # a mapping that reads no child
    finally:
        source.close()
    with psycopg.connect(chinook) as connection:
        expected = Counter(
            connection.execute(
                "SELECT a.artist_id FROM album a JOIN track t USING (album_id)"
                " WHERE a.artist_id <= 10 AND a.title LIKE 'A%' AND t.genre_id = 1"
            ).fetchall()
        )
    assert [r["artist_id"] for r in records] == list(range(1, 11))
    got = Counter({(r["artist_id"],): sum(len(a["tracks"]) for a in r["albums"]) for r in records})
    assert +got == expected
    assert all(a["title"].startswith("A") for r in records for a in r["albums"])
    assert [sorted(r) for r in plain] == [["artist_id", "name"]] * 10


def test_child_configuration_errors(chinook):
    bad_key = {"children": {"albums": {"table": "album", "parent_key": ["artist_id", "title"]}}}
    source = source_for(chinook, {"artist": bad_key})
    with pytest.raises(EtlError, match=r"`parent_key` \['artist_id', 'title'\] must name 1 column\(s\)"):
        source.check()
    missing = {"children": {"albums": {"table": "albumz", "parent_key": ["artist_id"]}}}
    with pytest.raises(EtlError, match="'artist.albums' does not exist"):
        source_for(chinook, {"artist": missing}).check()
    with pytest.raises(ValueError, match="cannot be used on a table with `children:`"):
        source_for(chinook, {"artist": {**ARTIST_TREE, "watermark": "name"}})
    clash = {"children": {"name": {"table": "album", "parent_key": ["artist_id"]}}}
    with pytest.raises(EtlError, match="'artist': child 'name' has the name of one of its columns"):
        source_for(chinook, {"artist": clash}).check()
    catalogue = source_for(chinook, {"artist": ARTIST_TREE}).catalogue("artist")
    assert catalogue.names == ("artist_id", "name", "albums")


SALES = (
    "SELECT l.invoice_line_id, i.customer_id, t.name AS track_name, g.name AS genre,"
    " l.unit_price * l.quantity AS amount, i.invoice_date"
    " FROM invoice_line l JOIN invoice i USING (invoice_id) JOIN track t USING (track_id)"
    " JOIN genre g USING (genre_id) WHERE g.name LIKE 'R%'"
)


@pytest.mark.parametrize("partitions", [1, 3])
def test_a_query_table_reads_a_join_by_its_declared_key(chinook, partitions):
    source = source_for(chinook, {"sales": {"query": SALES, "key": ["invoice_line_id"]}}, records=100,
                        page_rows=150)
    try:
        source.check()
        columns = [(c.name, c.type) for c in source.describe("sales").columns]
        records, _ = read_all(source, "sales", partitions)
        assert source.count("sales") == len(records)
    finally:
        source.close()
    with psycopg.connect(chinook) as connection:
        ((count, total),) = connection.execute(f"SELECT count(*), sum(amount) FROM ({SALES}) q").fetchall()
    assert columns == [("invoice_line_id", "INT4"), ("customer_id", "INT4"), ("track_name", "VARCHAR"),
                       ("genre", "VARCHAR"), ("amount", "NUMERIC"), ("invoice_date", "TIMESTAMP")]
    assert (len(records), sum(r["amount"] for r in records)) == (count, total)
    assert count == 912
    ids = [r["invoice_line_id"] for r in records]
    assert ids == sorted(ids) and len(set(ids)) == count
    assert all(r["genre"].startswith("R") for r in records)


def test_a_query_table_needs_a_key_that_identifies_its_rows(chinook):
    with pytest.raises(ValueError, match="a `query:` table needs `key:`"):
        source_for(chinook, {"sales": {"query": SALES}})
    source = source_for(chinook, {"sales": {"query": SALES, "key": ["customer_id"]}})
    try:
        with pytest.raises(EtlError, match=r"query table 'sales': 59 values of `key:` \[customer_id\] occur"
                                           " in more than one row"):
            source.plan("sales", 2)
    finally:
        source.close()


def test_a_child_value_that_cannot_be_converted_rejects_its_parent_whole(pg_database):
    with psycopg.connect(pg_database) as connection:
        connection.execute(
            "CREATE TABLE team (code text COLLATE \"en-US-x-icu\" PRIMARY KEY, name text);"
            " CREATE TABLE member (id int PRIMARY KEY, team text NOT NULL, span interval);"
            " INSERT INTO team VALUES ('a', 'first'), ('B', 'second'), ('c', 'third'), ('_d', 'fourth');"
            " INSERT INTO member VALUES (1, 'a', '1 day'), (2, 'B', '2 hours'), (3, 'B', '1 month'),"
            " (4, 'c', NULL), (5, '_d', '3 seconds'), (6, 'nobody', '1 day')"
        )
    tree = {"children": {"members": {"table": "member", "parent_key": ["team"]}}}
    source = source_for(pg_database, {"team": tree})
    try:
        (partition,) = source.plan("team", 1)
        (batch,) = source.read(partition)
    finally:
        source.close()
    # The collation orders '_d', 'a', 'B', 'c'; the merge compares keys for equality only.
    assert [(r["code"], [m["id"] for m in r["members"]]) for r in batch.records] == [
        ("_d", [5]), ("a", [1]), ("c", [4])]
    (reject,) = batch.rejects
    assert (reject.source_key, reject.field_path, reject.value_type) == ("code='B'", "members[1].span", "str")
    assert reject.reason.startswith("members[1]: column span: ")


def test_a_query_table_can_have_children(chinook):
    query = (
        "SELECT a.artist_id, a.name, count(*) AS albums_listed FROM artist a JOIN album b USING (artist_id)"
        " GROUP BY a.artist_id, a.name"
    )
    tree = {"query": query, "key": ["artist_id"], "where": "albums_listed >= 3", **ARTIST_TREE}
    source = source_for(chinook, {"prolific": tree}, records=50)
    try:
        records, _ = read_all(source, "prolific", 3)
        counted = source.count("prolific")
    finally:
        source.close()
    assert len(records) == counted
    assert all(len(r["albums"]) == r["albums_listed"] >= 3 for r in records)
    expected = {artist: albums for artist, albums in expected_tree(chinook).items() if len(albums) >= 3}
    assert as_tree(records) == expected
    assert len(expected) == 26
