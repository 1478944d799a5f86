"""Incremental runs from the command line (docs/cutover.md): a full load of a live MongoDB collection,
then rounds of changes — inserts, updates, arrays that grow and shrink, replacements, deletes —
each applied by `--incremental` and proven by its validation, into PostgreSQL (a parent table and
a child table exploded from an array) and DynamoDB (a single-table design: a profile item and one
item per array element). After every round both targets hold exactly what the source holds."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

import pytest
from bson.decimal128 import Decimal128

from tests.integration.run_helpers import (
    PATIENTS_MAPPING,
    dynamo_count,
    environment,
    patients,
    pg_scalar,
    run_cli,
    saved_report,
    write_job,
)
from tests.jobfiles import REPORT, RUN_FILES, dynamodb_target, postgres_target, write_job_file

pytestmark = pytest.mark.integration

SINGLE_TABLE = """\
  - target: dynamo
    table: {table}
    key: [pk, sk]
    columns:
      pk: {{template: "PATIENT#{{_id}}"}}
      sk: {{const: PROFILE}}
      name: name
      balance: {{from: balance, type: "decimal(12,2)", required: true}}
  - target: dynamo
    table: {table}
    explode: visits[]
    key: [pk, sk]
    columns:
      pk: {{template: "PATIENT#{{$root._id}}"}}
      sk: {{template: "VISIT#{{visit_id}}"}}
      ward: ward
      cost: {{from: cost, type: "decimal(10,2)", required: true}}
