"""The local executor with worker processes (`executor: {type: local, processes: true}`) on the real
servers: exact counts and a proven verdict, rejects in the dead letters, a worker process killed or
terminated mid-run (a failed run that the next run resumes and proves), and a SIGTERM stop.

Every crash happens at an exact moment through the test-only fault hook (ETL_TEST_FAULT), which the
worker processes inherit: `kill:batch:2` kills a worker process once it checkpointed its 2nd batch.
"""

from __future__ import annotations

import os
import signal

import pytest

from etl.engine.runner import RunOptions, run_job
from etl.job import load_job
from etl.sinks.deadletter import read_dead_letters
from etl.state.sqlite import Config as SqliteConfig
from etl.state.sqlite import open_store
from tests.integration.run_helpers import (
    HMAC_KEY,
    dynamo_count,
    patients,
    patients_mapping,
    pg_scalar,
    run_cli,
    saved_report,
    write_job,
)

pytestmark = pytest.mark.integration

PROCESSES = "{type: local, processes: true}"
REJECTED = (7, 250)
"""Patients whose balance is not a number: the mapping rejects them."""


def make_job(tmp_path, mongo_db, pg_database, *, records: int, dynamo_table: str | None = None,
             max_rejects: int = len(REJECTED), **options):
    mongo_db.patients.insert_many(patients(records))
    for patient_id in REJECTED:
        mongo_db.patients.update_one({"_id": patient_id}, {"$set": {"balance": "lots"}})
    return write_job(tmp_path, name="procs", database=mongo_db.name, collection="patients",
                     mapping=patients_mapping(tmp_path, dynamo_table=dynamo_table), pg_dsn=pg_database,
                     dynamo=dynamo_table is not None, partitions=4, parallelism=2, executor=PROCESSES,
                     max_rejects=str(max_rejects), **options)


def visits(records: int) -> int:
    return sum(len(d["visits"]) for d in patients(records) if d["_id"] not in REJECTED)


def assert_proven(report: dict, pg_database: str, records: int, dynamo: tuple | None = None) -> None:
    loaded = records - len(REJECTED)
    assert report["status"] == "succeeded", report["message"]
    table = report["tables"][0]
    assert (table["extracted"], table["loaded"], table["rejected"], table["filtered"]) == (
        records, loaded, len(REJECTED), 0)
    assert table["partitions_done"] == table["partitions"] == 4
    assert pg_scalar(pg_database, "SELECT count(*) FROM patients") == loaded
    assert pg_scalar(pg_database, "SELECT count(*) FROM visits") == visits(records)
    checks = {(c["target"], c["table"]): (c["ok"], c["rows_source"], c["rows_target"])
              for c in report["validation"]}
    expected = {("pg", "patients"): (True, loaded, loaded),
                ("pg", "visits"): (True, visits(records), visits(records))}
    if dynamo is not None:
        client, name = dynamo
        assert dynamo_count(client, name) == loaded
        expected[("dynamo", name)] = (True, loaded, loaded)
    assert checks == expected


def test_worker_processes_move_reject_and_prove(tmp_path, mongo_db, pg_database, dynamodb_client,
                                                dynamodb_table_prefix):
    table = f"{dynamodb_table_prefix}_patients"
    path = make_job(tmp_path, mongo_db, pg_database, records=400, batch_records=50, dynamo_table=table)
    result = run_cli(path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert_proven(saved_report(result.stdout), pg_database, 400, (dynamodb_client, table))

    letters = list(read_dead_letters(tmp_path / ".etl" / "dead_letter.jsonl"))
    assert sorted(letter["source_key"] for letter in letters) == sorted(f"_id={i}" for i in REJECTED)
    assert all(letter["stage"] == "map" and letter["field_path"] == "balance" and letter["reason"]
               for letter in letters)


def test_max_rejects_counts_the_rejects_of_every_worker_process(tmp_path, mongo_db, pg_database):
    # the two rejects are in different partitions (ids 7 and 250 of 400 in 4 ranges): one per worker
    path = make_job(tmp_path, mongo_db, pg_database, records=400, batch_records=50, max_rejects=1)
    result = run_cli(path)
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    report = saved_report(result.stdout)
    assert report["status"] == "failed"
    assert report["message"].startswith("too many rejected records: 2 of ")
    assert "extracted, more than max_rejects 1 allows; most frequent: " in report["message"]
    assert [r["count"] for r in report["tables"][0]["top_reasons"]] == [2]


@pytest.mark.parametrize("fault", ["kill:batch:2", "term:batch:2"])
def test_a_worker_process_that_dies_fails_the_run_and_the_next_run_resumes(tmp_path, mongo_db, pg_database,
                                                                           fault):
    records = 2000
    path = make_job(tmp_path, mongo_db, pg_database, records=records, batch_records=50)
    crashed = run_cli(path, fault=fault)
    assert crashed.returncode == 3, crashed.stdout[-3000:] + crashed.stderr[-3000:]
    report = saved_report(crashed.stdout)
    assert report["status"] == "failed"
    assert "the worker process running it ended abruptly" in report["message"]
    store = open_store(SqliteConfig(), base_dir=tmp_path)
    checkpoints = store.checkpoints("procs")
    store.close()
    assert not all(c.done for c in checkpoints.values())
    committed = sum(c.counts.get("extracted", 0) for c in checkpoints.values())
    assert 100 <= committed == report["tables"][0]["extracted"] < records  # each worker committed 2 batches

    resumed = run_cli(path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    again = saved_report(resumed.stdout)
    assert again["tables"][0]["extracted_this_run"] == records - committed
    assert_proven(again, pg_database, records)


def test_sigterm_to_the_run_stops_the_workers_and_the_next_run_resumes(tmp_path, mongo_db, pg_database,
                                                                       monkeypatch):
    monkeypatch.setenv("ETL_DEMO_HMAC_KEY", HMAC_KEY)
    records = 1000
    job = load_job(make_job(tmp_path, mongo_db, pg_database, records=records, batch_records=25))
    signalled = []

    def first_batch(table, delta) -> None:
        # the run's process gets SIGTERM as soon as it hears of a committed batch: an exact moment
        if not signalled:
            signalled.append(table)
            os.kill(os.getpid(), signal.SIGTERM)

    stopped = run_job(job, RunOptions(on_progress=first_batch))
    assert (stopped.status, stopped.message, stopped.exit_code) == ("stopped", "stopped by SIGTERM", 3)
    assert stopped.validation is None
    store = open_store(SqliteConfig(), base_dir=tmp_path)
    committed = sum(c.counts.get("extracted", 0) for c in store.checkpoints("procs").values())
    store.close()
    assert 25 <= committed == stopped.tables[0].extracted <= records

    resumed = run_job(job)
    assert resumed.status == "succeeded", resumed.message
    assert resumed.tables[0].extracted_this_run == records - committed
    assert (resumed.tables[0].extracted, resumed.tables[0].loaded, resumed.tables[0].rejected) == (
        records, records - len(REJECTED), len(REJECTED))
    assert [(c.table, c.ok, c.rows_target) for c in resumed.validation] == [
        ("patients", True, records - len(REJECTED)), ("visits", True, visits(records))]
