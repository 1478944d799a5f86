"""The SQL Server and Oracle change SQL, run for real the way their other SQL is (test_dialect_sql.py).

Each statement is parsed by sqlglot in the source's dialect and run, transpiled, on PostgreSQL. A few
engine-only clauses sqlglot cannot parse are replaced first by PostgreSQL stand-ins that keep their
meaning, each named here, so the rest of the statement (joins, keyset pages, filters, binds) is still
parsed and run:

- SQL Server `CHANGETABLE(CHANGES t, @v)`: the net change per key after version @v, computed from a
  log table `t_ct_log` (key, version, operation) the test's triggers keep;
  `CHANGE_TRACKING_CURRENT_VERSION()`, `CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(..))` and
  `MIN_ACTIVE_ROWVERSION()` are PostgreSQL functions over the test's own state (the smallest
  rowversion an open transaction holds is set by the test, which knows which one is open);
- Oracle `AS OF SCN n` is dropped (the test writes nothing between taking the SCN and reading), and
  `t VERSIONS BETWEEN SCN a AND b` becomes the delete versions `t_versions` kept by a trigger;
  ORA_ROWSCN is a column a trigger sets from an SCN sequence; the current SCN is that sequence.
"""

from __future__ import annotations

import re
from decimal import Decimal

import psycopg
import pytest

from etl.errors import EtlError
from etl.sources import mssql, oracle
from etl.sources.base import BatchLimits, ChangeCapture
from tests.integration.test_dialect_sql import MSSQL_TYPES, ORACLE_TYPES, on_postgres

pytestmark = pytest.mark.integration

SCHEMA = """
CREATE TABLE visit (id int PRIMARY KEY, name varchar(40) NOT NULL, status varchar(10) NOT NULL);
INSERT INTO visit SELECT i, 'visit ' || i, 'open' FROM generate_series(1, 40) i;
"""

MSSQL_STATE = """
CREATE SEQUENCE rv_seq;
CREATE TABLE pinned_rowversion (rv bigint);
ALTER TABLE visit ADD COLUMN rv bytea;
CREATE FUNCTION set_rv() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW.rv := int8send(nextval('rv_seq')); RETURN NEW; END $$;
UPDATE visit SET rv = int8send(nextval('rv_seq'));
ALTER TABLE visit ALTER COLUMN rv SET NOT NULL;
CREATE TRIGGER visit_rv BEFORE INSERT OR UPDATE ON visit FOR EACH ROW EXECUTE FUNCTION set_rv();
CREATE FUNCTION min_active_rowversion() RETURNS bytea LANGUAGE sql AS
  $$ SELECT int8send(coalesce((SELECT min(rv) FROM pinned_rowversion),
                              (SELECT last_value + 1 FROM rv_seq))) $$;
CREATE SEQUENCE ct_version;
CREATE TABLE ct_state (min_valid bigint NOT NULL);
INSERT INTO ct_state VALUES (0);
CREATE TABLE visit_ct_log (id int NOT NULL, version bigint NOT NULL, op char(1) NOT NULL);
CREATE FUNCTION log_ct() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  IF TG_OP = 'DELETE' THEN INSERT INTO visit_ct_log VALUES (OLD.id, nextval('ct_version'), 'D'); RETURN OLD;
  END IF;
  INSERT INTO visit_ct_log VALUES (NEW.id, nextval('ct_version'), left(TG_OP, 1)); RETURN NEW; END $$;
CREATE TRIGGER visit_ct AFTER INSERT OR UPDATE OR DELETE ON visit FOR EACH ROW EXECUTE FUNCTION log_ct();
CREATE FUNCTION object_id(name text) RETURNS text LANGUAGE sql AS $$ SELECT name $$;
CREATE FUNCTION change_tracking_current_version() RETURNS bigint LANGUAGE sql AS
  $$ SELECT coalesce(max(version), 0) FROM visit_ct_log $$;
CREATE FUNCTION change_tracking_min_valid_version(object text) RETURNS bigint LANGUAGE sql AS
  $$ SELECT min_valid FROM ct_state $$;
"""

