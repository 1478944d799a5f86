"""The incremental benchmark at a smoke size: both loads, the catch-up and the reload run, the caught-up
target validates equal, and the figures are printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.run_helpers import environment

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_bench_incremental_smoke():
    result = subprocess.run(
        [sys.executable, "bench/bench_incremental.py", "--records", "400", "--changes", "5",
         "--min-speedup", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=environment(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"full load, 400 documents: without the ledger [\d,]+ records/s, with it [\d,]+ "
                        r"records/s: ratio \d+\.\d\dx", lines[0])
    # 5% of 400: 10 updated, 10 deleted, 5 inserted
    assert re.fullmatch(r"catch-up of 25 changes: \d+\.\d\d s; full reload \d+\.\d\d s: the catch-up is "
                        r"\d+\.\dx faster; nothing to apply: \d+\.\d\d s", lines[1])
    assert lines[2] == "validation after the catch-up: equal"
