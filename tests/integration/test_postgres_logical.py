"""PostgreSQL logical decoding for real, in a cluster of the test's own with wal_level = logical.

The shared local server runs with wal_level = replica, which logical decoding cannot use, so the
module starts its own PostgreSQL 15 cluster (initdb, pg_ctl) on a free port in a temporary folder
and stops it (pg_ctl stop: the postmaster of that folder's pid file) at the end."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from etl.errors import EtlError
from etl.records import Partition
from etl.sources.base import BatchLimits, ChangeCapture
from etl.sources.postgres import Config, open_source

pytestmark = pytest.mark.integration


@pytest.fixture
def visits(logical_dsn):
    with psycopg.connect(logical_dsn, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS visit, other")
        connection.execute(
            "CREATE TABLE visit (id int PRIMARY KEY, name text NOT NULL, status text NOT NULL)")
        connection.execute("CREATE TABLE other (id int PRIMARY KEY)")
        connection.execute(
            "INSERT INTO visit SELECT i, 'visit ''' || i || '''', 'open' FROM generate_series(1, 20) i")
    yield logical_dsn
    with psycopg.connect(logical_dsn, autocommit=True) as connection:
        connection.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots")


def run(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn) as connection:  # one transaction
        for statement in statements:
            connection.execute(statement)


def caught_up(source, position):
    records, deletes, kinds, batches = {}, [], {}, 0
    for batch in source.changes("visit", position):
        batches += 1
        assert not ({r["id"] for r in batch.records} & {k["id"] for k in batch.deletes})
        records.update({record["id"]: record for record in batch.records})
        deletes.extend(key["id"] for key in batch.deletes)
        for kind, count in batch.kinds.items():
            kinds[kind] = kinds.get(kind, 0) + count
        position = batch.resume_after
    return records, sorted(deletes), kinds, position, batches


def test_logical_decoding_reads_inserts_updates_and_deletes_from_the_slot(visits):
    config = Config(type="postgres", dsn=visits, tables={
        "visit": {"mapping": "m.yaml", "changes": "logical", "where": "status <> 'gone'"}})
    source = open_source("pg", config, BatchLimits(records=3))
    try:
        assert source.change_capture("visit") == ChangeCapture(
            "logical decoding (slot etl_pg_visit, test_decoding)", deletes=True)
        start = source.change_position("visit")  # the slot exists before the full load reads
        assert start["method"] == "logical" and start["slot"] == "etl_pg_visit"
        loaded = [r for b in source.read(Partition("pg", "visit", 0, 1)) for r in b.records]
        assert len(loaded) == 20
        run(visits, "INSERT INTO visit VALUES (21, 'new', 'open')",
            "UPDATE visit SET status = 'seen', name = 'it''s seen' WHERE id = 2",
            "UPDATE visit SET status = 'gone' WHERE id = 3", "DELETE FROM visit WHERE id = 4",
            "INSERT INTO other VALUES (1)")
        run(visits, "INSERT INTO visit VALUES (22, 'brief', 'open')", "DELETE FROM visit WHERE id = 22",
            "UPDATE visit SET id = 105 WHERE id = 5", "UPDATE visit SET status = 'seen' WHERE id = 21")
        records, deletes, kinds, position, batches = caught_up(source, start)
        assert {i: (r["name"], r["status"]) for i, r in records.items()} == {
            21: ("new", "seen"), 2: ("it's seen", "seen"), 105: ("visit '5'", "open")}
        assert deletes == [3, 4, 5, 22]
        # Batches of 3 keys: (21 inserted, 2, 3 leaves the filter), (4, 22 in and out, 5 -> 105: the old
        # key deleted, the new one updated), (21 updated in the second transaction).
        assert kinds == {"insert": 1, "update": 3, "delete": 4} and batches == 3
        # Peeked, not consumed: from the first position again, the same changes.
        assert caught_up(source, start)[:3] == (records, deletes, kinds)
        # From the position reached, nothing; a transaction still open is not seen until it commits.
        open_transaction = psycopg.connect(visits)
        open_transaction.execute("INSERT INTO visit VALUES (30, 'late', 'open')")
        assert caught_up(source, position)[:2] == ({}, [])
        open_transaction.commit()
        open_transaction.close()
        records, deletes, kinds, position, _ = caught_up(source, position)
        assert list(records) == [30] and deletes == [] and kinds == {"insert": 1}
        assert source.drop_slot("visit") is True
        with pytest.raises(EtlError, match="replication slot 'etl_pg_visit' is gone"):
            list(source.changes("visit", position))
    finally:
        source.close()


def test_the_commit_time_of_the_last_change_is_the_batch_time(visits):
    tables = {"visit": {"mapping": "m.yaml", "changes": "logical"}}
    config = Config(type="postgres", dsn=visits, tables=tables)
    source = open_source("pg", config, BatchLimits())
    try:
        position = source.change_position("visit")
        with psycopg.connect(visits) as connection:
            connection.execute("UPDATE visit SET status = 'seen' WHERE id = 9")
            ((committing,),) = connection.execute("SELECT now()").fetchall()
        (batch,) = source.changes("visit", position)
        assert batch.at.endswith("+00:00") and dt.datetime.fromisoformat(batch.at) >= committing
        assert [r["id"] for r in batch.records] == [9] and batch.kinds == {"update": 1}
    finally:
        source.close()
