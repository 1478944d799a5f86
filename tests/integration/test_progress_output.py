"""Without a terminal the command writes JSON progress lines per table and, when the job file asks,
CloudWatch Embedded Metric Format lines: parsed from a real run's stderr."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.integration.run_helpers import run_cli, saved_report
from tests.integration.test_operator_cli import source_job

pytestmark = pytest.mark.integration

TIMED = {"rate_per_second", "elapsed_seconds"}


def stderr_json(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_progress_lines_and_emf_lines_of_a_run(tmp_path, pg_database):
    job = source_job(tmp_path, pg_database, extra="progress: {every_seconds: 3600}\n"
                                                  "metrics: {cloudwatch_emf: true, namespace: ETL/Test}\n")
    with psycopg.connect(pg_database, autocommit=True) as db:
        db.execute("ANALYZE patients")  # the totals are the catalogue's estimates
        db.execute("ANALYZE visits")
    result = run_cli(job)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = stderr_json(result.stderr)
    progress = [line for line in lines if line.get("event") == "progress"]
    # an hour between lines: none during this short load, then the last line of each table
    assert [{k: v for k, v in line.items() if k not in TIMED | {"time"}} for line in progress] == [
        {"level": "info", "logger": "etl.progress", "event": "progress", "table": "src.patients",
         "message": f"src.patients: 3,000 of about 3,000 records, 0 rejected, "
                    f"{progress[0]['rate_per_second']:,}/s, done",
         "records": 3000, "total": 3000, "rejected": 0, "eta_seconds": None, "done": True},
        {"level": "info", "logger": "etl.progress", "event": "progress", "table": "src.visits",
         "message": f"src.visits: 500 of about 500 records, 0 rejected, "
                    f"{progress[1]['rate_per_second']:,}/s, done",
         "records": 500, "total": 500, "rejected": 0, "eta_seconds": None, "done": True},
    ]
    assert all(line["rate_per_second"] > 0 and line["elapsed_seconds"] >= 0 for line in progress)
    # validation's last line per table and side: the rows each side read
    checked = [line for line in lines if line.get("event") == "validation progress"]
    assert sorted((line["side"], line["table"], line["rows"], line["done"]) for line in checked) == [
        ("source", "src.patients", 3000, True), ("source", "src.visits", 500, True),
        ("target", "pg.patients_out", 3000, True), ("target", "pg.visits_out", 500, True)]
    metrics = [line for line in lines if "_aws" in line]
    assert [(m["_aws"]["CloudWatchMetrics"][0]["Namespace"], m["_aws"]["CloudWatchMetrics"][0]["Dimensions"])
            for m in metrics] == [("ETL/Test", [["Job"]]), ("ETL/Test", [["Job", "Table"]]),
                                  ("ETL/Test", [["Job", "Table"]]), ("ETL/Test", [["Job", "TargetTable"]]),
                                  ("ETL/Test", [["Job", "TargetTable"]])]
    timed = {"DurationSeconds", "RowsPerSecond", "_aws"}
    assert [{k: v for k, v in m.items() if k not in timed} for m in metrics] == [
        {"Job": "ops", "Status": "succeeded", "Mode": "run", "RecordsExtracted": 3500, "RecordsLoaded": 3500,
         "RecordsRejected": 0, "RecordsFiltered": 0, "RecordsExtractedThisRun": 3500,
         "ValidationDifferences": 0, "ExitCode": 0},
        {"Job": "ops", "Status": "succeeded", "Mode": "run", "Table": "src.patients",
         "RecordsExtracted": 3000, "RecordsLoaded": 3000, "RecordsRejected": 0, "RecordsFiltered": 0,
         "RecordsExtractedThisRun": 3000},
        {"Job": "ops", "Status": "succeeded", "Mode": "run", "Table": "src.visits", "RecordsExtracted": 500,
         "RecordsLoaded": 500, "RecordsRejected": 0, "RecordsFiltered": 0, "RecordsExtractedThisRun": 500},
        {"Job": "ops", "Status": "succeeded", "Mode": "run", "TargetTable": "pg.patients_out",
         "RowsCompared": 3000, "ValidationDifferences": 0},
        {"Job": "ops", "Status": "succeeded", "Mode": "run", "TargetTable": "pg.visits_out",
         "RowsCompared": 500, "ValidationDifferences": 0},
    ]
    report = saved_report(result.stdout)
    assert metrics[0]["DurationSeconds"] == report["seconds"]


def test_a_line_per_committed_batch_when_every_batch_is_due(tmp_path, pg_database):
    """`every_seconds: 0`: each committed batch of 100 records writes a line."""
    job = source_job(tmp_path, pg_database, patients=600, visits=0, extra="progress: {every_seconds: 0}\n")
    result = run_cli(job, "--only", "patients")
    assert result.returncode == 0, result.stdout + result.stderr
    progress = [line for line in stderr_json(result.stderr) if line.get("event") == "progress"]
    assert [(line["records"], line["done"]) for line in progress] == [
        (100, False), (200, False), (300, False), (400, False), (500, False), (600, False), (600, True)]
    assert "_aws" not in result.stderr  # metrics are off unless the job file turns them on
