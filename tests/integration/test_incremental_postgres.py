"""The cut-over runbook (docs/cutover.md) with a PostgreSQL source, into PostgreSQL (a parent table and
a child table exploded from a jsonb array) and a DynamoDB single-table design (a profile item and one
item per array element): a full load, then rounds of inserts, updates that shrink and grow arrays,
and deletes, each applied by `--incremental` and validated equal. By watermark (deletes found by key
lookups, a transaction committing late with an older watermark) on the shared server, and by logical
decoding in a cluster of the test's own (wal_level = logical)."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.integration.run_helpers import dynamo_count, pg_scalar, run_cli, saved_report
from tests.jobfiles import REPORT, RUN_FILES, dynamodb_target, postgres_target, write_job_file

pytestmark = pytest.mark.integration

MAPPING = """\
version: 1
source:
  key: [id]
targets:
  pg: postgres
  dynamo: dynamodb
outputs:
  - target: pg
    table: patients
    key: [patient_id]
    columns:
      patient_id: {{from: id, type: int}}
      name: name
  - target: pg
    table: visits
    explode: visits[]
    parent: patients
    key: [visit_id]
    columns:
      visit_id: {{from: visit_id, type: int}}
      ward: ward
  - target: dynamo
    table: {table}
    key: [pk, sk]
    columns:
      pk: {{template: "PATIENT#{{id}}"}}
      sk: {{const: PROFILE}}
      name: name
  - target: dynamo
    table: {table}
    explode: visits[]
    key: [pk, sk]
    columns:
      pk: {{template: "PATIENT#{{$root.id}}"}}
      sk: {{template: "VISIT#{{visit_id}}"}}
      ward: ward
"""


def visits(*ids: int) -> str:
    return json.dumps([{"visit_id": i, "ward": "AB"[i % 2]} for i in ids])


def write_job(tmp_path: Path, source_dsn: str, target_dsn: str, table: str, changes: str) -> Path:
    return write_job_file(tmp_path, f"""\
version: 1
name: pgcut
incremental: true
sources:
  clinic:
    type: postgres
    dsn: "{source_dsn}"
    tables:
      src.patient: {{mapping: patient.yaml, partitions: 2, {changes}}}
targets:
  pg: {postgres_target(target_dsn, schema="migrated", create="if_missing")}
  dynamo: {dynamodb_target()}
