"""Start-up cost of `python -m etl.run`: a command imports only what it uses (docs/benchmarks.md,
issue 24, "Start-up import time"). Checked by module names, not by timing: a fresh interpreter runs
the command's entry in-process and reports which heavy packages ended up in `sys.modules`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import bson

from tests.jobfiles import RUN_FILES, postgres_target, write_job_file

ROOT = Path(__file__).resolve().parents[2]

NEVER = ("pandas", "numpy", "matplotlib", "dask", "distributed", "pyarrow", "sqlglot", "rich", "boto3",
         "s3transfer", "cryptography")
"""Heavy packages that neither --version nor --plan uses (rich: not on a terminal; boto3: no DynamoDB
client is made before a sink, state store or KMS key is opened)."""
NOT_FOR_VERSION = ("pydantic", "yaml", "psycopg", "pymongo", "bson", "botocore", "etl.job",
                   "etl.restore.cli", "etl.engine.runner", "etl.checksum")

ENTRY = """\
import json, sys
from etl import run

try:
    code = run.main(sys.argv[2:])
except SystemExit as exit:
    code = exit.code
names = json.loads(sys.argv[1])
print(json.dumps({"exit": code, "loaded": sorted(name for name in names if name in sys.modules)}))
"""


def loaded_after(*args: str, cwd: Path = ROOT, names: tuple[str, ...] = (*NEVER, *NOT_FOR_VERSION),
                 ) -> tuple[int, list[str], str]:
    """Run `python -m etl.run ARGS`'s entry in a fresh interpreter whose output is no terminal: its
    exit code, which of `names` it imported, and what it printed to stderr."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                            os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", ENTRY, json.dumps(names), *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env=environment, stdin=subprocess.DEVNULL)
    assert '"exit": ' in done.stdout, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["exit"], result["loaded"], done.stderr


def test_version_imports_none_of_the_engine():
    code, loaded, _ = loaded_after("--version")
    assert code == 0
    assert loaded == []


def test_help_imports_none_of_the_engine():
    code, loaded, _ = loaded_after("--help")
    assert code == 0
    assert loaded == []


def plan_job(folder: Path) -> Path:
    """A job from a mongodump folder into PostgreSQL and DynamoDB: --plan reads the folder and reaches
    no server (the targets are only named)."""
    dump = folder / "dump" / "shop"
    dump.mkdir(parents=True)
    (dump / "orders.bson").write_bytes(b"".join(bson.encode({"_id": n, "total": n * 2}) for n in range(5)))
    mapping = """\
version: 1
source: {key: [_id]}
targets: {pg: postgres, dynamo: dynamodb}
outputs:
  - {target: pg, table: orders, key: [id],
     columns: {id: {from: _id, type: int}, total: {from: total, type: int}}}
  - {target: dynamo, table: orders, key: [pk],
     columns: {pk: {from: _id, type: int}, total: {from: total, type: int}}}
"""
    return write_job_file(folder, f"""\
version: 1
name: startup
sources:
  dump:
    type: mongodump
    path: {json.dumps(str(folder / "dump"))}
    database: shop
    tables:
      orders: {{mapping: orders.yaml, partitions: 2}}
targets:
  pg: {postgres_target("host=127.0.0.1 port=1 user=etl dbname=unused")}
  dynamo: {{type: dynamodb, endpoint_url: "http://127.0.0.1:1", region: us-east-1}}
{RUN_FILES}""", mappings={"orders.yaml": mapping})


def test_plan_imports_no_dataframe_plotting_dask_terminal_or_aws_client_code(tmp_path):
    code, loaded, errors = loaded_after(str(plan_job(tmp_path)), "--plan", cwd=tmp_path)
    assert code == 0, errors
    assert [name for name in loaded if name in NEVER] == []
    # what --plan does use is there: the job schema and the checksum tolerances in it, the BSON reader
    assert {"pydantic", "yaml", "bson", "etl.job"} <= set(loaded)
    assert "etl.restore.cli" not in loaded and "etl.engine.runner" not in loaded


def test_validation_off_a_terminal_imports_no_rich(tmp_path):
    """The live display is for a terminal only; elsewhere progress goes to the log as JSON lines. The
    targets here cannot be reached, so validation stops (exit 3) after its progress reporting began."""
    code, loaded, errors = loaded_after(str(plan_job(tmp_path)), "--validate-only", cwd=tmp_path,
                                        names=("rich", "etl.report.live", "pandas", "matplotlib", "dask"))
    assert (code, loaded) == (3, []), errors
    assert "cannot connect" in errors
