"""bench/bench_mongo.py runs end to end at a small size and its exit code matches its verdicts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MONGO_URI

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_bench_mongo_smoke():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_mongo.py"), "--uri", MONGO_URI, "--docs", "200",
         "--dump-docs", "2000", "--rss-small", "500", "--rss-large", "5000", "--repeat", "1",
         "--batch-records", "100"],
        capture_output=True, text=True, timeout=300)
    assert result.stderr == ""
    rows = re.findall(r"^(\S.*?)\s+([\d,.]+)\s+([\d,.]+)\s+([\d.]+)\s+(\S+(?: \S+)?)\s+(ok|MISSED|info)$",
                      result.stdout, re.MULTILINE)
    assert [row[0] for row in rows] == [
        "live: read vs find()",
        "live: vs find(), default codec (info)",
        "live: vs find().sort('_id') (info)",
        "mongodump: read vs decode_file_iter",
        "mongodump: vs default codec (info)",
        "mongodump: vs raw in 100-doc batches (info)",
        "peak RSS MiB: 5,000 vs 500 docs",
    ], result.stdout
    verdicts = [row[5] for row in rows]
    assert [v == "info" for v in verdicts] == [False, True, True, False, True, True, False]
    assert result.returncode == (1 if "MISSED" in verdicts else 0)
