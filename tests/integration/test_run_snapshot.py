"""A PostgreSQL source's partitions all read the snapshot exported at plan time: rows inserted,
deleted or changed after planning and before reading are not seen, and no partition falls back to
a snapshot of its own."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from etl.engine import RunOptions, run_job
from etl.job import load_job
from tests.integration.chinook import load_chinook
from tests.jobfiles import REPORT, RUN_FILES, postgres_target, write_job_file

pytestmark = pytest.mark.integration

MAPPING = """\
version: 1
source:
  key: [invoice_line_id]
  ignore: [invoice_id]
targets:
  pg: postgres
outputs:
  - target: pg
    table: lines
    key: [invoice_line_id]
    columns:
      invoice_line_id: {from: invoice_line_id, type: int}
      track_id: {from: track_id, type: int}
      unit_price: {from: unit_price, type: "decimal(10,2)", required: true}
      quantity: {from: quantity, type: int}
"""


def write_job(tmp_path: Path, pg_database: str) -> Path:
    return write_job_file(tmp_path, f"""\
version: 1
name: snapshot
sources:
  chinook:
    type: postgres
    dsn: "{pg_database}"
    tables:
      invoice_line: {{mapping: lines.yaml, partitions: 4}}
targets:
  pg: {postgres_target(pg_database, schema="migrated", create="if_missing")}
batch: {{records: 100}}
parallelism: 2
{RUN_FILES}validation: {{after_run: false}}
{REPORT}""", name="snapshot.yaml", mappings={"lines.yaml": MAPPING})


def test_partitions_read_the_plan_time_snapshot(tmp_path, pg_database, caplog):
    load_chinook(pg_database)
    job_path = write_job(tmp_path, pg_database)
    with psycopg.connect(pg_database, autocommit=True) as db:
        db.execute("CREATE SCHEMA migrated")
        before = db.execute("SELECT count(*), min(invoice_line_id), max(invoice_line_id),"
                            " sum(unit_price * quantity), sum(track_id) FROM invoice_line").fetchone()
    assert before == (2240, 1, 2240, Decimal("2328.60"), 3_847_725)

    def change_the_source(plan) -> None:
        """After the plan (and its snapshot), before any partition reads."""
        assert [len(t.partitions) for t in plan.tables] == [4]
        with psycopg.connect(pg_database, autocommit=True) as db:
            db.execute("DELETE FROM invoice_line WHERE invoice_line_id <= 50 OR invoice_line_id > 2200")
            db.execute("UPDATE invoice_line SET unit_price = 999.99"
                       " WHERE invoice_line_id BETWEEN 1000 AND 1010")
            db.execute("INSERT INTO invoice_line SELECT invoice_line_id + 10000, invoice_id, track_id,"
                       " unit_price, quantity FROM invoice_line WHERE invoice_line_id <= 300")

    with caplog.at_level(logging.WARNING):
        report = run_job(load_job(job_path), RunOptions(on_plan=change_the_source))
    assert report.status == "unproven", (report.message, report.hint)  # loaded; after_run is false
    table = report.tables[0]
    assert (table.extracted, table.loaded, table.rejected, table.filtered) == (2240, 2240, 0, 0)
    assert table.partitions_done == table.partitions == 4
    assert not [m for m in caplog.messages if "snapshot" in m]
    assert table.warnings == {}
    with psycopg.connect(pg_database, autocommit=True) as db:
        after = db.execute("SELECT count(*), min(invoice_line_id), max(invoice_line_id),"
                           " sum(unit_price * quantity), sum(track_id) FROM migrated.lines").fetchone()
        assert after == before
        assert db.execute("SELECT count(*) FROM invoice_line").fetchone()[0] == 2240 - 50 - 40 + 250


class PlannedOnly(Exception):
    """Ends a run right after its plan was stored."""


def test_a_run_resumed_on_a_stored_plan_reports_each_snapshot_fallback(tmp_path, pg_database):
    """The stored plan's snapshot ended with the run that made it: each of the 4 partitions of
    the next run reads its own snapshot, and the report counts that per table."""
    load_chinook(pg_database)
    job_path = write_job(tmp_path, pg_database)
    with psycopg.connect(pg_database, autocommit=True) as db:
        db.execute("CREATE SCHEMA migrated")

    def stop(plan) -> None:
        raise PlannedOnly

    with pytest.raises(PlannedOnly):
        run_job(load_job(job_path), RunOptions(on_plan=stop))
    report = run_job(load_job(job_path))
    assert report.status == "unproven", (report.message, report.hint)  # loaded; after_run is false
    table = report.tables[0]
    assert (table.extracted, table.loaded, table.partitions_done) == (2240, 2240, 4)
    fallback = "snapshot: exported snapshot gone, partition used its own"
    assert table.warnings == {fallback: 4}
    saved = json.loads(Path(report.files[0]).read_text())
    assert saved["tables"][0]["warnings"] == {fallback: 4}
    markdown = Path(report.files[1]).read_text()
    assert f"| chinook.invoice_line | {fallback} | 4 |" in markdown.splitlines()


def test_validation_reads_every_partition_in_the_snapshot_it_planned(tmp_path, pg_database, caplog):
    """Validation plans the source again and keeps that plan's snapshot open until both of its
    passes have read every partition: no partition falls back to a snapshot of its own (which it
    did once per partition on every run, its planning source closed before the reads)."""
    load_chinook(pg_database)
    job_path = write_job(tmp_path, pg_database)
    with psycopg.connect(pg_database, autocommit=True) as db:
        db.execute("CREATE SCHEMA migrated")
    with caplog.at_level(logging.WARNING):
        report = run_job(load_job(job_path), RunOptions(validate=True))
    assert report.status == "succeeded", (report.message, report.hint)
    assert [(c.table, c.rows_source, c.rows_target, c.ok) for c in report.validation] == [
        ("lines", 2240, 2240, True)]
    assert [m for m in caplog.messages if "snapshot" in m] == []