"""


def incremental_job(tmp_path: Path, mongo_db, pg_dsn: str, table: str, *, name: str = "cutover") -> Path:
    mapping = tmp_path / "patients.yaml"
    mapping.write_text(PATIENTS_MAPPING + SINGLE_TABLE.format(table=table))
    job = write_job(tmp_path, name=name, database=mongo_db.name, collection="patients", mapping=mapping,
                    pg_dsn=pg_dsn, partitions=2, parallelism=2, batch_records=7)
    job.write_text(job.read_text() + "incremental: true\n")
    return job


def expected(collection) -> tuple[int, int]:
    """(patients, visits) the source holds now."""
    documents = list(collection.find({}, {"visits": 1}))
    return len(documents), sum(len(d.get("visits", [])) for d in documents)


def assert_targets_equal_source(collection, pg_dsn: str, dynamodb_client, table: str) -> None:
    people, visits = expected(collection)
    assert pg_scalar(pg_dsn, "SELECT count(*) FROM patients") == people
    assert pg_scalar(pg_dsn, "SELECT count(*) FROM visits") == visits
    assert dynamo_count(dynamodb_client, table) == people + visits


def visit(visit_id: int, ward: str, cost: str) -> dict:
    return {"visit_id": visit_id, "ward": ward, "cost": Decimal128(Decimal(cost))}


def test_rounds_of_changes_applied_with_deletes_into_both_targets(tmp_path, mongo_db, pg_database,
                                                                 dynamodb_client, dynamodb_table_prefix):
    table = f"{dynamodb_table_prefix}_cut"
    collection = mongo_db.patients
    originals = patients(40, seed=11)
    collection.insert_many(copy.deepcopy(originals))
    job = incremental_job(tmp_path, mongo_db, pg_database, table)

    full = run_cli(job)
    assert full.returncode == 0, full.stdout + full.stderr
    assert_targets_equal_source(collection, pg_database, dynamodb_client, table)

    # round 1: an insert, an update that shrinks an array, one that grows it, a replacement, a delete
    collection.insert_one({**patients(1, seed=3, start=41)[0], "visits": [visit(4101, "A", "10.00")]})
    collection.update_one({"_id": 2}, {"$set": {"visits": [visit(9001, "B", "1.50")], "name": "renamed"}})
    collection.update_one({"_id": 3}, {"$push": {"visits": {"$each": [visit(9002, "C", "2.00"),
                                                                       visit(9003, "ICU", "3.00")]}}})
    collection.replace_one({"_id": 4}, {**patients(1, seed=5, start=4)[0], "visits": []})
    collection.delete_one({"_id": 5})
    first = run_cli(job, "--incremental")
    assert first.returncode == 0, first.stdout + first.stderr
    assert_targets_equal_source(collection, pg_database, dynamodb_client, table)
    assert pg_scalar(pg_database, "SELECT name FROM patients WHERE patient_id = 2") == "renamed"
    assert pg_scalar(pg_database, "SELECT count(*) FROM patients WHERE patient_id = 5") == 0
    assert pg_scalar(pg_database, "SELECT count(*) FROM visits WHERE patient_id = 5") == 0
    gone = dynamodb_client.query(TableName=table, KeyConditionExpression="pk = :pk",
                                 ExpressionAttributeValues={":pk": {"S": "PATIENT#5"}}, ConsistentRead=True)
    assert gone["Items"] == []
    two = dynamodb_client.query(TableName=table, KeyConditionExpression="pk = :pk",
                                ExpressionAttributeValues={":pk": {"S": "PATIENT#2"}}, ConsistentRead=True)
    assert sorted(item["sk"]["S"] for item in two["Items"]) == ["PROFILE", "VISIT#9001"]
    report = saved_report(first.stdout)
    assert report["mode"] == "incremental" and report["status"] == "succeeded"
    (line,) = report["tables"]
    assert line["table"] == "mongo.patients"
    changes = line["changes"]
    assert changes["method"] == "change stream"
    assert changes["applied"] == {"delete": 1, "insert": 1, "update": 3}
    assert (line["extracted"], line["loaded"], line["rejected"]) == (5, 5, 0)
    assert changes["lag_seconds"] == 0.0 and changes["caught_up_at"] and changes["position"]["token"]
    # 2: one visit item gone, one new; 4: replaced without visits; 5: deleted (PG visits go with parents)
    assert changes["rows_deleted"] == (
        len(originals[1]["visits"]) + len(originals[3]["visits"]) + 2 + len(originals[4]["visits"]))
    assert all(check["ok"] for check in report["validation"])

    # a plain run restates the proof and says how to catch up
    plain = run_cli(job)
    assert plain.returncode == 0 and "nothing to do" in plain.stdout
    assert "changes made at the sources since then are applied by `python -m etl.run" in plain.stdout
    assert "--incremental`" in plain.stdout

    # round 2: nothing changed: nothing applied, still proven
    second = run_cli(job, "--incremental")
    assert second.returncode == 0, second.stdout + second.stderr
    assert_targets_equal_source(collection, pg_database, dynamodb_client, table)

    # round 3: many deletes and a re-insert of a deleted key
    collection.delete_many({"_id": {"$gte": 30}})
    collection.insert_one({**patients(1, seed=9, start=5)[0]})
    third = run_cli(job, "--incremental")
    assert third.returncode == 0, third.stdout + third.stderr
    assert_targets_equal_source(collection, pg_database, dynamodb_client, table)
    assert pg_scalar(pg_database, "SELECT count(*) FROM patients WHERE patient_id >= 30") == 0


def test_incremental_refused_before_a_full_load_and_without_incremental_true(tmp_path, mongo_db, pg_database,
                                                                              dynamodb_table_prefix):
    table = f"{dynamodb_table_prefix}_ref"
    mongo_db.patients.insert_many(patients(5, seed=1))
    job = incremental_job(tmp_path, mongo_db, pg_database, table)
    early = run_cli(job, "--incremental")
    assert early.returncode == 2, early.stdout + early.stderr
    assert ("error: job cutover has not finished its full load; there is nothing to catch up yet"
            in early.stderr)

    plain = tmp_path / "plain"
    plain.mkdir()
    job = incremental_job(plain, mongo_db, pg_database, table + "p", name="plain")
    job.write_text(job.read_text().replace("incremental: true\n", ""))
    assert run_cli(job).returncode == 0
    refused = run_cli(job, "--incremental")
    assert refused.returncode == 2
    assert "error: job plain does not keep what incremental runs need" in refused.stderr
    assert "set `incremental: true`" in refused.stderr


def test_killed_while_applying_changes_resumes_and_proves(tmp_path, mongo_db, pg_database, dynamodb_client,
                                                         dynamodb_table_prefix):
    table = f"{dynamodb_table_prefix}_kill"
    collection = mongo_db.patients
    collection.insert_many(patients(30, seed=21))
    job = incremental_job(tmp_path, mongo_db, pg_database, table)
    assert run_cli(job).returncode == 0
    collection.delete_many({"_id": {"$lte": 10}})
    collection.update_many({"_id": {"$gt": 20}}, {"$set": {"visits": []}})
    collection.insert_many(patients(15, seed=22, start=100))
    killed = run_cli(job, "--incremental", fault="kill:batch:2")
    assert killed.returncode == -9, killed.stdout + killed.stderr
    # the killed run left the verdict unproven: a plain run validates and does not call it green
    plain = run_cli(job)
    assert plain.returncode == 1, plain.stdout + plain.stderr
    resumed = run_cli(job, "--incremental")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_targets_equal_source(collection, pg_database, dynamodb_client, table)
    state = json.loads(json.dumps(saved_report(resumed.stdout)["tables"][0]["changes"]))
    assert state["method"]


def dump_job(tmp_path: Path, pg_dsn: str, table: str) -> tuple[Path, Path]:
    """An incremental job reading a mongodump folder into the same targets as the live jobs above."""
    dump = tmp_path / "dump"
    job = write_job_file(tmp_path, f"""\
