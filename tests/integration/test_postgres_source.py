"""The PostgreSQL source for real: Chinook loaded into a fresh database, plus purpose-built tables."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import psycopg
import pytest

from etl.errors import ConnectionFailed, EtlError
from etl.records import Partition
from etl.sources.base import BatchLimits
from etl.sources.postgres import Config, open_source
from tests.integration.chinook import CHINOOK_COUNTS, load_chinook

pytestmark = pytest.mark.integration


@pytest.fixture
def chinook(pg_database):
    load_chinook(pg_database)
    return pg_database


def source_for(dsn: str, tables: dict, *, records: int = 1000, **options):
    config = Config(
        type="postgres", dsn=dsn, tables={t: {"mapping": "m.yaml", **o} for t, o in tables.items()}, **options
    )
    return open_source("pg", config, BatchLimits(records=records))


def read_partitions(source, partitions):
    records = []
    for partition in partitions:
        for batch in source.read(partition):
            assert batch.rejects == []
            records.extend(batch.records)
    return records


def test_every_chinook_table_with_1_and_4_partitions(chinook):
    source = source_for(chinook, {table: {} for table in CHINOOK_COUNTS}, page_rows=1000, records=700)
    try:
        source.check()
        for table, count in CHINOOK_COUNTS.items():
            for partitions in (1, 4):
                plan = source.plan(table, partitions)
                keys = [source.key_text(table, r) for r in read_partitions(source, plan)]
                assert len(keys) == count, (table, partitions)
                assert len(set(keys)) == count, (table, partitions)
        assert source.describe("playlist_track").key == ("playlist_id", "track_id")
        assert len(source.plan("playlist_track", 4)) == 4
        totals = [r["total"] for r in read_partitions(source, source.plan("invoice", 4))]
        assert sum(totals) == Decimal("2328.60")
        assert all(type(total) is Decimal for total in totals)
        first = source.sample("invoice", 1)[0]
        assert first["billing_address"] == "Theodor-Heuss-Straße 34"
        assert first["invoice_date"] == dt.datetime(2021, 1, 1, 0, 0)
    finally:
        source.close()


def test_resume_after_a_given_key(chinook):
    source = source_for(chinook, {"playlist_track": {}, "track": {}}, page_rows=500, records=250)
    try:
        (partition,) = source.plan("playlist_track", 1)
        rest = read_partitions_from(source, partition, [8, 3000])
        assert rest[0] == (8, 3001)
        with psycopg.connect(chinook) as connection:
            expected = connection.execute(
                "SELECT playlist_id, track_id FROM playlist_track"
                " WHERE (playlist_id, track_id) > (8, 3000) ORDER BY 1, 2"
            ).fetchall()
        assert rest == expected and len(rest) == 842
        # Resume from a batch's own position: the next batch starts right after it.
        batches = source.read(source.plan("track", 1)[0])
        first = next(batches)
        batches.close()
        assert first.resume_after == [250]
        after = [
            r["track_id"]
            for b in source.read(source.plan("track", 1)[0], resume_after=[250])
            for r in b.records
        ]
        assert after == list(range(251, 3504))
    finally:
        source.close()


def read_partitions_from(source, partition, resume_after):
    return [
        (r["playlist_id"], r["track_id"])
        for batch in source.read(partition, resume_after=resume_after)
        for r in batch.records
    ]


def test_partitions_share_one_exported_snapshot(chinook):
    source = source_for(chinook, {"invoice": {}})
    try:
        plan = source.plan("invoice", 4)
        snapshot = plan[0].lower["at"]
        assert all(p.lower["at"] == snapshot for p in plan)
        with psycopg.connect(chinook, autocommit=True) as writer:
            writer.execute("DELETE FROM invoice_line WHERE invoice_id = 1")
            writer.execute("DELETE FROM invoice WHERE invoice_id = 1")
            writer.execute(
                "INSERT INTO invoice (invoice_id, customer_id, invoice_date, total)"
                " VALUES (9999, 1, now(), 1)"
            )
        ids = [r["invoice_id"] for r in read_partitions(source, plan)]
        assert len(ids) == 412 and 1 in ids and 9999 not in ids
        assert source.warnings == {}
    finally:
        source.close()
    # After close the exporting transaction is gone: a partition reads its own snapshot, counted.
    late = source_for(chinook, {"invoice": {}})
    try:
        ids = [r["invoice_id"] for r in read_partitions(late, plan)]
        assert len(ids) == 412 and 1 not in ids and 9999 in ids
        assert late.warnings == {"snapshot: exported snapshot gone, partition used its own": 4}
    finally:
        late.close()


CANONICAL_TABLE = """
CREATE TABLE "Odd ""Name""; DROP TABLE x" (
    id bigint PRIMARY KEY,
    amount numeric(12, 3),
    huge numeric,
    seen timestamptz,
    local_ts timestamp(6),
    doc jsonb,
    tags text[],
    matrix int[],
    guid uuid,
    raw bytea,
    stay interval,
    code char(5),
    day date,
    note text
)
"""


def test_postgres_types_become_canonical_values(pg_database):
    with psycopg.connect(pg_database, autocommit=True) as connection:
        connection.execute(CANONICAL_TABLE)
        connection.execute(
            """INSERT INTO "Odd ""Name""; DROP TABLE x" VALUES
            (1, 1.5, 123456789012345678901234567890.000000001, '2024-03-10 14:30:15.123456+05:30',
             '2024-03-10 14:30:15.5', '{"dose": 1.10, "n": [1, 2.50]}', '{a,"b c"}', '{{1,2},{3,4}}',
             '6f9619ff-8b86-d011-b42d-00c04fc964ff', '\\x00ff', '3 days 04:05:06.5', 'AB', '2024-02-29', ''),
            (2, NULL, 'NaN', NULL, NULL, 'null', '{}', NULL, NULL, '', '1 mon', NULL, NULL, NULL)"""
        )
    table = 'Odd "Name"; DROP TABLE x'
    source = source_for(pg_database, {table: {}})
    try:
        batches = list(source.read(source.plan(table, 1)[0]))
        (batch,) = batches
        first = batch.records[0]
        assert first == {
            "id": 1,
            "amount": Decimal("1.500"),
            "huge": Decimal("123456789012345678901234567890.000000001"),
            "seen": dt.datetime(2024, 3, 10, 9, 0, 15, 123456, tzinfo=dt.UTC),
            "local_ts": dt.datetime(2024, 3, 10, 14, 30, 15, 500000),
            "doc": {"dose": Decimal("1.10"), "n": [1, Decimal("2.50")]},
            "tags": ["a", "b c"],
            "matrix": [[1, 2], [3, 4]],
            "guid": uuid.UUID("6f9619ff-8b86-d011-b42d-00c04fc964ff"),
            "raw": b"\x00\xff",
            "stay": dt.timedelta(days=3, hours=4, minutes=5, seconds=6.5),
            "code": "AB",
            "day": dt.date(2024, 2, 29),
            "note": "",
        }
        assert first["seen"].tzinfo is dt.UTC
        assert str(first["amount"]) == "1.500"
        (reject,) = batch.rejects
        assert reject.source_key == "id=2"
        assert (
            reject.reason == "column stay: interval has a year/month part, which has no fixed length in days"
        )
        assert (reject.stage, reject.field_path, reject.value_type) == ("extract", "stay", "str")
        assert batch.extracted == 2
    finally:
        source.close()


def test_records_built_by_the_driver_and_after_a_char_key_read_alike(pg_database):
    """Two read paths: psycopg builds the records (raw key columns) or the source does (a CHAR
    key is selected twice). Pages, byte splits, resume and a consumer that edits its records
    must give the same rows either way."""
    with psycopg.connect(pg_database, autocommit=True) as connection:
        for table, key in (("by_driver", "id int"), ("by_source", "id char(6)")):
            connection.execute(f"CREATE TABLE {table} ({key} PRIMARY KEY, body text, doc jsonb)")
            connection.execute(
                f"INSERT INTO {table} SELECT lpad(i::text, 6, '0')::{key.split()[1]},"
                " repeat('x', i % 7 * 100), jsonb_build_object('n', i, 'f', i / 4.0)"
                " FROM generate_series(1, 300) i"
            )
    expected = [{"body": "x" * (i % 7 * 100), "doc": {"n": i, "f": Decimal(i) / 4}} for i in range(1, 301)]
    limits = BatchLimits(records=40, bytes=2000)  # several rows of body per batch at most
    config = Config(
        type="postgres",
        dsn=pg_database,
        page_rows=70,
        tables={"by_driver": {"mapping": "m.yaml"}, "by_source": {"mapping": "m.yaml"}},
    )
    source = open_source("pg", config, limits)
    try:
        numbers = [*range(1, 301)]
        for table, ids in (("by_driver", numbers), ("by_source", [f"{i:06}" for i in numbers])):
            (partition,) = source.plan(table, 1)
            read, positions = [], []
            for batch in source.read(partition):
                assert batch.rejects == [] and 0 < len(batch.records) <= 40
                positions.append(batch.resume_after)
                for record in batch.records:
                    read.append(dict(record))
                    record.clear()  # the consumer owns its records: the next page must not care
            assert [r.pop("id") for r in read] == ids, table
            assert read == expected, table
            assert len(positions) > 300 // 40  # the byte limit split batches below 40 records
            assert all(type(r["doc"]["f"]) is Decimal for r in read)
            middle = positions[len(positions) // 2]
            rest = [r["id"] for b in source.read(partition, resume_after=middle) for r in b.records]
            assert rest == ids[ids.index(middle[0]) + 1 :], table
    finally:
        source.close()


def test_keys_unique_index_and_errors(pg_database):
    with psycopg.connect(pg_database, autocommit=True) as connection:
        connection.execute("CREATE TABLE no_key (a int, b text)")
        connection.execute("INSERT INTO no_key VALUES (1, 'x'), (2, 'y'), (NULL, 'z')")
        connection.execute("CREATE TABLE by_unique (code text NOT NULL, n int, UNIQUE (code))")
        connection.execute("INSERT INTO by_unique VALUES ('b', 2), ('a', 1)")
    source = source_for(pg_database, {"no_key": {}, "by_unique": {}, "missing": {}, "NO_KEY": {"key": ["a"]},
                                      "by_uniqe": {}})
    try:
        with pytest.raises(EtlError) as no_key:
            source.check()
        assert str(no_key.value) == (
            "PostgreSQL source 'pg': table 'no_key' has no primary key and no unique index"
            " on NOT NULL columns\n  hint: set `key: [column, ...]` for 'no_key' in the job file:"
            " resume and validation need columns that identify each row"
        )
        assert source.describe("by_unique").key == ("code",)
        assert [r["code"] for r in source.sample("by_unique", 5)] == ["a", "b"]
        with pytest.raises(EtlError) as missing:
            source.describe("missing")
        assert str(missing.value) == (
            "PostgreSQL source 'pg': table 'missing' does not exist or is not visible to this user\n"
            "  hint: tables that do exist: public.by_unique, public.no_key"
        )
        with pytest.raises(EtlError) as misspelt:
            source.describe("by_uniqe")
        assert str(misspelt.value) == (
            "PostgreSQL source 'pg': table 'by_uniqe' does not exist or is not visible to this user; did you "
            "mean 'by_unique'?\n  hint: tables that do exist: public.by_unique, public.no_key"
        )
        assert source.describe("NO_KEY").table == "no_key"
        with pytest.raises(EtlError, match="1 rows have NULL in key column\\(s\\) a"):
            source.plan("NO_KEY", 2)
    finally:
        source.close()


def test_connection_errors_name_the_server_not_the_password(pg_database):
    wrong_user = source_for(pg_database.replace("user=postgres", "user=nobody_here password=Secret-77"), {})
    with pytest.raises(ConnectionFailed) as failure:
        wrong_user.connect()
    message = str(failure.value)
    assert message.startswith("cannot connect to PostgreSQL source 'pg' at 127.0.0.1:")
    assert 'FATAL: role "nobody_here" does not exist' in message
    assert "Secret-77" not in message
    wrong_host = source_for("host=127.0.0.1 port=1 user=postgres password=Secret-77 dbname=x", {})
    with pytest.raises(ConnectionFailed) as failure:
        wrong_host.connect()
    assert str(failure.value) == (
        "cannot connect to PostgreSQL source 'pg' at 127.0.0.1:1/x: connection failed:"
        ' connection to server at "127.0.0.1", port 1 failed: Connection refused'
        " Is the server running on that host and accepting TCP/IP connections?\n"
        "  hint: check that the server is running and reachable, and the user name and password"
    )


def test_unconfigured_table_is_an_error(chinook):
    source = source_for(chinook, {"album": {}})
    try:
        with pytest.raises(EtlError, match="table 'track' is not configured"):
            source.read(Partition("pg", "track", 0, 1)).__next__()
    finally:
        source.close()