batch: {{records: 4}}
{RUN_FILES}validation: {{after_run: true, consistent_reads: true}}
{REPORT}""", name="pgcut.yaml", mappings={"patient.yaml": MAPPING.format(table=table)})


def create_source(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("CREATE SCHEMA src")
        db.execute("CREATE SCHEMA migrated")
        db.execute("CREATE TABLE src.patient (id int PRIMARY KEY, name text NOT NULL, visits jsonb NOT NULL,"
                   " updated_at timestamptz NOT NULL DEFAULT clock_timestamp())")
        for n in range(1, 21):
            db.execute("INSERT INTO src.patient (id, name, visits) VALUES (%s, %s, %s)",
                       (n, f"patient {n}", visits(*range(n * 10, n * 10 + n % 4))))


def execute(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn) as db:  # one transaction
        for statement in statements:
            db.execute(statement)


def assert_equal(source_dsn: str, target_dsn: str, dynamodb_client, table: str) -> None:
    people = pg_scalar(source_dsn, "SELECT count(*) FROM src.patient")
    elements = pg_scalar(source_dsn, "SELECT coalesce(sum(jsonb_array_length(visits)), 0) FROM src.patient")
    assert pg_scalar(target_dsn, "SELECT count(*) FROM migrated.patients") == people
    assert pg_scalar(target_dsn, "SELECT count(*) FROM migrated.visits") == elements
    assert dynamo_count(dynamodb_client, table) == people + elements
    names = "SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM src.patient"
    migrated = ("SELECT string_agg(patient_id || ':' || name, ',' ORDER BY patient_id)"
                " FROM migrated.patients")
    assert pg_scalar(target_dsn, migrated) == pg_scalar(source_dsn, names)


def one_round(source_dsn: str) -> None:
    """An insert, an update that shrinks an array, one that grows it, a rename, two deletes."""
    execute(source_dsn,
            f"INSERT INTO src.patient (id, name, visits) VALUES (30, 'patient 30', '{visits(300, 301)}')",
            f"UPDATE src.patient SET visits = '{visits(30)}', updated_at = clock_timestamp() WHERE id = 3",
            f"UPDATE src.patient SET visits = '{visits(50, 51, 52, 53)}', updated_at = clock_timestamp()"
            " WHERE id = 5",
            "UPDATE src.patient SET name = 'renamed', updated_at = clock_timestamp() WHERE id = 6",
            "DELETE FROM src.patient WHERE id IN (7, 11)")


def test_watermark_catch_ups_with_deletes_and_a_late_commit(tmp_path, pg_database, dynamodb_client,
                                                          dynamodb_table_prefix):
    table = f"{dynamodb_table_prefix}_pgw"
    create_source(pg_database)
    job = write_job(tmp_path, pg_database, pg_database, table, "changes: watermark, watermark: updated_at")
    full = run_cli(job)
    assert full.returncode == 0, full.stdout + full.stderr
    assert_equal(pg_database, pg_database, dynamodb_client, table)

    one_round(pg_database)
    first = run_cli(job, "--incremental")
    assert first.returncode == 0, first.stdout + first.stderr
    assert_equal(pg_database, pg_database, dynamodb_client, table)
    (line,) = saved_report(first.stdout)["tables"]
    assert line["changes"]["method"] == "watermark updated_at (overlap 600 s)"
    assert line["changes"]["found_deleted"] == 2  # 7 and 11: found by asking the source about every key
    assert line["changes"]["applied"]["upsert"] >= 4  # 30, 3, 5, 6 (and rows of the overlap window again)

    # a transaction that writes its watermark now but commits after the next catch-up
    late = psycopg.connect(pg_database)
    late.execute("UPDATE src.patient SET name = 'late', updated_at = clock_timestamp() WHERE id = 8")
    try:
        during = run_cli(job, "--incremental")
        # the catch-up cannot see the uncommitted row; the target still says 'patient 8'
        name = "SELECT name FROM migrated.patients WHERE patient_id = 8"
        assert pg_scalar(pg_database, name) == "patient 8"
        assert during.returncode == 0, during.stdout + during.stderr
    finally:
        late.commit()
        late.close()
    after = run_cli(job, "--incremental")
    assert after.returncode == 0, after.stdout + after.stderr
    assert pg_scalar(pg_database, "SELECT name FROM migrated.patients WHERE patient_id = 8") == "late"
    assert_equal(pg_database, pg_database, dynamodb_client, table)


def test_logical_decoding_catch_ups_with_deletes(tmp_path, logical_dsn, dynamodb_client,
                                                 dynamodb_table_prefix):
    table = f"{dynamodb_table_prefix}_pgl"
    database = f"cut_{dynamodb_table_prefix[-10:]}"
    with psycopg.connect(logical_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    dsn = logical_dsn.replace("dbname=postgres", f"dbname={database}")
    try:
        create_source(dsn)
        job = write_job(tmp_path, dsn, dsn, table, "changes: logical")
        full = run_cli(job)
        assert full.returncode == 0, full.stdout + full.stderr
        assert_equal(dsn, dsn, dynamodb_client, table)
        one_round(dsn)
        first = run_cli(job, "--incremental")
        assert first.returncode == 0, first.stdout + first.stderr
        assert_equal(dsn, dsn, dynamodb_client, table)
        changes = saved_report(first.stdout)["tables"][0]["changes"]
        assert changes["method"].startswith("logical decoding")
        assert changes["applied"] == {"delete": 2, "insert": 1, "update": 3}
        assert changes["found_deleted"] == 0
        execute(dsn, "DELETE FROM src.patient WHERE id > 15",
                "UPDATE src.patient SET visits = '[]' WHERE id = 2")
        second = run_cli(job, "--incremental")
        assert second.returncode == 0, second.stdout + second.stderr
        assert_equal(dsn, dsn, dynamodb_client, table)
    finally:
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                       " WHERE database = current_database()")
        with psycopg.connect(logical_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
