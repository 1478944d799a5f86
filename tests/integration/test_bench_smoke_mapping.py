"""Smoke run of bench/bench_mapping.py at a small size: both sides produce the same rows and the
table is printed. The speed ratio itself is not asserted (timings are not test material)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_bench_mapping_smoke():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_mapping.py"), "--records", "2000", "--batch", "500"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    # 2 would mean the compiled mapping and the hand-written function disagree on the rows.
    assert result.returncode in (0, 1), result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["side", "records", "rows", "seconds", "records/s"]
    assert lines[1].startswith("hand-written Python") and lines[1].split()[2:4] == ["2,000", "12,000"]
    assert lines[2].startswith("compiled mapping") and lines[2].split()[2:4] == ["2,000", "12,000"]
    assert lines[3].startswith("ratio compiled/hand-written: ")
