"""The child-delete benchmark runs end to end at a small size: both modes load every row, the figures
are printed."""

import sys
from pathlib import Path

import pytest

from tests.conftest import PG_HOST, PG_PORT, PG_USER

pytestmark = pytest.mark.integration

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_child_delete  # noqa: E402


def test_small_run_loads_every_row_both_ways(capsys):
    dsn = f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname=postgres"
    code = bench_child_delete.main(["--records", "2000", "--batch", "500", "--repeat", "1", "--pg-dsn", dsn])
    assert code in (0, 1)  # 2 would be a row count that differs; at this size 0 or 1 is timing
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("PostgreSQL sink, W1 workload: 2,000 customers + 10,993 orders in 4 batches of 500,"
                        " fastest of 1 runs each")
    assert lines[1].startswith("a delete per batch ") and lines[2].startswith("first load: the child table")
    deleting, first = (float(line.split()[-2]) for line in lines[1:3])
    assert lines[3].startswith("first load over a delete per batch: ")
    ratio = float(lines[3].split(": ")[1].split("x")[0])
    assert ratio == pytest.approx(deleting / first, rel=0.05)  # the seconds are printed rounded to 1 ms
