"""No raw PII value, password or key leaves a whole job run: not in stdout, stderr, reports, dead
letters, the audit trail, the state database, any file the run writes, or the targets.

MongoDB -> PostgreSQL and DynamoDB with PII transforms (hmac, mask, redact, drop), a password in
the PostgreSQL DSN and the HMAC key both from the environment, everything at --debug, and one
record in five forced into the dead-letter store. Every output is searched byte for byte.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from bson.decimal128 import Decimal128

from tests.conftest import DYNAMODB_ENDPOINT, MONGO_URI
from tests.integration.run_helpers import ROOT, command, environment, saved_report

pytestmark = pytest.mark.integration

PASSWORD = "Pii-Planted-Password-9173"  # noqa: S105 - trust authentication accepts any password
HMAC_KEY = "Pii-Planted-Hmac-Key-3301"
RECORDS = 40


def email(n: int) -> str:
    return f"planted.email.{n}@patients.example"


def phone(n: int) -> str:
    return f"+1-555-01{n:02d}-7{n:03d}"


def ssn(n: int) -> str:
    return f"PLANTED-SSN-{n:03d}-42"


def note(n: int) -> str:
    return f"planted clinical note {n}: allergic to penicillin"


MAPPING = """\
version: 1
source:
  key: [_id]
targets:
  pg: postgres
  dynamo: dynamodb
pii:
  email: {{hmac: "${{env:ETL_DEMO_HMAC_KEY}}"}}
  phone: {{mask: 4}}
  ssn: redact
  notes: drop
outputs:
  - target: pg
    table: patients
    key: [patient_id]
    columns:
      patient_id: {{from: _id, type: int}}
      email_hmac: {{from: email, required: true}}
      phone: phone
      ssn: ssn
      balance: {{from: balance, type: "decimal(12,2)", required: true}}
  - target: dynamo
    table: {dynamo_table}
    key: [pk]
    columns:
      pk: {{template: "PATIENT#{{_id}}"}}
      email_hmac: email
      phone: phone
      balance: {{from: balance, type: "decimal(12,2)", required: true}}
"""

JOB = f"""\
version: 1
name: pii
sources:
  mongo:
    type: mongo
    uri: "{MONGO_URI}"
    database: {{database}}
    tables:
      patients: {{{{mapping: patients.yaml, partitions: 2}}}}
targets:
  pg: {{{{type: postgres, dsn: "${{{{env:ETL_PII_PG_DSN}}}}", create: if_missing}}}}
  dynamo: {{{{type: dynamodb, endpoint_url: "{DYNAMODB_ENDPOINT}", region: us-east-1, create: if_missing}}}}
max_rejects: "50%"
validation: {{{{after_run: true, consistent_reads: true}}}}
"""


def planted() -> list[str]:
    values = [PASSWORD, HMAC_KEY]
    for n in range(1, RECORDS + 1):
        values += [email(n), phone(n), ssn(n), note(n)]
    return values


def leaks(data: bytes) -> list[str]:
    return [value for value in planted() if value.encode() in data]


def run(job: Path, *args: str, dsn: str) -> subprocess.CompletedProcess:
    env = environment() | {"ETL_PII_PG_DSN": dsn, "ETL_DEMO_HMAC_KEY": HMAC_KEY}
    return subprocess.run(command(job, *args, "--debug"), capture_output=True, text=True, timeout=300,
                          env=env, cwd=ROOT)


def test_no_planted_value_appears_in_any_output(tmp_path, mongo_db, pg_database, dynamodb_client,
                                                dynamodb_table_prefix):
    documents = [{"_id": n, "email": email(n), "phone": phone(n), "ssn": ssn(n), "notes": note(n),
                  "balance": f"not a number {n}" if n % 5 == 0 else Decimal128(f"{n}.25")}
                 for n in range(1, RECORDS + 1)]
    mongo_db.patients.insert_many(documents)
    dynamo_table = f"{dynamodb_table_prefix}_patients"
    (tmp_path / "patients.yaml").write_text(MAPPING.format(dynamo_table=dynamo_table))
    job = tmp_path / "pii.yaml"
    job.write_text(JOB.format(database=mongo_db.name))
    dsn = f"{pg_database} password={PASSWORD}"

    outputs = {}
    done = run(job, dsn=dsn)
    outputs["run"] = done
    assert done.returncode == 0, done.stdout + done.stderr
    report = saved_report(done.stdout)
    table = report["tables"][0]
    assert (table["extracted"], table["loaded"], table["rejected"]) == (40, 32, 8)
    outputs["validate"] = run(job, "--validate-only", dsn=dsn)
    assert outputs["validate"].returncode == 0, outputs["validate"].stdout + outputs["validate"].stderr
    outputs["plan"] = run(job, "--plan", dsn=dsn)
    assert outputs["plan"].returncode == 0, outputs["plan"].stderr
    unreachable = f"host=127.0.0.1 port=1 user=postgres dbname=x password={PASSWORD}"
    outputs["failure"] = run(job, "--full-refresh", dsn=unreachable)
    assert outputs["failure"].returncode == 3

    for name, result in outputs.items():
        assert leaks(result.stdout.encode()) == [], f"{name} stdout"
        assert leaks(result.stderr.encode()) == [], f"{name} stderr"
    # --debug was on: libraries' INFO records (silenced without it) are in the log
    assert '"level": "info", "logger": "botocore.credentials"' in outputs["run"].stderr

    written = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.name not in ("pii.yaml",
                                                                                      "patients.yaml"))
    names = {p.relative_to(tmp_path).as_posix() for p in written}
    assert {".etl/audit.jsonl", ".etl/dead_letter.jsonl", ".etl/state.sqlite"} <= names
    assert any(n.startswith(".etl/reports/") and n.endswith(".json") for n in names)
    for path in written:
        assert leaks(path.read_bytes()) == [], path
    dead_letters = (tmp_path / ".etl" / "dead_letter.jsonl").read_text().splitlines()
    assert len(dead_letters) == 8

    import psycopg

    with psycopg.connect(pg_database) as connection:
        (text,) = connection.execute("SELECT string_agg(p::text, '|') FROM patients p").fetchone()
    assert leaks(text.encode()) == []
    assert "*" * 10 in text and "[REDACTED]" in text  # masked phones and redacted SSNs are there
    items = dynamodb_client.scan(TableName=dynamo_table, ConsistentRead=True)["Items"]
    assert len(items) == 32
    assert leaks(repr(items).encode()) == []