WRITTEN: list[str] = []
"""Statements as the sources wrote them, before the stand-ins replaced their engine-only clauses."""

NET_CHANGES = (
    "(SELECT id, MAX(version) AS SYS_CHANGE_VERSION,"
    " CASE WHEN MAX(CASE WHEN version = last_version THEN op END) = 'D' THEN 'D'"
    " WHEN MAX(CASE WHEN version = first_version THEN op END) = 'I' THEN 'I' ELSE 'U' END"
    " AS SYS_CHANGE_OPERATION FROM (SELECT id, version, op,"
    " MAX(version) OVER (PARTITION BY id) AS last_version,"
    " MIN(version) OVER (PARTITION BY id) AS first_version"
    " FROM [public].[{table}_ct_log] WHERE version > ?) AS log GROUP BY id)"
)


def mssql_rewrite(sql: str) -> str:
    WRITTEN.append(sql)
    return re.sub(
        r"CHANGETABLE\(CHANGES \[public\]\.\[(\w+)\], \?\)",
        lambda match: NET_CHANGES.format(table=match.group(1)),
        sql,
    )


ORACLE_STATE = """
CREATE SEQUENCE scn_seq START 100;
ALTER TABLE visit ADD COLUMN ora_rowscn bigint;
UPDATE visit SET ora_rowscn = nextval('scn_seq');
CREATE FUNCTION set_scn() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW.ora_rowscn := nextval('scn_seq'); RETURN NEW; END $$;
CREATE TRIGGER visit_scn BEFORE INSERT OR UPDATE ON visit FOR EACH ROW EXECUTE FUNCTION set_scn();
CREATE TABLE visit_versions (id int, versions_operation char(1), versions_startscn bigint);
CREATE FUNCTION log_delete() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO visit_versions VALUES (OLD.id, 'D', nextval('scn_seq')); RETURN OLD; END $$;
CREATE TRIGGER visit_deletes AFTER DELETE ON visit FOR EACH ROW EXECUTE FUNCTION log_delete();
CREATE VIEW dual AS SELECT 'X'::text AS dummy;
"""


def oracle_rewrite(sql: str) -> str:
    WRITTEN.append(sql)
    sql = re.sub(r" AS OF SCN \d+", "", sql)
    return re.sub(
        r'"public"\."(\w+)" VERSIONS BETWEEN SCN (\d+) AND (\d+)',
        r'(SELECT * FROM "public"."\1_versions" WHERE VERSIONS_STARTSCN BETWEEN \2 AND \3)',
        sql,
    )


