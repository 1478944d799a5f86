"""A whole run into empty PostgreSQL tables issues no DELETE of children (every partition's sink is
told which child tables were empty as the run began, on worker threads and on worker processes); a
parent row PostgreSQL or the sink refuses is rejected with its children, in the dead letters and
the counts, and validation still proves the tables equal; a full refresh into the loaded tables
replaces the children again. DELETE statements are counted by a statement-level trigger."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from etl.sinks.deadletter import read_dead_letters
from tests.integration.dump_jobs import write_dump
from tests.integration.run_helpers import note_delete_statements, pg_scalar, run_cli, saved_report
from tests.integration.test_child_replay import MAPPING

pytestmark = pytest.mark.integration

TABLES = """\
CREATE TABLE patients (patient_id bigint PRIMARY KEY, name varchar(8));
CREATE TABLE visits (visit_id bigint PRIMARY KEY, patient_id bigint, ward text);
CREATE INDEX ON visits (patient_id);
"""
TOO_LONG, HOLDS_NUL = 5, 17
"""Patient 5's name is longer than varchar(8) (PostgreSQL refuses the row); patient 17's holds a NUL
character, which no PostgreSQL text can (the sink refuses the row before sending it)."""


def documents(shrunk: range = range(0), long_name: bool = True) -> list[dict]:
    """30 patients with 3 visits each; those in `shrunk` have only their first visit."""
    names = {TOO_LONG: "a name too long" if long_name else "p5", HOLDS_NUL: "p\x0017"}
    return [{"_id": i, "name": names.get(i, f"p{i}"),
             "visits": [{"visit_id": i * 10 + v, "ward": "AB"[v % 2]}
                        for v in range(1 if i in shrunk else 3)]}
            for i in range(1, 31)]


def job_file(folder: Path, dsn: str, executor: str, partitions: int, parallelism: int) -> Path:
    (folder / "m.yaml").write_text(MAPPING)
    job = folder / "job.yaml"
    job.write_text(f"""\
version: 1
name: first_load
sources:
  dump: {{type: mongodump, path: "{folder / 'dump'}", database: clinic,
         tables: {{patients: {{mapping: m.yaml, partitions: {partitions}}}}}}}
targets:
  pg: {{type: postgres, dsn: "{dsn}"}}
batch: {{records: 10}}
parallelism: {parallelism}
executor: {executor}
max_rejects: 2
state: {{type: sqlite, path: "{folder / 'state.sqlite'}"}}
dead_letter: {{path: "{folder / 'dead_letter.jsonl'}"}}
report: {{dir: "{folder / 'reports'}"}}
""")
    return job


@pytest.mark.parametrize(("executor", "partitions", "parallelism", "batches"), [
    ("{type: local}", 1, 1, 3),
    ("{type: local, processes: true}", 2, 2, 4),  # 15 documents per partition, 10 per batch
])
def test_a_first_load_deletes_no_children_and_rejects_a_refused_parent_with_them(
        tmp_path, pg_database, executor, partitions, parallelism, batches):
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(TABLES)
    note_delete_statements(pg_database, ["visits"])
    write_dump(tmp_path / "dump", "clinic", "patients", documents())
    job = job_file(tmp_path, pg_database, executor, partitions, parallelism)

    first = run_cli(job)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    report = saved_report(first.stdout)
    assert report["status"] == "succeeded"
    table = report["tables"][0]
    assert (table["extracted"], table["loaded"], table["rejected"]) == (30, 28, 2)
    # Only the batch in which PostgreSQL refused patient 5 deleted children: its direct COPY was
    # refused, so it went through staging, which does not tell a new key from an existing one.
    # Patient 17 was refused before sending: its batch's COPY took every row, and deleted nothing.
    assert pg_scalar(pg_database, "SELECT count(*) FROM delete_statements") == 1
    assert pg_scalar(pg_database, "SELECT count(*) FROM patients") == 28
    assert pg_scalar(pg_database, "SELECT count(*) FROM visits") == 28 * 3
    assert pg_scalar(pg_database, "SELECT count(*) FROM visits v WHERE NOT EXISTS"
                                  " (SELECT FROM patients p WHERE p.patient_id = v.patient_id)") == 0
    letters = sorted((letter["table"], letter["source_key"], letter["reason"])
                     for letter in read_dead_letters(tmp_path / "dead_letter.jsonl"))
    assert letters == sorted([
        ("patients", f"_id={TOO_LONG}",
         "PostgreSQL refused the row: 22001 value too long for type character varying(8)"),
        ("patients", f"_id={HOLDS_NUL}",
         "column 'name': PostgreSQL text cannot hold the NUL character U+0000"),
        *[("visits", f"_id={TOO_LONG}", "its parent row in patients was refused")] * 3,
        *[("visits", f"_id={HOLDS_NUL}", "its parent row in patients was refused")] * 3,
    ])

    # the source changes: patient 5's name now fits, patients 21-30 keep one visit each; a full
    # refresh loads into tables that hold rows, so every batch replaces its parents' children
    write_dump(tmp_path / "dump", "clinic", "patients", documents(shrunk=range(21, 31), long_name=False))
    again = run_cli(job, "--full-refresh")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    table = saved_report(again.stdout)["tables"][0]
    assert (table["extracted"], table["loaded"], table["rejected"]) == (30, 29, 1)
    assert pg_scalar(pg_database, "SELECT count(*) FROM delete_statements") == 1 + batches
    assert pg_scalar(pg_database, "SELECT count(*) FROM patients") == 29
    assert pg_scalar(pg_database, "SELECT count(*) FROM visits") == 19 * 3 + 10 * 1
    assert pg_scalar(pg_database, "SELECT array_agg(visit_id ORDER BY visit_id) FROM visits"
                                  " WHERE patient_id > 20") == [i * 10 for i in range(21, 31)]
