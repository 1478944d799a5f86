"""The demo end to end, as `make demo` runs it: load the Chinook customers into MongoDB, run
jobs/demo.yaml, and find exactly the demo's figures in both targets, validated."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest

from tests.conftest import DYNAMODB_ENDPOINT, MONGO_URI, pg_dsn
from tests.integration.run_helpers import ROOT, dynamo_count, environment, pg_scalar, saved_report

pytestmark = pytest.mark.integration

DEMO_DSN = pg_dsn("etl_demo")


def test_demo_job_migrates_and_validates_both_targets(dynamodb_client):
    env = environment()
    env.update({"ETL_MONGO_URI": MONGO_URI, "ETL_DYNAMODB_ENDPOINT": DYNAMODB_ENDPOINT,
                "ETL_PG_DSN": DEMO_DSN, "ETL_DEMO_HMAC_KEY": "demo-only-hmac-key"})
    loaded = subprocess.run([sys.executable, "scripts/load_demo_data.py", "--uri", MONGO_URI], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded 59 customers, 412 invoices, 2240 invoice lines into chinook.customers" in loaded.stdout

    run = subprocess.run([sys.executable, "-m", "etl.run", "jobs/demo.yaml", "--full-refresh"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    printed = run.stdout
    assert "# chinook-demo: run succeeded" in printed
    assert "| mongo.customers | 59 | 59 | 0 | 0 | 2/2 |" in printed
    assert ("Rows written: dynamo.chinook_demo 471, pg.customers 59, pg.invoice_lines 2,240, "
            "pg.invoices 412") in printed
    for line in ("| dynamo.chinook_demo | equal | 471 | 471 | 0 | 0 | 0 |",
                 "| pg.customers | equal | 59 | 59 | 0 | 0 | 0 |",
                 "| pg.invoices | equal | 412 | 412 | 0 | 0 | 0 |",
                 "| pg.invoice_lines | equal | 2,240 | 2,240 | 0 | 0 | 0 |"):
        assert line in printed

    assert pg_scalar(DEMO_DSN, "SELECT count(*) FROM customers") == 59
    assert pg_scalar(DEMO_DSN, "SELECT count(*) FROM invoices") == 412
    assert pg_scalar(DEMO_DSN, "SELECT count(*) FROM invoice_lines") == 2240
    assert pg_scalar(DEMO_DSN, "SELECT sum(total) FROM invoices") == Decimal("2328.60")
    assert dynamo_count(dynamodb_client, "chinook_demo") == 471
    # no raw e-mail address reached either target
    assert pg_scalar(DEMO_DSN, "SELECT count(*) FROM customers WHERE email_hmac LIKE '%@%'") == 0

    report = saved_report(printed)
    assert report["status"] == "succeeded" and report["exit_code"] == 0
    assert all(check["ok"] for check in report["validation"])
    assert len(report["validation"]) == 4
