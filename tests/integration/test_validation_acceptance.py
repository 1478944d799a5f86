"""Acceptance of checksum validation: N records migrated MongoDB -> DynamoDB and -> PostgreSQL by a
real job, then `--validate-only` after each kind of tampering names exactly what was done.

Equal targets pass whatever the PostgreSQL table's physical order; one changed field, one deleted
and one extra item/row are found by key (and field); DynamoDB numbers written as 1, 1.0 and
Decimal("1.00") equal the source's 1.00; a timestamp one microsecond off differs unless
`validation.tolerances.timestamp_precision: 3` says otherwise, and the report says it is on.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from boto3.dynamodb.types import TypeSerializer
from bson.decimal128 import Decimal128

from tests.integration.run_helpers import pg_scalar, run_cli, saved_report, write_job

pytestmark = pytest.mark.integration

MAPPING = """\
version: 1
source:
  key: [_id]
targets:
  pg: postgres
  dynamo: dynamodb
outputs:
  - target: dynamo
    table: {table}
    key: [pk, sk]
    columns:
      pk: {{template: "PATIENT#{{_id}}"}}
      sk: {{const: PROFILE}}
      name: name
      ward: ward
      dose: {{from: dose, type: "decimal(8,2)", required: true}}
      admitted: {{from: admitted, type: timestamptz(6), required: true}}
  - target: pg
    table: patients
    key: [patient_id]
    columns:
      patient_id: {{from: _id, type: int}}
      name: name
      ward: ward
      dose: {{from: dose, type: "decimal(8,2)", required: true}}
      admitted: {{from: admitted, type: timestamptz(6), required: true}}
"""
WARDS = ("A", "B", "C", "ICU")
BASE = datetime(2024, 1, 1, tzinfo=UTC)
ONE_DOSE = (1, 2, 3)
"""Patients whose dose is 1.00: their DynamoDB numbers are rewritten as 1, 1.0 and Decimal("1.00")."""


def document(i: int) -> dict:
    """Patient `i`, the same in every run; admitted at a millisecond with a non-zero fraction."""
    dose = Decimal("1.00") if i in ONE_DOSE else Decimal(i % 99_999 + 1) / 100
    admitted = BASE + timedelta(seconds=i * 37, milliseconds=i % 997 + 1)
    return {"_id": i, "name": f"patient {i}", "ward": WARDS[i % len(WARDS)], "dose": Decimal128(dose),
            "admitted": admitted}


def insert_documents(collection, n: int) -> None:
    for start in range(1, n + 1, 10_000):
        collection.insert_many([document(i) for i in range(start, min(start + 10_000, n + 1))])


def dynamo_key(i: int) -> dict:
    return {"pk": {"S": f"PATIENT#{i}"}, "sk": {"S": "PROFILE"}}


def stored_timestamp(moment: datetime) -> str:
    """How the DynamoDB sink writes a timestamptz (docs/sinks.md): ISO 8601, UTC, microseconds."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def pg_execute(dsn: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(dsn) as connection:
        for statement in statements:
            connection.execute(statement)


def validate(job: Path, expect_exit: int) -> tuple[str, dict]:
    result = run_cli(job, "--validate-only", timeout=1800)
    assert result.returncode == expect_exit, result.stdout + result.stderr
    return result.stdout, saved_report(result.stdout)


def listed(report: dict, table: str) -> list[tuple]:
    """Every difference in the table's differences file: (kind, key, [(field, source, target)])."""
    check = next(c for c in report["validation"] if c["table"] == table)
    differences = json.loads(Path(check["differences_file"]).read_text())["differences"]
    return [(d["kind"], d["key"], [(f["field"], f["source_value"], f["target_value"])
                                   for f in d.get("fields", [])]) for d in differences]


def report_line(target_table: str, n: int, missing: int = 0, extra: int = 0, changed: int = 0) -> str:
    """The table's line in the printed report: source and target both hold `n` rows; no duplicate
    keys and no unresolved buckets."""
    result = "DIFFERENT" if missing or extra or changed else "equal"
    return f"| {target_table} | {result} | {n:,} | {n:,} | {missing} | {extra} | {changed} | 0 | 0 |"


