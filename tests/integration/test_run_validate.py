"""`--validate-only` on a migrated demo-like job: equal targets pass; a DynamoDB item changed by
hand and a PostgreSQL row deleted are found, by key, with exit code 1 and the full lists in files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.run_helpers import (
    chinook_documents,
    demo_mapping,
    pg_scalar,
    run_cli,
    saved_report,
    write_job,
)

pytestmark = pytest.mark.integration


def test_validate_only_names_the_changed_item_and_the_missing_row(tmp_path, mongo_db, pg_database,
                                                                 dynamodb_client, dynamodb_table_prefix):
    mongo_db.customers.insert_many(chinook_documents())
    table = f"{dynamodb_table_prefix}_chinook"
    job = write_job(tmp_path, name="validate", database=mongo_db.name, collection="customers",
                    mapping=demo_mapping(tmp_path, table), pg_dsn=pg_database)

    migrated = run_cli(job)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert f"| dynamo.{table} | equal | 471 | 471 | 0 | 0 | 0 |" in migrated.stdout
    assert "| pg.invoice_lines | equal | 2,240 | 2,240 | 0 | 0 | 0 |" in migrated.stdout

    dynamodb_client.update_item(
        TableName=table, Key={"pk": {"S": "CUSTOMER#7"}, "sk": {"S": "PROFILE"}},
        UpdateExpression="SET city = :city", ExpressionAttributeValues={":city": {"S": "Nowhere"}},
    )
    changed = run_cli(job, "--validate-only")
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert f"| dynamo.{table} | DIFFERENT | 471 | 471 | 0 | 0 | 1 |" in changed.stdout
    first = f"First differences in dynamo.{table}: changed: pk='CUSTOMER#7', sk='PROFILE' (city)"
    assert first in changed.stdout
    assert "| pg.customers | equal | 59 | 59 | 0 | 0 | 0 |" in changed.stdout

    pg_scalar(pg_database, "DELETE FROM invoice_lines WHERE invoice_line_id = 100 RETURNING invoice_line_id")
    missing = run_cli(job, "--validate-only")
    assert missing.returncode == 1
    assert "| pg.invoice_lines | DIFFERENT | 2,240 | 2,239 | 1 | 0 | 0 |" in missing.stdout
    assert "First differences in pg.invoice_lines: missing: invoice_line_id=100" in missing.stdout
    report = saved_report(missing.stdout)
    assert report["mode"] == "validate" and report["exit_code"] == 1
    lines = next(c for c in report["validation"] if c["table"] == "invoice_lines")
    listed = json.loads(Path(lines["differences_file"]).read_text())
    assert [(d["kind"], d["key"]) for d in listed["differences"]] == [("missing", {"invoice_line_id": 100})]
