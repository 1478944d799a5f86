"""The validation benchmark at a small size, on the real local servers: it runs, prints its
figures and finds the changed key. At this size ratios are noise, so missing a speed goal
(exit 1) is accepted; a wrong result (exit 2) or a crash is not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DYNAMODB_ENDPOINT, PG_HOST, PG_PORT

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_bench_validation_smoke() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_validation.py"),
            "--dynamodb-items",
            "300",
            "--pg-rows",
            "3000",
            "--buckets",
            "64",
            "--dynamodb-endpoint",
            DYNAMODB_ENDPOINT,
            "--pg-host",
            PG_HOST,
            "--pg-port",
            str(PG_PORT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    out = completed.stdout
    assert completed.returncode in (0, 1), completed.stdout + completed.stderr
    assert "results correct" in out
    assert (
        "one row changed: differing keys: validate_table [1501], job validation [1501], reladiff [1501]"
        " -> same differing key: yes" in out
    )
    assert ("identical: differing keys: validate_table [], job validation [], reladiff [] -> same differing"
            " key: yes") in out
    for measurement in (
        "DynamoDB raw parallel Scan + decode",
        "DynamoDB validation (source checksums from load)",
        "PostgreSQL reladiff diff_tables, one row changed",
        "PostgreSQL validate_table, one row changed",
        "PostgreSQL job --validate-only path, one row changed",
    ):
        assert measurement in out
