"""Incremental runs from PostgreSQL for real: watermarks with late commits, key lookups."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import psycopg
import pytest

from etl.errors import EtlError
from etl.records import Partition
from etl.sources.base import BatchLimits, ChangeCapture
from etl.sources.postgres import Config, open_source
from etl.sources.sqltypes import encode_value

pytestmark = pytest.mark.integration


def source_for(dsn: str, tables: dict, *, records: int = 1000, **options):
    config = Config(
        type="postgres", dsn=dsn, tables={t: {"mapping": "m.yaml", **o} for t, o in tables.items()}, **options
    )
    return open_source("pg", config, BatchLimits(records=records))


def changed(source, table: str, position) -> tuple[dict, list, dict, object]:
    """id -> record, deleted ids, summed kinds and the last position of one `changes` call."""
    records, deletes, kinds = {}, [], {}
    for batch in source.changes(table, position):
        records.update({record["id"]: record for record in batch.records})
        deletes.extend(key["id"] for key in batch.deletes)
        for kind, count in batch.kinds.items():
            kinds[kind] = kinds.get(kind, 0) + count
        position = batch.resume_after
    return records, deletes, kinds, position


@pytest.fixture
def visits(pg_database):
    with psycopg.connect(pg_database, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE visit (id int PRIMARY KEY, changed timestamptz NOT NULL, status text NOT NULL)"
        )
        connection.execute(
            "INSERT INTO visit SELECT i, timestamptz '2024-01-01 00:00Z' + i * interval '1 hour', 'open'"
            " FROM generate_series(1, 50) i"
        )
    return pg_database


def test_a_transaction_committing_late_with_an_older_watermark_is_read_next_time(visits):
    """overlap 0: only the bound by transactions in progress keeps the late row from being skipped."""
    source = source_for(visits, {"visit": {"watermark": "changed", "overlap": 0}})
    late = psycopg.connect(visits)
    try:
        assert source.change_capture("visit") == ChangeCapture(
            "watermark changed (overlap 0 s)", deletes=False
        )
        position = source.change_position("visit")
        assert position == {"method": "watermark", "from": {"$datetime": "2024-01-03T02:00:00+00:00"}}
        # The late transaction starts first and writes now() (its start) into the row ...
        ((late_start,),) = late.execute("SELECT now()").fetchall()
        late.execute("UPDATE visit SET changed = now(), status = 'late' WHERE id = 3")
        # ... another one writes a later watermark and commits while the first is still open.
        with psycopg.connect(visits, autocommit=True) as other:
            other.execute("INSERT INTO visit VALUES (51, now(), 'open')")
        records, deletes, kinds, position = changed(source, "visit", position)
        assert sorted(records) == [50, 51]  # 50: its watermark equals the stored one
        assert deletes == [] and kinds == {"upsert": 2}
        # The position stops at the open transaction's start, not at row 51's later watermark.
        assert position == {"method": "watermark", "from": encode_value(late_start)}
        late.commit()
        records, deletes, kinds, position = changed(source, "visit", position)
        assert 3 in records and records[3]["status"] == "late" and records[3]["changed"] == late_start
        assert 51 in records
    finally:
        late.close()
        source.close()


def test_the_overlap_catches_a_watermark_older_than_its_transaction(visits):
    source = source_for(visits, {"visit": {"watermark": "changed"}})
    late = psycopg.connect(visits)
    try:
        assert source.change_capture("visit").method == "watermark changed (overlap 600 s)"
        position = source.change_position("visit")
        # An application value five minutes older than the transaction that writes it.
        late.execute("UPDATE visit SET changed = now() - interval '5 minutes', status = 'late' WHERE id = 7")
        with psycopg.connect(visits, autocommit=True) as other:
            other.execute("INSERT INTO visit VALUES (52, now(), 'open')")
        records, _, _, position = changed(source, "visit", position)
        assert 52 in records and 7 not in records
        late.commit()
        records, _, _, _ = changed(source, "visit", position)
        assert records[7]["status"] == "late"
    finally:
        late.close()
        source.close()


def test_without_pg_read_all_stats_the_overlap_alone_bounds_it_and_the_report_says_so(visits):
    role = f"etl_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(visits, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN; GRANT SELECT ON visit TO {role}")
    source = source_for(visits.replace("user=postgres", f"user={role}"), {"visit": {"watermark": "changed"}})
    try:
        assert source.change_capture("visit").method == "watermark changed (overlap 600 s)"
        assert source.change_position("visit") == {
            "method": "watermark", "from": {"$datetime": "2024-01-03T02:00:00+00:00"}}
        warning = "visit: watermark bounded by the overlap only (no pg_read_all_stats)"
        assert dict(source.warnings) == {warning: 1}
    finally:
        source.close()
        with psycopg.connect(visits, autocommit=True) as admin:
            admin.execute(f"REVOKE ALL ON visit FROM {role}; DROP ROLE {role}")


def test_rows_leaving_the_filter_are_deletes_and_resume_after_each_batch(visits):
    source = source_for(visits, {"visit": {"watermark": "changed", "where": "status <> 'gone'"}}, records=2)
    try:
        position = source.change_position("visit")
        with psycopg.connect(visits, autocommit=True) as connection:
            connection.execute(
                "UPDATE visit SET changed = timestamptz '2025-01-01Z' + id * interval '1 minute',"
                " status = CASE WHEN id = 12 THEN 'gone' ELSE 'seen' END WHERE id IN (10, 11, 12, 13, 14)"
            )
        batches = list(source.changes("visit", position))
        assert [len(batch.records) + len(batch.deletes) for batch in batches] == [2, 2, 2]
        assert [key for batch in batches for key in batch.deletes] == [{"id": 12}]
        assert [batch.kinds for batch in batches] == [
            {"upsert": 2}, {"upsert": 1, "delete": 1}, {"upsert": 2}
        ]
        assert batches[-1].at == "2025-01-01T00:14:00+00:00"
        # Every batch's position re-reads at most the rows of its own last watermark.
        middle = batches[1].resume_after
        assert middle == {"method": "watermark", "from": {"$datetime": "2025-01-01T00:12:00+00:00"}}
        again, deletes, _, _ = changed(source, "visit", middle)  # from 00:12 less the 600 s overlap
        assert sorted(again) == [10, 11, 13, 14] and deletes == [12]
        with pytest.raises(EtlError, match="made by `changes: logical`, the table now says `changes: water"):
            list(source.changes("visit", {"method": "logical", "slot": "s", "lsn": "0/0"}))
    finally:
        source.close()


def test_key_lookups_are_exact_for_composite_and_typed_keys_with_the_filter(pg_database):
    with psycopg.connect(pg_database, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE line (region text, n int, active boolean NOT NULL, PRIMARY KEY (region, n))"
        )
        connection.execute(
            "INSERT INTO line SELECT r, i, i % 7 <> 0 FROM unnest(ARRAY['north', 'south', 'O''Brien']) r,"
            " generate_series(1, 900) i"
        )
        connection.execute(
            "CREATE TABLE typed (code char(4), at timestamp, amount numeric(12, 3), tag uuid, raw bytea,"
            " PRIMARY KEY (code, at, amount, tag, raw))"
        )
        connection.execute(
            "INSERT INTO typed SELECT 'c' || i, timestamp '2024-02-29 12:00:00.000001' + i * interval '1 s',"
            " i * 1.125, md5(i::text)::uuid, decode(lpad(to_hex(i), 4, '0'), 'hex')"
            " FROM generate_series(1, 30) i"
        )
    source = source_for(pg_database, {"line": {"where": "active"}, "typed": {}})
    try:
        lines = [r for batch in source.read(Partition("pg", "line", 0, 1)) for r in batch.records]
        typed = [r for batch in source.read(Partition("pg", "typed", 0, 1)) for r in batch.records]
        assert len(lines) == 2700 - 3 * 128 and len(typed) == 30
        keys = [source.key_of("line", record) for record in lines]
        assert keys[0] == ["O'Brien", 1]
        assert source.missing_keys("line", keys[:1000]) == []
        typed_keys = [source.key_of("typed", record) for record in typed]
        assert typed_keys[0][:3] == ["c1", {"$datetime": "2024-02-29T12:00:01.000001"}, {"$decimal": "1.125"}]
        assert source.missing_keys("typed", typed_keys) == []
        with psycopg.connect(pg_database, autocommit=True) as connection:
            connection.execute("DELETE FROM line WHERE n IN (1, 900) AND region = 'south'")
            connection.execute("UPDATE line SET active = false WHERE region = 'north' AND n = 2")
            connection.execute("DELETE FROM typed WHERE code IN ('c2', 'c30')")
        absent = [["south", 0], ["nowhere", 1], ["north", 7]]  # never there, or filtered out
        gone = source.missing_keys("line", keys + absent)
        assert gone == [["north", 2], ["south", 1], ["south", 900], *absent]  # in the order given
        gone_typed = source.missing_keys("typed", typed_keys)
        assert [key[0] for key in gone_typed] == ["c2", "c30"]  # CHAR(4) 'c2  ' matched as 'c2'
        c2 = next(record for record in typed if record["code"] == "c2")
        assert gone_typed[0] == source.key_of("typed", c2) == [
            "c2", {"$datetime": "2024-02-29T12:00:02.000001"}, {"$decimal": "2.250"},
            {"$uuid": str(uuid.UUID(c2["tag"].hex))}, {"$bytes": "AAI="},
        ]
        assert c2["amount"] == Decimal("2.250") and c2["at"] == dt.datetime(2024, 2, 29, 12, 0, 2, 1)
    finally:
        source.close()
