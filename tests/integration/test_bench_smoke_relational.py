"""The relational benchmark at a smoke size: it runs end to end and prints both rates and the ratio."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import bench_relational  # noqa: E402

from tests.conftest import PG_HOST, PG_PORT, PG_USER  # noqa: E402

pytestmark = pytest.mark.integration


def test_bench_relational_smoke(capsys):
    admin = f"host={PG_HOST} port={PG_PORT} user={PG_USER}"
    # goal 0: timing at this size says nothing; the full size is run by hand (docs/relational.md).
    code = bench_relational.main(
        ["--rows", "3000", "--repeat", "1", "--batch", "500", "--goal", "0", "--admin-dsn", admin]
    )
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0].split() == ["path", "rows", "seconds", "rows/s"]
    assert lines[1].startswith("raw psycopg named cursor, fetchmany") and lines[1].split()[5] == "3000"
    assert lines[2].startswith("etl PostgreSQL source, canonical records") and lines[2].split()[5] == "3000"
    assert lines[3].startswith("ratio source/raw: ") and lines[3].endswith("(goal >= 0.0)")
