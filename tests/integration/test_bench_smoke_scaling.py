"""The scaling benchmark at a smoke size: both runs load every record and the figures are printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_bench_scaling_smoke():
    result = subprocess.run(
        [sys.executable, "bench/bench_scaling.py", "--records", "400", "--partitions", "2", "--batch", "100",
         "--min-speedup", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "MongoDB -> PostgreSQL, 400 records, 2 partitions, batch 100, workers as threads"
    assert [line.split("  ")[0] for line in lines[2:5]] == [
        "engine, 1 worker", "engine, 2 workers", "raw find + COPY, 1 thread"]
    assert re.fullmatch(r"speedup 1 -> 2 workers: \d+\.\d\dx \(goal >= 0\.00x\)", lines[5])
    assert re.fullmatch(r"engine with 2 workers vs raw baseline: \d+\.\d\dx", lines[6])
