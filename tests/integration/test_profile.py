"""`--profile` predicts the dead letters of a run: MongoDB documents with a float field holding '' in
some of them, an item over DynamoDB's 400 KB, a number outside DynamoDB's range, a date past year
9999 and text PostgreSQL cannot hold are profiled (nothing written), then moved by a real run into
DynamoDB Local and PostgreSQL; the profile's rejects equal the run's dead letters exactly. (The local
MongoDB server refuses to store a date past year 9999, so the documents come from a mongodump file.)"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import boto3
import bson
import psycopg
import pytest
from bson.datetime_ms import DatetimeMS
from bson.decimal128 import Decimal128

from etl.sinks.deadletter import read_dead_letters
from tests.conftest import DYNAMODB_ENDPOINT
from tests.integration.chinook import load_chinook
from tests.integration.run_helpers import run_cli, saved_report

pytestmark = pytest.mark.integration

MAPPING = """\
version: 1
source:
  key: [_id]
targets:
  dynamo: dynamodb
  pg: postgres
outputs:
  - target: dynamo
    table: {table}
    key: [pk, sk]
    columns:
      pk: {{template: "DOC#{{_id}}"}}
      sk: {{const: PROFILE}}
      score: {{from: score, type: float}}
      amount: {{from: amount, type: decimal}}
      payload: payload
      email: email
  - target: pg
    table: docs
    key: [doc_id]
    columns:
      doc_id: {{from: _id, type: int}}
      score: {{from: score, type: float}}
      seen: {{from: seen, type: timestamptz(3)}}
      label: label
      email: email
"""

JOB = """\
version: 1
name: profiled
sources:
  mongo:
    type: mongodump
    path: {dump}
    database: clinic
    tables:
      docs: {{mapping: docs.yaml, partitions: 2}}
targets:
  dynamo: {{type: dynamodb, endpoint_url: "{dynamo}", region: us-east-1, create: if_missing}}
  pg: {{type: postgres, dsn: "{dsn}", create: if_missing}}
batch: {{records: 4}}
max_rejects: "90%"
validation: {{after_run: true, consistent_reads: true}}
"""

INVOICE_MAPPING = """\
source: {key: [invoice_id]}
targets: {pg: postgres}
outputs:
  - target: pg
    table: inv
    key: [invoice_id]
    columns:
      invoice_id: {from: invoice_id, type: int}
      total: {from: total, type: "decimal(3,2)"}