@pytest.mark.parametrize(
    "n", [3_000, pytest.param(200_000, marks=[pytest.mark.slow, pytest.mark.timeout(7200)])],
)
def test_validation_finds_exactly_what_was_changed(n, tmp_path, mongo_db, pg_database, dynamodb_client,
                                                   dynamodb_table_prefix):
    insert_documents(mongo_db.patients, n)
    table = f"{dynamodb_table_prefix}_patients"
    mapping = tmp_path / "patients.yaml"
    mapping.write_text(MAPPING.format(table=table))
    job = write_job(tmp_path, name="acceptance", database=mongo_db.name, collection="patients",
                    mapping=mapping, pg_dsn=pg_database, partitions=4, parallelism=2,
                    batch_records=5000)
    dynamo, pg = f"dynamo.{table}", "pg.patients"

    # The migration validates its targets when it ends: equal.
    migrated = run_cli(job, timeout=3600)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert report_line(dynamo, n) in migrated.stdout
    assert report_line(pg, n) in migrated.stdout

    # Equal whatever the physical order: the PostgreSQL table re-inserted in reverse key order, and
    # DynamoDB's 1.00 doses rewritten as the numbers 1, 1.0 and Decimal("1.00").
    pg_execute(pg_database, "CREATE TABLE reversed AS SELECT * FROM patients ORDER BY patient_id DESC",
               "TRUNCATE patients", "INSERT INTO patients SELECT * FROM reversed", "DROP TABLE reversed")
    assert pg_scalar(pg_database, "SELECT patient_id FROM patients ORDER BY ctid LIMIT 1") == n
    ones = [{"N": str(1)}, {"N": repr(1.0)}, TypeSerializer().serialize(Decimal("1.00"))]
    assert [one["N"] for one in ones] == ["1", "1.0", "1.00"]
    for i, one in zip(ONE_DOSE, ones, strict=True):
        dynamodb_client.update_item(TableName=table, Key=dynamo_key(i), UpdateExpression="SET dose = :d",
                                    ExpressionAttributeValues={":d": one})
    stdout, _ = validate(job, 0)
    assert report_line(dynamo, n) in stdout
    assert report_line(pg, n) in stdout

    # One field changed, one item/row deleted, one extra: each found, by key, and nothing else.
    changed, deleted, extra = n // 2, n // 3, n + 1
    dynamodb_client.update_item(TableName=table, Key=dynamo_key(changed), UpdateExpression="SET ward = :w",
                                ExpressionAttributeValues={":w": {"S": "Nowhere"}})
    dynamodb_client.delete_item(TableName=table, Key=dynamo_key(deleted))
    dynamodb_client.put_item(TableName=table, Item={**dynamo_key(extra), "name": {"S": f"patient {extra}"}})
    pg_execute(pg_database, f"UPDATE patients SET name = 'someone else' WHERE patient_id = {changed}",
               f"DELETE FROM patients WHERE patient_id = {deleted}",
               "INSERT INTO patients (patient_id, name, ward, dose, admitted) "
               f"VALUES ({extra}, 'patient {extra}', 'A', 1, now())")
    stdout, report = validate(job, 1)
    assert report_line(dynamo, n, 1, 1, 1) in stdout
    assert report_line(pg, n, 1, 1, 1) in stdout
    dynamo_keys = [{"pk": f"PATIENT#{i}", "sk": "PROFILE"} for i in (changed, deleted, extra)]
    assert sorted(listed(report, table), key=repr) == sorted([
        ("changed", dynamo_keys[0], [("ward", WARDS[changed % len(WARDS)], "Nowhere")]),
        ("missing", dynamo_keys[1], []),
        ("extra", dynamo_keys[2], []),
    ], key=repr)
    assert sorted(listed(report, "patients"), key=repr) == sorted([
        ("changed", {"patient_id": changed}, [("name", f"patient {changed}", "someone else")]),
        ("missing", {"patient_id": deleted}, []),
        ("extra", {"patient_id": extra}, []),
    ], key=repr)

    # Undo the tampering; then one timestamp, on each target, one microsecond later.
    source = document(changed)
    dynamodb_client.update_item(TableName=table, Key=dynamo_key(changed), UpdateExpression="SET ward = :w",
                                ExpressionAttributeValues={":w": {"S": source["ward"]}})
    dynamodb_client.delete_item(TableName=table, Key=dynamo_key(extra))
    deleted_item = document(deleted)
    dynamodb_client.put_item(TableName=table, Item={
        **dynamo_key(deleted), "name": {"S": deleted_item["name"]}, "ward": {"S": deleted_item["ward"]},
        "dose": {"N": str(deleted_item["dose"].to_decimal())},
        "admitted": {"S": stored_timestamp(deleted_item["admitted"])}})
    pg_execute(pg_database, f"UPDATE patients SET name = 'patient {changed}' WHERE patient_id = {changed}",
               f"DELETE FROM patients WHERE patient_id = {extra}",
               "INSERT INTO patients (patient_id, name, ward, dose, admitted) VALUES "
               f"({deleted}, 'patient {deleted}', '{deleted_item['ward']}', "
               f"{deleted_item['dose'].to_decimal()}, '{deleted_item['admitted'].isoformat()}')")
    late = n // 4
    admitted = document(late)["admitted"]
    later = admitted + timedelta(microseconds=1)
    dynamodb_client.update_item(TableName=table, Key=dynamo_key(late), UpdateExpression="SET admitted = :a",
                                ExpressionAttributeValues={":a": {"S": stored_timestamp(later)}})
    pg_execute(pg_database, "UPDATE patients SET admitted = admitted + interval '1 microsecond' "
                            f"WHERE patient_id = {late}")
    stdout, report = validate(job, 1)
    assert report_line(dynamo, n, changed=1) in stdout
    assert report_line(pg, n, changed=1) in stdout
    assert listed(report, table) == [
        ("changed", {"pk": f"PATIENT#{late}", "sk": "PROFILE"},
         [("admitted", admitted.isoformat(), later.isoformat())]),
    ]
    assert listed(report, "patients") == [
        ("changed", {"patient_id": late}, [("admitted", admitted.isoformat(), later.isoformat())]),
    ]

    # Compared at millisecond precision, the microsecond is within tolerance; the report says so.
    text = job.read_text()
    assert text.count("consistent_reads: true}") == 1
    job.write_text(text.replace("consistent_reads: true}",
                                "consistent_reads: true, tolerances: {timestamp_precision: 3}}"))
    stdout, report = validate(job, 0)
    assert report_line(dynamo, n) in stdout
    assert report_line(pg, n) in stdout
    assert "Compared with tolerances: timestamp_precision=3" in stdout
    assert [c["tolerances"] for c in report["validation"]] == [{"timestamp_precision": 3}] * 2