version: 1
name: dumped
sources:
  dump:
    type: mongodump
    path: {json.dumps(str(dump))}
    database: clinic
    tables:
      patients: {{mapping: patients.yaml, partitions: 2}}
targets:
  pg: {postgres_target(pg_dsn, create="if_missing")}
  dynamo: {dynamodb_target()}
batch: {{records: 7}}
{RUN_FILES}validation: {{after_run: true, consistent_reads: true}}
{REPORT}incremental: true
""", name="dump.yaml", mappings={"patients.yaml": PATIENTS_MAPPING + SINGLE_TABLE.format(table=table)})
    return job, dump


def write_dump(dump: Path, documents: list[dict], oplog: list[dict] = ()) -> None:
    """A mongodump folder (as `mongodump --oplog` writes it): the collection, and the oplog if any."""
    import shutil

    import bson

    shutil.rmtree(dump, ignore_errors=True)
    (dump / "clinic").mkdir(parents=True)
    (dump / "clinic" / "patients.bson").write_bytes(b"".join(bson.encode(d) for d in documents))
    if oplog:
        (dump / "oplog.bson").write_bytes(b"".join(bson.encode(entry) for entry in oplog))


def test_a_newer_dump_with_its_oplog_is_applied_with_deletes(tmp_path, pg_database, dynamodb_client,
                                                            dynamodb_table_prefix):
    """A dump cannot say what changed: `--incremental` reads the newer dump whole, applies its oplog
    (deletes included: rows an earlier run wrote go) and deletes what the newer dump no longer has."""
    import bson

    table = f"{dynamodb_table_prefix}_dump"
    job, dump = dump_job(tmp_path, pg_database, table)
    first = patients(20, seed=31)
    first[3]["visits"] = [visit(401, "A", "1.00"), visit(402, "B", "2.00"), visit(403, "C", "3.00")]
    write_dump(dump, first)
    assert run_cli(job).returncode == 0
    assert pg_scalar(pg_database, "SELECT count(*) FROM patients") == 20

    newer = [copy.deepcopy(d) for d in first if d["_id"] != 7]  # 7 was deleted before the newer dump
    newer[3]["visits"] = newer[3]["visits"][:1]                    # 4 shrank
    oplog = [
        {"ts": bson.Timestamp(100, 1), "op": "d", "ns": "clinic.patients", "o": {"_id": 3}},
        {"ts": bson.Timestamp(100, 2), "op": "i", "ns": "clinic.patients",
         "o": {**patients(1, seed=5, start=50)[0], "visits": [visit(5001, "A", "5.00")]}},
        {"ts": bson.Timestamp(100, 3), "op": "u", "ns": "clinic.patients", "o2": {"_id": 9},
         "o": {"$v": 2, "diff": {"u": {"name": "nine"}}}},
    ]
    write_dump(dump, newer, oplog)
    caught_up = run_cli(job, "--incremental")
    assert caught_up.returncode == 0, caught_up.stdout + caught_up.stderr
    ids = sorted({d["_id"] for d in newer} - {3} | {50})
    assert pg_scalar(pg_database, "SELECT array_agg(patient_id ORDER BY patient_id) FROM patients") == ids
    expected_visits = sum(len(d["visits"]) for d in newer if d["_id"] != 3) + 1
    assert pg_scalar(pg_database, "SELECT count(*) FROM visits") == expected_visits
    assert dynamo_count(dynamodb_client, table) == len(ids) + expected_visits
    assert pg_scalar(pg_database, "SELECT name FROM patients WHERE patient_id = 9") == "nine"
    (line,) = saved_report(caught_up.stdout)["tables"]
    assert line["changes"]["method"] == "re-read"
    assert line["changes"]["found_deleted"] == 1  # 7: in no part of the newer dump
    v3, v4, v7 = (len(first[n - 1]["visits"]) for n in (3, 4, 7))
    # PostgreSQL counts parent rows (their visits go with them), DynamoDB every item
    assert line["changes"]["rows_deleted"] == (1 + 1 + v7) + (1 + 1 + v3) + (v4 - 1)


def test_follow_applies_changes_until_stopped_then_an_incremental_run_proves(tmp_path, mongo_db, pg_database,
                                                                            dynamodb_client,
                                                                            dynamodb_table_prefix):
    """`--follow` keeps catching up; stopped (SIGTERM, at the exact moment the fault hook picks: the
    second time it finds nothing waiting) it ends unproven, and `--incremental` then proves."""
    table = f"{dynamodb_table_prefix}_follow"
    collection = mongo_db.patients
    collection.insert_many(patients(12, seed=41))
    job = incremental_job(tmp_path, mongo_db, pg_database, table)
    assert run_cli(job).returncode == 0
    collection.insert_many(patients(3, seed=42, start=20))
    collection.delete_one({"_id": 1})
    followed = run_cli(job, "--follow", "--poll", "1", fault="term:caught-up:2")
    assert followed.returncode == 4, followed.stdout + followed.stderr
    assert "following stopped: the targets hold every change applied until then" in followed.stdout
    report = saved_report(followed.stdout)
    assert report["status"] == "unproven" and report["validation"] is None
    assert report["tables"][0]["changes"]["applied"] == {"delete": 1, "insert": 3}
    assert_targets_equal_source(collection, pg_database, dynamodb_client, table)
    proven = run_cli(job, "--incremental")
    assert proven.returncode == 0, proven.stdout + proven.stderr
    assert saved_report(proven.stdout)["tables"][0]["changes"]["applied"] == {}


def test_a_catch_up_from_the_notebook_api(tmp_path, mongo_db, pg_database, dynamodb_client,
                                          dynamodb_table_prefix, monkeypatch):
    from etl.api import open_job

    for name, value in environment().items():
        monkeypatch.setenv(name, value)
    table = f"{dynamodb_table_prefix}_api"
    collection = mongo_db.patients
    collection.insert_many(patients(8, seed=51))
    job = open_job(incremental_job(tmp_path, mongo_db, pg_database, table))
    assert job.run().status == "succeeded"
    collection.delete_many({"_id": {"$in": [2, 4]}})
    collection.update_one({"_id": 6}, {"$set": {"visits": []}})
    report = job.run(incremental=True)
    assert report.status == "succeeded" and report.mode == "incremental"
    assert report.tables[0].changes["applied"] == {"delete": 2, "update": 1}
    assert_targets_equal_source(collection, pg_database, dynamodb_client, table)


PII_KEYED = """\
version: 1
source:
  key: [_id]