"""

RAW_EMAIL = "raw.person.{n}@profile.example"


def documents() -> list[dict]:
    docs = []
    for n in range(1, 21):
        docs.append({"_id": n, "score": n / 4, "amount": Decimal128(Decimal(n) / 100),
                     "payload": "x" * n, "seen": DatetimeMS(1_700_000_000_000 + n), "label": f"label {n}",
                     "email": RAW_EMAIL.format(n=n)})
    docs[2]["score"] = ""                                      # 3: a float field holding '' (map)
    docs[6]["score"] = ""                                      # 7: the same
    docs[4]["payload"] = "p" * (410 * 1024)                    # 5: an item over 400 KB (DynamoDB)
    docs[8]["amount"] = Decimal128("1E+200")                   # 9: beyond DynamoDB's numbers
    docs[10]["seen"] = DatetimeMS(253_402_300_800_000 + 1)     # 11: past year 9999 (extract)
    docs[12]["label"] = "a\x00b"                               # 13: text PostgreSQL cannot hold
    return docs


@pytest.fixture
def job(tmp_path: Path, pg_database, dynamodb_table_prefix) -> Path:
    (tmp_path / "dump" / "clinic").mkdir(parents=True)
    (tmp_path / "dump" / "clinic" / "docs.bson").write_bytes(b"".join(bson.encode(d) for d in documents()))
    (tmp_path / "docs.yaml").write_text(MAPPING.format(table=f"{dynamodb_table_prefix}_docs"))
    path = tmp_path / "profiled.yaml"
    path.write_text(JOB.format(dump=json.dumps(str(tmp_path / "dump")), dynamo=DYNAMODB_ENDPOINT,
                               dsn=pg_database))
    return path


def _profile(stdout: str) -> dict:
    line = [x for x in stdout.splitlines() if x.startswith("profile saved to ")][-1]
    return json.loads(Path(line.removeprefix("profile saved to ")).read_text())


def _rejects(entries) -> list[tuple]:
    """(source key, stage, target, field, value type, reason) of profile rejects or dead letters."""
    return sorted((e["source_key"], e["stage"], e["target"] or "", e.get("field", e.get("field_path")),
                   e["value_type"] or "", e["reason"]) for e in entries)


def test_profile_predicts_the_dead_letters_of_the_run(job: Path, dynamodb_table_prefix: str,
                                                       pg_database: str) -> None:
    profiled = run_cli(job, "--profile")
    assert profiled.returncode == 1, profiled.stderr
    profile = _profile(profiled.stdout)
    table = profile["tables"][0]
    assert (profile["predicted_rejects"], table["records"], table["rejected_records"]) == (6, 20, 6)
    # nothing was written: no DynamoDB table, no PostgreSQL table
    client = boto3.client("dynamodb", endpoint_url=DYNAMODB_ENDPOINT, region_name="us-east-1")
    assert [t for t in client.list_tables()["TableNames"] if t.startswith(dynamodb_table_prefix)] == []
    with psycopg.connect(pg_database) as conn:
        assert conn.execute("SELECT to_regclass('public.docs')").fetchone() == (None,)
    kinds = {where: {path: counts for path, counts in fields.items()}
             for where, fields in table["rejected_by"].items()}
    assert kinds == {
        "extract: mongo.docs": {"seen": {"range": 1}},
        "map: mongo.docs": {"score": {"type": 2}},
        f"dynamo.{dynamodb_table_prefix}_docs": {"(record)": {"size": 1}, "amount": {"range": 1}},
        "pg.docs": {"label": {"type": 1}},
    }
    dynamo = f"dynamo.{dynamodb_table_prefix}_docs"
    # the largest item that would be written (document 20); the one over 400 KB is a reject above
    assert table["sizes"][dynamo]["item bytes"] == {"max": 93, "limit": 400 * 1024}
    assert table["sizes"][dynamo]["key pk bytes"] == {"max": 6, "limit": 2048}
    assert table["sizes"][dynamo]["key sk bytes"] == {"max": 7, "limit": 1024}
    assert table["columns"]["pg.docs"]["doc_id"] == {"values": 17, "nulls": 0, "min": "1", "max": "20"}
    assert table["columns"]["pg.docs"]["email"] == {
        "values": 17, "nulls": 0, "values_shown": "no: the column may hold personal data"}
    assert "@profile.example" not in profiled.stdout + json.dumps(profile)

    run = run_cli(job)
    report = saved_report(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    counts = report["tables"][0]
    assert (counts["extracted"], counts["loaded"], counts["rejected"]) == (20, 14, 6)
    dead = list(read_dead_letters(job.parent / ".etl" / "dead_letter.jsonl"))
    assert _rejects(table["rejects"]) == _rejects(dead)
    assert len(dead) == 6
    # profiled again against the tables the run created: the same prediction
    again = run_cli(job, "--profile")
    assert again.returncode == 1
    assert _rejects(_profile(again.stdout)["tables"][0]["rejects"]) == _rejects(dead)


def test_profile_of_clean_records_exits_0(job: Path) -> None:
    profiled = run_cli(job, "--profile-sample", "2")
    assert profiled.returncode == 0, profiled.stdout + profiled.stderr
    profile = _profile(profiled.stdout)
    assert (profile["sample"], profile["predicted_rejects"], profile["tables"][0]["records"]) == (2, 0, 2)


def test_profile_of_a_postgres_table_reads_the_snapshot_of_its_plan(tmp_path: Path, pg_database: str) -> None:
    """Chinook's invoices through a mapping whose `total` is too narrow for the larger invoices: the
    profile counts exactly the invoices the source holds with a total of 10 or more."""
    load_chinook(pg_database)
    (tmp_path / "invoice.yaml").write_text(INVOICE_MAPPING)
    job = tmp_path / "invoices.yaml"
    job.write_text(f"""\
version: 1
name: invoices
sources:
  chinook:
    type: postgres
    dsn: "{pg_database}"
    tables: {{invoice: {{mapping: invoice.yaml, partitions: 3}}}}
targets:
  pg: {{type: postgres, dsn: "{pg_database}", schema: copied, create: if_missing}}
""")
    with psycopg.connect(pg_database) as conn:
        (wide,) = conn.execute("SELECT count(*) FROM invoice WHERE total >= 10").fetchone()
    profiled = run_cli(job, "--profile")
    assert profiled.returncode == 1, profiled.stdout + profiled.stderr
    table = _profile(profiled.stdout)["tables"][0]
    assert (table["records"], table["rejected_records"]) == (412, wide)
    assert table["rejected_by"] == {"map: chinook.invoice": {"total": {"range": wide}}}
    assert table["columns"]["pg.inv"]["invoice_id"] == {"values": 412 - wide, "nulls": 0, "min": "1",
                                                        "max": "412"}
