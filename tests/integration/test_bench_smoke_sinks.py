"""The sink benchmark runs end to end at a small size: both sides write every row, the table is printed."""

import sys
from pathlib import Path

import pytest

from tests.conftest import DYNAMODB_ENDPOINT, PG_HOST, PG_PORT, PG_USER

pytestmark = pytest.mark.integration

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_sinks  # noqa: E402


def test_small_run_prints_both_ratios(capsys):
    bench_sinks.main([
        "--pg-rows", "2000", "--pg-batch", "500", "--ddb-items", "300", "--ddb-batch", "100",
        "--threads", "2", "--repeat", "1", "--ddb-endpoint", DYNAMODB_ENDPOINT,
        "--pg-dsn", f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname=postgres",
    ])  # it asserts both sides stored every row; at this size the exit code is timing, not a verdict
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["target", "size", "raw/s", "sink/s", "ratio", "goal", "result"]
    assert lines[1].startswith("PostgreSQL  2,000 rows")
    assert lines[2].startswith("DynamoDB    300 items, 2 threads")
    for line in lines[1:]:
        raw, sink, ratio = (float(figure.replace(",", "")) for figure in line.split()[-5:-2])
        assert raw > 0 and sink > 0 and ratio == pytest.approx(sink / raw, abs=0.01)
        assert line.split()[-1] in ("ok", "MISSED")
