"""Shared pieces of the engine's integration tests: job files on the real local servers, the
command in a subprocess, generated patient documents, and exact figures read back from targets."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from bson.decimal128 import Decimal128

from tests.conftest import MONGO_URI
from tests.jobfiles import DEAD_LETTER, REPORT, SQLITE_STATE, dynamodb_target, postgres_target, write_job_file

ROOT = Path(__file__).resolve().parents[2]
HMAC_KEY = "integration-test-hmac-key"

PATIENTS_MAPPING = """\
version: 1
source:
  key: [_id]
targets:
  pg: postgres
  dynamo: dynamodb
pii:
  email: {hmac: "${env:ETL_DEMO_HMAC_KEY}"}
outputs:
  - target: pg
    table: patients
    key: [patient_id]
    columns:
      patient_id: {from: _id, type: int}
      name: name
      email_hmac: {from: email, required: true}
      admitted: {from: admitted, type: timestamptz(3), required: true}
      balance: {from: balance, type: "decimal(12,2)", required: true}
  - target: pg
    table: visits
    explode: visits[]
    parent: patients
    key: [visit_id]
    columns:
      visit_id: {from: visit_id, type: int}
      ward: ward
      cost: {from: cost, type: "decimal(10,2)", required: true}
"""

DYNAMO_OUTPUT = """\
  - target: dynamo
    table: {table}
    key: [pk, sk]
    columns:
      pk: {{template: "PATIENT#{{_id}}"}}
      sk: {{const: PROFILE}}
      name: name
      balance: {{from: balance, type: "decimal(12,2)", required: true}}
      visits: {{from: visits, type: list}}
"""


def patients(n: int, *, seed: int = 7, start: int = 1) -> list[dict]:
    """`n` patient documents with 0-3 visits each; visit ids are unique across documents."""
    rng = random.Random(seed)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    documents = []
    for i in range(start, start + n):
        visits = [{"visit_id": i * 10 + v, "ward": rng.choice(["A", "B", "C", "ICU"]),
                   "cost": Decimal128(Decimal(rng.randint(100, 99999)) / 100)}
                  for v in range(rng.randint(0, 3))]
        documents.append({"_id": i, "name": f"patient {i}", "email": f"p{i}@example.org",
                          "admitted": base + timedelta(minutes=rng.randint(0, 500_000)),
                          "balance": Decimal128(Decimal(rng.randint(-10000, 1_000_000)) / 100),
                          "visits": visits})
    return documents


def patients_mapping(folder: Path, *, dynamo_table: str | None = None) -> Path:
    text = PATIENTS_MAPPING
    if dynamo_table:
        text += DYNAMO_OUTPUT.format(table=dynamo_table)
    else:
        text = text.replace("  dynamo: dynamodb\n", "")
    path = folder / "patients.yaml"
    path.write_text(text)
    return path


def demo_mapping(folder: Path, dynamo_table: str) -> Path:
    """The demo's mapping with its DynamoDB table renamed, so tests never touch the demo's table."""
    text = (ROOT / "mappings" / "chinook_customers.yaml").read_text()
    path = folder / "chinook_customers.yaml"
    path.write_text(text.replace("table: chinook_demo", f"table: {dynamo_table}"))
    return path


def write_job(folder: Path, *, name: str, database: str, collection: str, mapping: Path, pg_dsn: str,
              partitions: int = 2, parallelism: int = 2, batch_records: int = 1000,
              state: str | None = None, executor: str = "{type: local}", max_rejects: str = "0",
              after_run: bool = True, dynamo: bool = True, pg_schema: str = "public") -> Path:
    targets = f"  pg: {postgres_target(pg_dsn, schema=pg_schema, create='if_missing')}\n"
    if dynamo:
        targets += f"  dynamo: {dynamodb_target()}\n"
    text = f"""\
version: 1
name: {name}
sources:
  mongo:
    type: mongo
    uri: "{MONGO_URI}"
    database: {database}
    tables:
      {collection}: {{mapping: {mapping.name}, partitions: {partitions}}}
targets:
{targets}batch: {{records: {batch_records}}}
parallelism: {parallelism}
executor: {executor}
state: {state or SQLITE_STATE}
{DEAD_LETTER}max_rejects: {max_rejects}
validation: {{after_run: {str(after_run).lower()}, consistent_reads: true}}
{REPORT}"""
    return write_job_file(folder, text, name=f"{name}.yaml")


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"ETL_DEMO_HMAC_KEY": HMAC_KEY, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": "us-east-1", "PYTHONUNBUFFERED": "1"})
    return env


def command(job: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "etl.run", str(job), *args]


def run_cli(job: Path, *args: str, timeout: float = 300,
            fault: str | None = None) -> subprocess.CompletedProcess:
    """The command in a subprocess; `fault` sets ETL_TEST_FAULT (etl/engine/faults.py) for it."""
    env = environment()
    if fault is not None:
        env["ETL_TEST_FAULT"] = fault
    return subprocess.run(command(job, *args), capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=ROOT)


def pg_scalar(dsn: str, query: str):
    import psycopg

    with psycopg.connect(dsn) as connection:
        return connection.execute(query).fetchone()[0]


def note_delete_statements(dsn: str, tables: list[str], schema: str = "public") -> None:
    """Note every DELETE statement on `tables` in `<schema>.delete_statements` (one row each, the
    table's name): a statement-level trigger fires even when the statement deletes nothing."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {schema}.delete_statements (table_name text)")
        connection.execute(f"CREATE FUNCTION {schema}.note_delete() RETURNS trigger LANGUAGE plpgsql AS $$"
                           f" BEGIN INSERT INTO {schema}.delete_statements VALUES (TG_TABLE_NAME);"
                           " RETURN NULL; END $$")
        for table in tables:
            connection.execute(f"CREATE TRIGGER note_delete AFTER DELETE ON {schema}.{table}"
                               f" FOR EACH STATEMENT EXECUTE FUNCTION {schema}.note_delete()")


def dynamo_count(client, table: str) -> int:
    total = 0
    for page in client.get_paginator("scan").paginate(TableName=table, Select="COUNT", ConsistentRead=True):
        total += page["Count"]
    return total


def chinook_documents() -> list[dict]:
    """The demo's 59 customer documents, built by scripts/load_demo_data.py from the shared Chinook file."""
    import importlib.util
    import sqlite3

    spec = importlib.util.spec_from_file_location("load_demo_data", ROOT / "scripts" / "load_demo_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with sqlite3.connect(f"file:{module.DEFAULT_SQLITE}?mode=ro", uri=True) as db:
        return module.build_documents(db)


def saved_report(stdout: str) -> dict:
    """The JSON report whose path the command printed last."""
    import json

    line = [x for x in stdout.splitlines() if x.startswith("report saved to ")][-1]
    return json.loads(Path(line.removeprefix("report saved to ")).read_text())
