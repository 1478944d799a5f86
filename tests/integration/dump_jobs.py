"""A job reading a mongodump folder (written here from documents) into PostgreSQL and DynamoDB Local,
for tests of how values are stored and compared: run it, validate it, read what the targets hold."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import bson
import psycopg

from etl.checksum import JobValidation
from etl.engine.runner import run_job
from etl.engine.validation import validate_job
from etl.job import Job, load_job
from etl.report.run_report import RunReport
from etl.sinks.deadletter import read_dead_letters
from tests.conftest import DYNAMODB_ENDPOINT

COLUMNS = """\
      {key}: {{from: _id, type: int}}
      name: {{from: name, type: string}}
      doc: {{from: doc, type: json}}
      _doc: {{rest: true, exclude: [_id, name, doc]}}
"""
MAPPING = """\
version: 1
source:
  key: [_id]
targets:
  pg: postgres
  dynamo: dynamodb
outputs:
  - target: pg
    table: {pg_table}
    key: [id]
    columns:
{pg_columns}  - target: dynamo
    table: {dynamo_table}
    key: [pk]
    columns:
{dynamo_columns}"""
"""Both targets get the same columns: `doc`, a sub-document kept whole (a jsonb column, a DynamoDB
map), and `_doc`, every other field, as DMS's map-record-to-document makes it."""


def write_dump(folder: Path, database: str, collection: str, documents: list[dict]) -> Path:
    """A mongodump folder: `<folder>/<database>/<collection>.bson`, the documents' BSON concatenated."""
    (folder / database).mkdir(parents=True, exist_ok=True)
    (folder / database / f"{collection}.bson").write_bytes(b"".join(bson.encode(d) for d in documents))
    return folder


@dataclass
class DumpJob:
    job: Job
    folder: Path
    pg_dsn: str
    pg_table: str
    dynamo_table: str

    def run(self) -> RunReport:
        return run_job(self.job)

    def validate(self) -> JobValidation:
        return validate_job(self.job)

    def dead_letters(self) -> list[dict]:
        path = self.folder / ".etl" / "dead_letter.jsonl"
        return list(read_dead_letters(path)) if path.exists() else []

    def pg_text(self, column: str, key: int) -> str | None:
        """The column's value as PostgreSQL prints it (jsonb as its text)."""
        with psycopg.connect(self.pg_dsn) as connection:
            row = connection.execute(
                f'SELECT "{column}"::text FROM "{self.pg_table}" WHERE id = %s', (key,)).fetchone()  # noqa: S608
        return None if row is None else row[0]


def dump_job(folder: Path, documents: list[dict], *, pg_dsn: str, dynamo_prefix: str, name: str) -> DumpJob:
    """Write the documents as a dump and a job moving them with `MAPPING` (one partition)."""
    dump = write_dump(folder / "dump", "clinic", "records", documents)
    pg_table, dynamo_table = f"{name}_records", f"{dynamo_prefix}_{name}"
    (folder / "records.yaml").write_text(MAPPING.format(
        pg_table=pg_table, dynamo_table=dynamo_table,
        pg_columns=COLUMNS.format(key="id"), dynamo_columns=COLUMNS.format(key="pk")))
    text = f"""\
version: 1
name: {name}
sources:
  dump:
    type: mongodump
    path: {json.dumps(str(dump))}
    database: clinic
    tables:
      records: {{mapping: records.yaml, partitions: 1}}
targets:
  pg: {{type: postgres, dsn: "{pg_dsn}", create: if_missing}}
  dynamo: {{type: dynamodb, endpoint_url: "{DYNAMODB_ENDPOINT}", region: us-east-1, create: if_missing}}
batch: {{records: 500}}
parallelism: 2
state: {{type: sqlite, path: .etl/state.sqlite}}
dead_letter: {{path: .etl/dead_letter.jsonl}}
max_rejects: 100%
validation: {{after_run: false, consistent_reads: true}}
report: {{dir: .etl/reports}}
"""
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return DumpJob(load_job(path), folder, pg_dsn, pg_table, dynamo_table)
