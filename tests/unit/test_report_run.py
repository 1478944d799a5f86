"""The run report: JSON and Markdown, exit codes by status, nothing secret in either."""

from __future__ import annotations

import json

import pytest

from etl.errors import RuntimeFailure, ValidationDifferences
from etl.redact import register_secret
from etl.report.markdown import render_markdown
from etl.report.run_report import RunReport, TableCheck, TableReport


def report(**changes) -> RunReport:
    base = RunReport(
        job="demo", mode="run", status="succeeded", started_at="2026-01-02T03:04:05+00:00",
        finished_at="2026-01-02T03:04:15+00:00", seconds=10.0,
        tables=[
            TableReport("mongo.customers", 2, 2, 59, 57, 1, 1, extracted_this_run=59, seconds=2.0,
                        rows={"pg.customers": 57, "dynamo.chinook_demo": 466},
                        top_reasons=[("value is not a number", 1)]),
            TableReport("mongo.orders", 1, 1, 100, 100, 0, 0, extracted_this_run=40, seconds=4.0,
                        rows={"pg.orders": 100}),
        ],
        dead_letters="/data/.etl/dead_letter.jsonl", state="/data/.etl/state.sqlite",
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


@pytest.mark.parametrize("status, code", [("succeeded", 0), ("nothing to do", 0), ("differences", 1),
                                          ("stopped", 3), ("failed", 3)])
def test_exit_code_follows_status(status, code):
    assert report(status=status).exit_code == code


def test_raise_for_status_raises_the_matching_error():
    assert report().raise_for_status().ok
    with pytest.raises(ValidationDifferences):
        report(status="differences", message="differences in pg.customers").raise_for_status()
    with pytest.raises(RuntimeFailure, match="stopped by SIGTERM"):
        report(status="stopped", message="stopped by SIGTERM").raise_for_status()


def test_json_has_per_table_figures_rate_totals_and_locations():
    data = json.loads(report().to_json())
    assert data["exit_code"] == 0
    first = data["tables"][0]
    assert (first["extracted"], first["loaded"], first["rejected"], first["filtered"]) == (59, 57, 1, 1)
    assert first["rows_per_second"] == 29.5
    assert first["top_reasons"] == [{"reason": "value is not a number", "count": 1}]
    assert data["dead_letters"] == "/data/.etl/dead_letter.jsonl"
    totals = report().totals()
    assert (totals.extracted, totals.loaded, totals.rejected, totals.filtered) == (159, 157, 1, 1)
    assert totals.rows == {"pg.customers": 57, "dynamo.chinook_demo": 466, "pg.orders": 100}


def test_markdown_lists_tables_totals_reasons_validation_and_locations():
    checks = [TableCheck("pg", "customers", True, 57, 57, 0, 0, 0),
              TableCheck("dynamo", "chinook_demo", False, 466, 466, 0, 0, 1,
                         first_keys=["changed: pk='CUSTOMER#7', sk='PROFILE' (city)"],
                         differences_file="/data/.etl/reports/differences-dynamo.chinook_demo.json")]
    text = render_markdown(report(validation=checks, status="differences",
                                  message="validation found differences in dynamo.chinook_demo"))
    assert "# demo: run differences" in text
    assert "| mongo.customers | 59 | 57 | 1 | 1 | 2/2 | 2.0 s | 30 |" in text
    assert "| **total** | **159** | **157** | **1** | **1** | **3/3** | **10.0 s** | **10** |" in text
    assert "| mongo.customers | value is not a number | 1 |" in text
    assert "| pg.customers | equal | 57 | 57 | 0 | 0 | 0 |" in text
    assert "| dynamo.chinook_demo | DIFFERENT | 466 | 466 | 0 | 0 | 1 |" in text
    assert "First differences in dynamo.chinook_demo: changed: pk='CUSTOMER#7', sk='PROFILE' (city)" in text
    assert "dead letters: /data/.etl/dead_letter.jsonl; state: /data/.etl/state.sqlite" in text


def test_secrets_never_reach_a_saved_report(tmp_path):
    register_secret("s3cr3t-Pa55word")
    failed = report(status="failed", message="cannot connect to host=db password=s3cr3t-Pa55word dbname=x")
    json_path, md_path = failed.save(tmp_path)
    for path in (json_path, md_path):
        text = path.read_text()
        assert "s3cr3t-Pa55word" not in text
        assert "password=***" in text
    assert json_path.name == "demo-run-20260102T030405.json"


def test_source_warnings_are_listed_per_table_in_json_and_markdown():
    fallback = "snapshot: exported snapshot gone, partition used its own"
    tables = report().tables
    tables[1].warnings = {fallback: 4, "precision: float8 value rounded": 2}
    data = json.loads(report(tables=tables).to_json())
    assert data["tables"][0]["warnings"] == {}
    assert data["tables"][1]["warnings"] == {fallback: 4, "precision: float8 value rounded": 2}
    lines = render_markdown(report(tables=tables)).splitlines()
    start = lines.index("## Source warnings")
    assert lines[start:start + 6] == [
        "## Source warnings", "", "| table | warning | count |", "|---|---|---:|",
        f"| mongo.orders | {fallback} | 4 |", "| mongo.orders | precision: float8 value rounded | 2 |",
    ]
    assert "## Source warnings" not in render_markdown(report())


def test_validation_shows_duplicate_keys_and_unresolved_buckets(tmp_path):
    """etl.checksum counts both (and fails the table on them); the report must say which it was."""
    from datetime import UTC, datetime

    from etl.checksum import JobValidation, TableValidation
    from etl.engine.validation import checks_of

    validation = JobValidation([
        TableValidation("customers", "pg", 59, 61, 64, mismatched_buckets=[3, 9, 17], duplicates=2,
                        unresolved_buckets=1),
        TableValidation("orders", "pg", 100, 100, 64),
    ])
    checks = checks_of(validation, tmp_path, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert [(c.table, c.ok, c.missing, c.extra, c.changed, c.duplicates, c.unresolved_buckets)
            for c in checks] == [("customers", False, 0, 0, 0, 2, 1), ("orders", True, 0, 0, 0, 0, 0)]
    assert checks[0].differences_file == str(tmp_path / "differences-pg.customers-20260102T030405.json")
    done = report(validation=checks, status="differences")
    data = json.loads(done.to_json())
    assert [(v["duplicates"], v["unresolved_buckets"]) for v in data["validation"]] == [(2, 1), (0, 0)]
    lines = render_markdown(done).splitlines()
    assert ("| target table | result | rows source | rows target | missing | extra | changed | duplicates"
            " | unresolved buckets | rejected |") in lines
    assert "| pg.customers | DIFFERENT | 59 | 61 | 0 | 0 | 0 | 2 | 1 | 0 |" in lines
    assert "| pg.orders | equal | 100 | 100 | 0 | 0 | 0 | 0 | 0 | 0 |" in lines
