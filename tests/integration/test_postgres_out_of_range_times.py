"""A PostgreSQL source's dates and timestamps that no Python type holds (`infinity`, `-infinity`,
a year past 9999, a BC date) reject their records with a reason; the read goes on from the last
row it delivered, and the run's verdict counts them like any reject."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import psycopg
import pytest

from etl.sources.base import BatchLimits
from etl.sources.postgres import Config, PostgresSource
from tests.integration.run_helpers import run_cli, saved_report
from tests.jobfiles import REPORT, RUN_FILES, postgres_target, write_job_file

pytestmark = pytest.mark.integration

MAPPING = """\
version: 1
source:
  key: [id]
targets:
  pg: postgres
outputs:
  - target: pg
    table: copied
    key: [id]
    columns:
      id: {from: id, type: int}
      seen: {from: seen, type: timestamptz}
      born: {from: born, type: date}
"""

OUT_OF_RANGE = {  # id -> (column, value): each in the middle of a page of 1,000 rows and a batch of 100
    1450: ("seen", "infinity"),
    1550: ("born", "-infinity"),
    2250: ("seen", "10000-01-01 00:00:00+00"),
    2350: ("born", "0044-03-15 BC"),
}
TYPES = {"seen": "timestamptz(6)", "born": "date"}
REASON = ("the source's date or time is infinite or outside years 1-9999, which no date or time type here "
          "can hold")


def test_out_of_range_times_are_rejected_with_a_reason_and_the_rest_is_proven(tmp_path: Path, pg_database):
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE src (id int PRIMARY KEY, seen timestamptz, born date)")
        conn.execute("INSERT INTO src SELECT i, timestamptz '2020-01-01 00:00+00' + i * interval '1 min',"
                     " date '2000-01-01' + i FROM generate_series(1, 3000) AS i")
        for key, (column, value) in OUT_OF_RANGE.items():
            conn.execute(f"UPDATE src SET {column} = %s WHERE id = %s", (value, key))
    job = write_job_file(tmp_path, f"""\
version: 1
name: out-of-range
sources:
  pg_in: {{type: postgres, dsn: "{pg_database}", page_rows: 1000, tables: {{src: {{mapping: m.yaml}}}}}}
targets:
  pg: {postgres_target(pg_database, schema="out", create="if_missing")}
batch: {{records: 100}}
max_rejects: 4
{RUN_FILES}{REPORT}validation: {{after_run: true}}
""", mappings={"m.yaml": MAPPING})
    ran = run_cli(job)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    report = saved_report(ran.stdout)
    (table,) = report["tables"]
    assert (table["extracted"], table["loaded"], table["rejected"]) == (3000, 2996, 4)
    dead = [json.loads(line) for line in (tmp_path / ".etl" / "dead_letter.jsonl").read_text().splitlines()]
    found = sorted((d["source_key"], d["field_path"], d["reason"], d["record"][d["field_path"]])
                   for d in dead)
    assert found == [(f"id={key}", column, f"`{column}` as {TYPES[column]}: {REASON}", value)
                     for key, (column, value) in sorted(OUT_OF_RANGE.items())]
    with psycopg.connect(pg_database) as conn:
        assert conn.execute("SELECT count(*), sum(id) FROM out.copied").fetchone() == (
            2996, 3000 * 3001 // 2 - sum(OUT_OF_RANGE))


def test_only_the_pages_that_need_it_are_read_with_the_slower_loaders(pg_database):
    """psycopg's own loaders read every page until one raises; the page read again after it loads
    `infinity` as the server's text."""
    config = Config(type="postgres", dsn=pg_database, tables={"src": {"mapping": "m.yaml"}})
    source = PostgresSource("pg_in", config, BatchLimits())
    with psycopg.connect(pg_database) as conn:
        cursor = conn.cursor()
        source.tolerate_unloadable(cursor)
        row = cursor.execute("SELECT 'infinity'::timestamptz, '-infinity'::date, '10000-01-01'::timestamp,"
                             " '2024-02-29'::date").fetchone()
        assert row == ("infinity", "-infinity", "10000-01-01 00:00:00", dt.date(2024, 2, 29))
        assert [type(value).__name__ for value in row[:3]] == ["OutOfRangeTime"] * 3
        with pytest.raises(psycopg.DataError):
            conn.execute("SELECT 'infinity'::timestamptz").fetchone()


def test_a_data_error_of_the_server_stops_the_read_with_its_own_message(tmp_path: Path, pg_database):
    """Only the driver's refusal to load a value is read again; an error the server raises while
    a page is fetched (here a `where` dividing by zero at id 1500, in the second page) fails the
    run with the server's message, not with the aborted transaction a second read would meet."""
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE src (id int PRIMARY KEY, seen timestamptz, born date)")
        conn.execute("INSERT INTO src SELECT i, timestamptz '2020-01-01 00:00+00', date '2000-01-01'"
                     " FROM generate_series(1, 3000) AS i")
    job = write_job_file(tmp_path, f"""\
version: 1
name: server-data-error
sources:
  pg_in: {{type: postgres, dsn: "{pg_database}", page_rows: 1000,
           tables: {{src: {{mapping: m.yaml, where: "1 / (id - 1500) IS NOT NULL"}}}}}}
targets:
  pg: {postgres_target(pg_database, schema="out", create="if_missing")}
batch: {{records: 100}}
{RUN_FILES}{REPORT}""", mappings={"m.yaml": MAPPING})
    ran = run_cli(job)
    output = ran.stdout + ran.stderr
    assert ran.returncode == 3, output[-3000:]
    assert "division by zero" in output
    assert "current transaction is aborted" not in output