targets:
  dynamo: dynamodb
pii:
  _id: {{hmac: "${{env:ETL_DEMO_HMAC_KEY}}"}}
outputs:
  - target: dynamo
    table: {table}
    key: [pk, sk]
    columns:
      pk: {{template: "PERSON#{{_id}}"}}
      sk: {{const: PROFILE}}
      name: name
  - target: dynamo
    table: {table}
    explode: visits[]
    key: [pk, sk]
    columns:
      pk: {{template: "PERSON#{{$root._id}}"}}
      sk: {{template: "VISIT#{{visit_id}}"}}
"""


def test_a_key_that_is_pii_is_caught_up_by_its_own_key(tmp_path, mongo_db, pg_database, dynamodb_client,
                                                       dynamodb_table_prefix):
    """Rows and rejects carry the key as the mapping's PII rule shows it (an HMAC); the ledger finds the
    rows of a deleted or shrunk record all the same."""
    table = f"{dynamodb_table_prefix}_pii"
    collection = mongo_db.people
    collection.insert_many([{"_id": f"p{n}@example.org", "name": f"person {n}",
                             "visits": [{"visit_id": n * 10 + v} for v in range(3)]} for n in range(6)])
    (tmp_path / "people.yaml").write_text(PII_KEYED.format(table=table))
    job = write_job(tmp_path, name="pii", database=mongo_db.name, collection="people",
                    mapping=tmp_path / "people.yaml", pg_dsn=pg_database, partitions=1, batch_records=4)
    job.write_text(job.read_text().replace("  pg: {type: postgres", "  unused_pg: {type: postgres")
                   + "incremental: true\n")
    assert run_cli(job).returncode == 0
    assert dynamo_count(dynamodb_client, table) == 6 * 4
    collection.delete_one({"_id": "p1@example.org"})
    collection.update_one({"_id": "p2@example.org"}, {"$set": {"visits": [{"visit_id": 20}]}})
    caught_up = run_cli(job, "--incremental")
    assert caught_up.returncode == 0, caught_up.stdout + caught_up.stderr
    assert dynamo_count(dynamodb_client, table) == 6 * 4 - 4 - 2
    assert "p1@example.org" not in (tmp_path / ".etl" / "reports").joinpath(
        saved_report(caught_up.stdout)["files"][0].rsplit("/", 1)[-1]).read_text()


def test_a_rejected_change_removes_the_stale_rows_and_the_policy_holds_over_every_catch_up(
        tmp_path, mongo_db, pg_database, dynamodb_client, dynamodb_table_prefix):
    """A change the mapping rejects leaves no stale version of its record in any target, goes to the
    dead letters, and fails every catch-up while `max_rejects` does not allow it."""
    table = f"{dynamodb_table_prefix}_rej"
    collection = mongo_db.patients
    collection.insert_many(patients(10, seed=61))
    job = incremental_job(tmp_path, mongo_db, pg_database, table)
    assert run_cli(job).returncode == 0
    collection.update_one({"_id": 3}, {"$unset": {"balance": ""}})  # balance is required
    failed = run_cli(job, "--incremental")
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert "too many rejected records: 1 of 1 extracted, more than max_rejects 0 allows" in failed.stdout
    assert pg_scalar(pg_database, "SELECT count(*) FROM patients WHERE patient_id = 3") == 0
    three = dynamodb_client.query(TableName=table, KeyConditionExpression="pk = :pk",
                                  ExpressionAttributeValues={":pk": {"S": "PATIENT#3"}}, ConsistentRead=True)
    assert three["Items"] == []
    dead = [json.loads(line) for line in (tmp_path / ".etl" / "dead_letter.jsonl").read_text().splitlines()]
    assert [(d["source_key"], d["field_path"]) for d in dead] == [("_id=3", "balance")]
    again = run_cli(job, "--incremental")
    assert again.returncode == 3 and "1 of 1 applied since the full load" in again.stdout
    job.write_text(job.read_text().replace("max_rejects: 0", "max_rejects: 1"))
    allowed = run_cli(job, "--incremental")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    people, visits = expected(collection)
    three_visits = len(collection.find_one({"_id": 3})["visits"])
    assert pg_scalar(pg_database, "SELECT count(*) FROM patients") == people - 1
    assert pg_scalar(pg_database, "SELECT count(*) FROM visits") == visits - three_visits
    assert dynamo_count(dynamodb_client, table) == people - 1 + visits - three_visits