def run(dsn: str, statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(statements)


@pytest.fixture
def visits(pg_database):
    run(pg_database, SCHEMA)
    return pg_database


def mssql_source(dsn: str, log: list[str], table: dict, records: int = 5):
    types = MSSQL_TYPES | {"BYTEA": ("TIMESTAMP", None, None)}
    config = mssql.Config(type="mssql", server="unused", consistent=False, page_rows=7,
                          tables={"visit": {"mapping": "m.yaml", **table}})
    return on_postgres(mssql.MssqlSource, types, "tsql", dsn, log, mssql_rewrite)(
        "s", config, BatchLimits(records=records))


def oracle_source(dsn: str, log: list[str], table: dict, records: int = 5):
    class Source(on_postgres(oracle.OracleSource, ORACLE_TYPES | {"INT8": ("NUMBER", None, None)},
                             "oracle", dsn, log, oracle_rewrite)):
        def consistency_point(self, connection):
            with psycopg.connect(dsn, autocommit=True) as state:
                return state.execute("SELECT nextval('scn_seq')").fetchone()[0]

    config = oracle.Config(type="oracle", dsn="unused", user="u", password="unused", consistent=False,
                           page_rows=7, tables={"visit": {"mapping": "m.yaml", **table}})
    return Source("s", config, BatchLimits(records=records))


def caught_up(source, position):
    """id -> status of the records, the deleted ids, summed kinds, and the final position."""
    records, deletes, kinds = {}, [], {}
    for batch in source.changes("visit", position):
        for record in batch.records:
            records[int(record["id"])] = record["status"]
        deletes.extend(int(key["id"]) for key in batch.deletes)
        for kind, count in batch.kinds.items():
            kinds[kind] = kinds.get(kind, 0) + count
        position = batch.resume_after
    return records, sorted(deletes), kinds, position


def test_sql_server_rowversion_reads_below_min_active_rowversion(visits):
    run(visits, MSSQL_STATE)
    log: list[str] = []
    source = mssql_source(visits, log, {"changes": "rowversion", "where": "status <> 'gone'"})
    assert source.change_capture("visit") == ChangeCapture(
        "rowversion rv (below MIN_ACTIVE_ROWVERSION())", deletes=False)
    position = source.change_position("visit")
    assert position == {"method": "rowversion", "from": 41}
    open_transaction = psycopg.connect(visits)
    try:
        open_transaction.execute("UPDATE visit SET status = 'late' WHERE id = 2")  # takes rowversion 41
        run(visits, "INSERT INTO pinned_rowversion VALUES (41)")  # what SQL Server knows of it
        run(visits, "UPDATE visit SET status = 'seen' WHERE id IN (5, 6);"
                    " UPDATE visit SET status = 'gone' WHERE id = 7")
        records, deletes, kinds, position = caught_up(source, position)
        assert (records, deletes, kinds) == ({}, [], {})  # 42.. are above the open transaction's 41
        assert position == {"method": "rowversion", "from": 41}
        open_transaction.commit()
        run(visits, "DELETE FROM pinned_rowversion")
        records, deletes, kinds, position = caught_up(source, position)
        assert records == {2: "late", 5: "seen", 6: "seen"} and deletes == [7]
        assert kinds == {"upsert": 3, "delete": 1}
        assert position == {"method": "rowversion", "from": 45}
    finally:
        open_transaction.close()
        source.close()
    assert any("[rv] >= ? AND [rv] < ?" in sql for sql in log)
    pages = [sql for sql in log if sql.startswith("SELECT TOP (7) ")]
    assert pages and all("CASE WHEN (status <> 'gone') THEN 1 ELSE 0 END" in sql for sql in pages)


def test_sql_server_change_tracking_with_deletes_and_retention(visits):
    run(visits, MSSQL_STATE)
    log: list[str] = []
    source = mssql_source(visits, log, {"changes": "change_tracking", "where": "status <> 'gone'"})
    try:
        assert source.change_capture("visit") == ChangeCapture("change tracking (CHANGETABLE)", deletes=True)
        position = source.change_position("visit")
        assert position == {"method": "change_tracking", "version": 0}
        run(visits, "INSERT INTO visit VALUES (41, 'new', 'open');"
                    " UPDATE visit SET status = 'seen' WHERE id IN (3, 4, 5, 6, 7, 8, 9);"
                    " UPDATE visit SET status = 'gone' WHERE id = 10;"
                    " DELETE FROM visit WHERE id IN (11, 12);"
                    " INSERT INTO visit VALUES (42, 'brief', 'open'); DELETE FROM visit WHERE id = 42")
        batches = list(source.changes("visit", position))
        # Versions 1..13: 41 inserted, 3..9 updated, 10 leaves the filter, 11, 12 deleted, 42 in and out.
        assert [len(b.records) + len(b.deletes) for b in batches] == [5, 2, 5]  # 7-row pages, 5-row batches
        assert [b.resume_after for b in batches] == [  # before the last version of each, then the end
            {"method": "change_tracking", "version": 4},
            {"method": "change_tracking", "version": 6},
            {"method": "change_tracking", "version": 13},
        ]
        records, deletes, kinds, position = caught_up(source, {"method": "change_tracking", "version": 0})
        assert records == {41: "open", **{i: "seen" for i in range(3, 10)}}
        assert deletes == [10, 11, 12, 42] and kinds == {"insert": 1, "update": 7, "delete": 4}
        assert all(isinstance(key["id"], int) for b in batches for key in b.deletes)
        # Replaying from a middle position gives the rest again (and what shares its version).
        records, deletes, _, _ = caught_up(source, batches[0].resume_after)
        assert set(records) | set(deletes) == {6, 7, 8, 9, 10, 11, 12, 42}
        run(visits, "UPDATE ct_state SET min_valid = 3")
        with pytest.raises(EtlError, match="the changes after version 0 are no longer kept"):
            list(source.changes("visit", {"method": "change_tracking", "version": 0}))
    finally:
        source.close()
    assert any(
        "FROM CHANGETABLE(CHANGES [public].[visit], ?) AS ct"
        " LEFT JOIN (SELECT * FROM [public].[visit] WHERE (status <> 'gone')) AS t ON t.[id] = ct.[id]" in sql
        for sql in WRITTEN
    )
    assert any("CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(?))" in sql for sql in log)


def test_oracle_scn_reads_ora_rowscn_and_flashback_deletes(visits):
    run(visits, ORACLE_STATE)
    log: list[str] = []
    source = oracle_source(visits, log, {"changes": "scn", "where": "status <> 'gone'"})
    try:
        assert source.change_capture("visit") == ChangeCapture(
            "scn (ORA_ROWSCN; deletes by flashback version query)", deletes=True)
        position = source.change_position("visit")
        assert position == {"method": "scn", "from": 141}  # SCNs 100..139 wrote the rows, 140 is now
        run(visits, "UPDATE visit SET status = 'seen' WHERE id IN (1, 2, 3, 4, 5, 6);"
                    " UPDATE visit SET status = 'gone' WHERE id = 7; DELETE FROM visit WHERE id IN (8, 9);"
                    " INSERT INTO visit VALUES (9, 'again', 'open')")
        records, deletes, kinds, position = caught_up(source, position)
        assert records == {**{i: "seen" for i in range(1, 7)}, 9: "open"} and deletes == [7, 8]
        assert kinds == {"upsert": 7, "delete": 2}
        assert position == {"method": "scn", "from": 152}
        records, deletes, kinds, position = caught_up(source, position)
        assert (records, deletes) == ({}, []) and position == {"method": "scn", "from": 153}
    finally:
        source.close()
    assert any('ORA_ROWSCN >= :p0' in sql and "FETCH FIRST 7 ROWS ONLY" in sql for sql in log)
    assert any("v.VERSIONS_OPERATION = 'D'" in sql for sql in log)
    assert any('FROM "public"."visit" VERSIONS BETWEEN SCN 141 AND 151 v' in sql for sql in WRITTEN)
    assert any('"public"."visit" AS OF SCN 151 WHERE' in sql for sql in WRITTEN)


@pytest.mark.parametrize("make", [mssql_source, oracle_source], ids=["tsql", "oracle"])
def test_missing_keys_in_each_dialect(visits, make):
    run(visits, MSSQL_STATE if make is mssql_source else ORACLE_STATE)
    log: list[str] = []
    source = make(visits, log, {"where": "status <> 'gone'"})
    try:
        number = Decimal if make is oracle_source else int  # NUMBER ids come as Decimal
        keys = [source.key_of("visit", {"id": number(i)}) for i in range(1, 41)]
        run(visits, "DELETE FROM visit WHERE id IN (3, 33); UPDATE visit SET status = 'gone' WHERE id = 4")
        missing = source.missing_keys("visit", [*keys, source.key_of("visit", {"id": number(99)})])
        assert missing == [keys[2], keys[3], keys[32], source.key_of("visit", {"id": number(99)})]
    finally:
        source.close()
    assert any("NOT EXISTS" in sql for sql in log)
