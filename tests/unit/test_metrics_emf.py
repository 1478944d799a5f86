"""CloudWatch Embedded Metric Format lines of a run report: exact documents."""

from __future__ import annotations

import json

from etl.report.metrics import emf_lines
from etl.report.run_report import RunReport, TableCheck, TableReport


def report() -> RunReport:
    return RunReport(
        job="nightly", mode="run", status="differences", started_at="2026-11-26T10:00:00+00:00",
        finished_at="2026-11-26T10:00:20+00:00", seconds=20.0, shard="1/4",
        tables=[TableReport("mongo.patients", 2, 2, 1000, 990, 6, 4, extracted_this_run=800, seconds=8.0),
                TableReport("pg.visits", 1, 1, 50, 50, 0, 0, extracted_this_run=50, seconds=2.5)],
        validation=[TableCheck("pg", "patients", False, 990, 989, missing=2, extra=1, changed=3, duplicates=0,
                               unresolved_buckets=1),
                    TableCheck("dynamo", "items", True, 50, 50, 0, 0, 0)])


def test_one_document_for_the_job_one_per_source_table_and_one_per_target_table():
    lines = emf_lines(report(), "ETL/Migrations")
    assert len(lines) == 5
    assert lines[1] == (
        '{"_aws":{"Timestamp":1795687220000,"CloudWatchMetrics":[{"Namespace":"ETL/Migrations",'
        '"Dimensions":[["Job","Table"]],"Metrics":[{"Name":"RecordsExtracted","Unit":"Count"},'
        '{"Name":"RecordsLoaded","Unit":"Count"},{"Name":"RecordsRejected","Unit":"Count"},'
        '{"Name":"RecordsFiltered","Unit":"Count"},{"Name":"RecordsExtractedThisRun","Unit":"Count"},'
        '{"Name":"RowsPerSecond","Unit":"Count/Second"},{"Name":"DurationSeconds","Unit":"Seconds"}]}]},'
        '"Job":"nightly","Status":"differences","Mode":"run","Shard":"1/4","Table":"mongo.patients",'
        '"RecordsExtracted":1000,"RecordsLoaded":990,"RecordsRejected":6,"RecordsFiltered":4,'
        '"RecordsExtractedThisRun":800,"RowsPerSecond":100.0,"DurationSeconds":8.0}')
    job, _, visits, patients, items = (json.loads(line) for line in lines)
    assert job["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Job"]]
    assert [m["Name"] for m in job["_aws"]["CloudWatchMetrics"][0]["Metrics"]] == [
        "RecordsExtracted", "RecordsLoaded", "RecordsRejected", "RecordsFiltered", "RecordsExtractedThisRun",
        "RowsPerSecond", "ValidationDifferences", "DurationSeconds", "ExitCode"]
    assert {k: v for k, v in job.items() if k != "_aws"} == {
        "Job": "nightly", "Status": "differences", "Mode": "run", "Shard": "1/4", "RecordsExtracted": 1050,
        "RecordsLoaded": 1040, "RecordsRejected": 6, "RecordsFiltered": 4, "RecordsExtractedThisRun": 850,
        "RowsPerSecond": 42.5, "ValidationDifferences": 7, "DurationSeconds": 20.0, "ExitCode": 1}
    assert (visits["Table"], visits["RowsPerSecond"], visits["DurationSeconds"]) == ("pg.visits", 20.0, 2.5)
    assert patients["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Job", "TargetTable"]]
    assert {k: v for k, v in patients.items() if k != "_aws"} == {
        "Job": "nightly", "Status": "differences", "Mode": "run", "Shard": "1/4",
        "TargetTable": "pg.patients", "RowsCompared": 990, "ValidationDifferences": 7}
    assert (items["TargetTable"], items["ValidationDifferences"]) == ("dynamo.items", 0)


def test_a_report_without_validation_has_no_target_documents_and_zero_differences():
    plain = report()
    plain.validation, plain.shard, plain.status = None, None, "unproven"
    lines = [json.loads(line) for line in emf_lines(plain, "etl")]
    assert [line.get("Table", line.get("TargetTable")) for line in lines] == [
        None, "mongo.patients", "pg.visits"]
    assert (lines[0]["ValidationDifferences"], lines[0]["ExitCode"], "Shard" in lines[0]) == (0, 4, False)
