"""`--scaffold SOURCE.TABLE` proposes a mapping that loads, plans and runs as written: a MongoDB collection
(sampled documents, nested arrays exploded) and a Chinook table in PostgreSQL (catalogue types), each into
DynamoDB Local and PostgreSQL, moved and validated equal by a real run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from bson.decimal128 import Decimal128

from tests.conftest import DYNAMODB_ENDPOINT, MONGO_URI
from tests.integration.chinook import load_chinook
from tests.integration.run_helpers import run_cli, saved_report
from tests.jobfiles import write_job_file

pytestmark = pytest.mark.integration

JOB = """\
version: 1
name: scaffolded
sources:
  src:
{source}
    tables: {{{tables}}}
targets:
  dynamo: {{type: dynamodb, endpoint_url: "{dynamo}", region: us-east-1, create: if_missing}}
  pg: {{type: postgres, dsn: "{dsn}", schema: scaffolded, create: if_missing}}
max_rejects: 0
validation: {{after_run: true, consistent_reads: true}}
"""


def people() -> list[dict]:
    base = datetime(2024, 1, 1, tzinfo=UTC)
    documents = []
    for n in range(1, 13):
        invoices = [{"invoice_id": n * 10 + i, "total": Decimal128(Decimal(n * 100 + i) / 100),
                     "lines": [{"sku": f"S{n}-{i}-{j}", "qty": j} for j in range(1, 3)]}
                    for i in range(n % 3)]
        documents.append({"_id": n, "email": f"secret.person.{n}@scaffold.example", "city": f"city {n % 4}",
                          "score": "" if n % 4 == 0 else n / 4, "joined": base + timedelta(days=n),
                          "address": {"street": f"{n} main street"}, "tags": ["a", "b"][: n % 3],
                          "invoices": invoices, "notes": [{"text": f"note {n}"}]})
    return documents


PROPOSED_LINES = [
    "# fields whose names suggest personal data (types only, no values shown): email, address; "
    "consider `pii:` rules (docs/mapping.md, PII transforms)",
    '      email: {{from: email, type: "string"}}  # S; in 12 of 12: str 12; values not shown '
    "(the name suggests personal data)",
    '      score: {{from: score, type: "json"}}  # M, L or a scalar; in 12 of 12: float 9, str 3; '
    "mixed types: kept as they are (json); pick one type and `--profile` the rejects; e.g. 0.25, 0.5",
    '      id: {{from: _id, type: "int"}}  # bigint; the source key',
    "    table: {table}_invoices",
    "    explode: invoices[]",
    "    key: [invoice_id]   # `invoice_id` was distinct in all 12 sampled elements",
    '      invoice_id: {{from: invoice_id, type: "int"}}  # bigint; in 12 of 12: int 12; e.g. 10, 20',
    "    # key: (invoice_id, ordinal), the parent's key and the element's position",
    "    table: {table}_invoices_lines",
    "    explode: invoices[].lines[]",
    '      sk: {{template: "INVOICES#{{invoice_id}}"}}  # S; from the element\'s key `invoice_id`',
]


def job_file(folder: Path, source: str, dsn: str, tables: str, name: str) -> Path:
    return write_job_file(folder, JOB.format(source=source, tables=tables, dynamo=DYNAMODB_ENDPOINT, dsn=dsn),
                          name=name)


def plan_and_run(job: Path) -> tuple[int, int, int]:
    """`--plan` the job (exit 0) and run it (exit 0: moved and validated equal); returns the run's
    (extracted, loaded, rejected)."""
    planned = run_cli(job, "--plan")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    run = run_cli(job)
    assert run.returncode == 0, run.stdout + run.stderr
    counts = saved_report(run.stdout)["tables"][0]
    return counts["extracted"], counts["loaded"], counts["rejected"]


def test_scaffold_of_documents_runs_and_validates_equal(tmp_path, mongo_db, pg_database,
                                                        dynamodb_table_prefix):
    mongo_db[f"{dynamodb_table_prefix}_people"].insert_many(people())
    collection = f"{dynamodb_table_prefix}_people"
    source = f'    type: mongo\n    uri: "{MONGO_URI}"\n    database: {mongo_db.name}'
    empty = job_file(tmp_path, source, pg_database, "", "scaffold.yaml")
    output = tmp_path / "people.yaml"
    proposed = run_cli(empty, "--scaffold", f"src.{collection}", "--sample", "50", "--output", str(output))
    assert proposed.returncode == 0, proposed.stderr
    text = output.read_text()
    table = collection.lower()
    lines = text.splitlines()
    assert "secret.person" not in text
    for expected in PROPOSED_LINES:
        assert expected.format(table=table) in lines
    assert ("      notes: {from: notes, type: list}  # L; its elements have no key field to make items of; "
            "in 12 of 12: list 12") in lines

    again = run_cli(empty, "--scaffold", f"src.{collection}", "--output", str(output))
    assert again.returncode == 2 and "the file exists; it is never overwritten" in again.stderr
    assert output.read_text() == text

    job = job_file(tmp_path, source, pg_database, f"{collection}: {{mapping: people.yaml}}",
                   "people_job.yaml")
    assert plan_and_run(job) == (12, 12, 0)


def test_scaffold_of_a_chinook_table_runs_and_validates_equal(tmp_path, pg_database,
                                                              dynamodb_table_prefix):
    load_chinook(pg_database)
    source = f'    type: postgres\n    dsn: "{pg_database}"'
    empty = job_file(tmp_path, source, pg_database, "", "scaffold.yaml")
    output = tmp_path / "invoice.yaml"
    proposed = run_cli(empty, "--scaffold", "src.invoice", "--output", str(output))
    assert proposed.returncode == 0, proposed.stderr
    text = output.read_text().replace("table: invoice", f"table: {dynamodb_table_prefix}_invoice", 1)
    output.write_text(text)
    lines = text.splitlines()
    assert '      total: {from: total, type: "decimal(10,2)"}  # numeric(10,2)' in lines
    assert '      total: {from: total, type: "decimal(10,2)"}  # N' in lines
    assert '      invoice_date: {from: invoice_date, type: "timestamp(6)"}  # timestamp(6)' in lines
    assert '      invoice_id: {from: invoice_id, type: "int"}  # N; key' in lines
    assert '      pk: {template: "INVOICE#{invoice_id}"}  # S; from the key' in lines

    job = job_file(tmp_path, source, pg_database, "invoice: {mapping: invoice.yaml}", "invoice_job.yaml")
    assert plan_and_run(job) == (412, 412, 0)
