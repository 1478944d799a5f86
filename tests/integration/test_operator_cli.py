"""What a user trips on at the command line, on a PostgreSQL source: `--only` with a misspelt
table, `--plan`'s partitions as key ranges, and a stopped run's hint keeping `--only`."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.integration.run_helpers import run_cli, saved_report

pytestmark = pytest.mark.integration

MAPPING = """\
version: 1
source:
  key: [id]
targets:
  pg: postgres
outputs:
  - target: pg
    table: {table}_out
    key: [id]
    columns:
      id: {{from: id, type: int}}
      name: name
"""


def source_job(folder: Path, dsn: str, *, patients: int = 3000, visits: int = 500, batch: int = 100,
               extra: str = "") -> Path:
    """Two tables (patients 1..N in 3 partitions, visits in 2) copied within one database."""
    with psycopg.connect(dsn, autocommit=True) as db:
        for table, rows in (("patients", patients), ("visits", visits)):
            db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text NOT NULL)")
            db.execute(f"INSERT INTO {table} SELECT g, 'n' || g FROM generate_series(1, {rows}) g")
    for table in ("patients", "visits"):
        (folder / f"{table}.yaml").write_text(MAPPING.format(table=table))
    path = folder / "ops.yaml"
    path.write_text(f"""\
version: 1
name: ops
sources:
  src:
    type: postgres
    dsn: "{dsn}"
    tables:
      patients: {{mapping: patients.yaml, partitions: 3}}
      visits: {{mapping: visits.yaml, partitions: 2}}
targets:
  pg: {{type: postgres, dsn: "{dsn}", schema: public, create: if_missing}}
batch: {{records: {batch}}}
parallelism: 2
state: {{type: sqlite, path: .etl/state.sqlite}}
dead_letter: {{path: .etl/dead_letter.jsonl}}
max_rejects: 0
validation: {{after_run: true}}
report: {{dir: .etl/reports}}
{extra}""")
    return path


@pytest.mark.parametrize("mode", [(), ("--plan",), ("--validate-only",), ("--shard", "0/2")])
def test_only_with_a_misspelt_table_is_a_bad_option_with_the_nearest_name(tmp_path, pg_database, mode):
    job = source_job(tmp_path, pg_database)
    result = run_cli(job, "--only", "patiens", *mode)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines()[-2:] == [
        "error: --only 'patiens': no such source table in the job; did you mean 'patients'?",
        "  hint: the job's tables are src.patients, src.visits",
    ]


def test_plan_prints_partitions_as_key_ranges_not_the_snapshot_they_read(tmp_path, pg_database):
    job = source_job(tmp_path, pg_database)
    result = run_cli(job, "--plan")
    assert result.returncode == 0, result.stdout + result.stderr
    partitions = [line for line in result.stdout.splitlines() if line.startswith("  partition ")]
    assert partitions == [
        "  partition 0/3: from (unbounded) to id=1001",
        "  partition 1/3: from id=1001 to id=2001",
        "  partition 2/3: from id=2001 to (unbounded)",
        "  partition 0/2: from (unbounded) to id=251",
        "  partition 1/2: from id=251 to (unbounded)",
    ]
    assert '"at"' not in result.stdout


def test_a_stopped_run_hints_the_command_with_its_only(tmp_path, pg_database):
    job = source_job(tmp_path, pg_database)
    # the run sends itself SIGTERM once its 3rd batch is checkpointed: an exact moment, not a timing
    stopped = run_cli(job, "--only", "patients", fault="term:batch:3")
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    report = saved_report(stopped.stdout)
    assert (report["status"], report["message"]) == ("stopped", "stopped by SIGTERM")
    assert report["hint"] == (f"every committed batch is checkpointed; run `python -m etl.run {job} --only "
                              "patients --resume` to continue")
    resumed = run_cli(job, "--only", "patients", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [(t["table"], t["extracted"]) for t in saved_report(resumed.stdout)["tables"]] == [
        ("src.patients", 3000)]
