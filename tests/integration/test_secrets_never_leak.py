"""The whole command, at debug level, against a target whose DSN holds a password and whose host is wrong:
the passwords appear in no output stream and no file the run writes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import MONGO_URI

pytestmark = pytest.mark.integration

INLINE_PASSWORD = "LeakPw-Inline-4242"
ENV_PASSWORD = "LeakPw-Env-5353"

MAPPING = """\
version: 1
source: {key: [_id]}
targets: {pg: postgres}
outputs:
  - target: pg
    table: people
    key: [id]
    columns:
      id: {from: _id, type: int, required: true}
      name: name
"""


def test_debug_run_with_wrong_host_never_shows_a_password(mongo_db, tmp_path):
    mongo_db.people.insert_many([{"_id": n, "name": f"person {n}"} for n in range(1, 4)])
    (tmp_path / "people.yaml").write_text(MAPPING)
    job = tmp_path / "job.yaml"
    job.write_text(
        textwrap.dedent(f"""\
        version: 1
        name: leak-check
        sources:
          mongo:
            type: mongo
            uri: "{MONGO_URI}"
            database: {mongo_db.name}
            tables: {{people: {{mapping: people.yaml}}}}
        targets:
          pg: {{type: postgres, create: if_missing,
                dsn: "postgresql://app:{INLINE_PASSWORD}@127.0.0.1:1/nowhere?connect_timeout=2"}}
          pg2:
            type: postgres
            dsn: "host=127.0.0.1 port=1 user=app password=${{env:ETL_TEST_PG_PASSWORD}} connect_timeout=2"
        """)
    )
    environment = {**os.environ, "ETL_TEST_PG_PASSWORD": ENV_PASSWORD}
    result = subprocess.run(
        [sys.executable, "-m", "etl.run", str(job), "--debug"],  # debug: tracebacks and debug logs
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env=environment,
    )
    assert result.returncode == 3, result.stderr[-2000:]
    written = [path for path in tmp_path.rglob("*") if path.is_file() and path != job]
    everything = result.stdout + result.stderr + "".join(_text(path) for path in written)
    assert INLINE_PASSWORD not in everything and ENV_PASSWORD not in everything
    assert (
        "targets.pg.dsn: a connection string with an inline password is written in the job file"
        in result.stderr
    )
    assert "cannot connect" in result.stderr  # it failed where expected: connecting to the wrong host


def _text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")
