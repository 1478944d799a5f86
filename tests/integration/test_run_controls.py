"""Run controls on the real servers: re-runs, --full-refresh, --limit, max_rejects, --shard, SIGTERM."""

from __future__ import annotations

import pytest

from etl.engine.plan import Shard
from etl.engine.runner import RunOptions, run_job
from etl.job import load_job
from etl.sinks.deadletter import read_dead_letters
from etl.state.sqlite import Config as SqliteConfig
from etl.state.sqlite import open_store
from tests.integration.run_helpers import (
    HMAC_KEY,
    patients,
    patients_mapping,
    pg_scalar,
    run_cli,
    saved_report,
    write_job,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def hmac_key(monkeypatch):
    monkeypatch.setenv("ETL_DEMO_HMAC_KEY", HMAC_KEY)


def make_job(tmp_path, mongo_db, pg_database, *, records=100, partitions=2, **options):
    mongo_db.patients.insert_many(patients(records))
    return write_job(tmp_path, name="controls", database=mongo_db.name, collection="patients",
                     mapping=patients_mapping(tmp_path), pg_dsn=pg_database, dynamo=False,
                     partitions=partitions, after_run=False, **options)


def test_a_finished_job_rerun_does_nothing_until_full_refresh(tmp_path, mongo_db, pg_database, hmac_key):
    job = load_job(make_job(tmp_path, mongo_db, pg_database))
    first = run_job(job, RunOptions(validate=True))
    assert (first.status, first.tables[0].extracted, first.tables[0].loaded) == ("succeeded", 100, 100)
    pg_scalar(pg_database, "UPDATE patients SET name = 'edited' WHERE patient_id = 5 RETURNING 1")

    again = run_job(job)
    assert again.status == "nothing to do" and again.exit_code == 0
    assert again.message.startswith(
        "job controls has already finished and its targets were proven equal to its sources at ")
    assert again.tables[0].extracted_this_run == 0
    assert pg_scalar(pg_database, "SELECT name FROM patients WHERE patient_id = 5") == "edited"

    refreshed = run_job(job, RunOptions(full_refresh=True, validate=True))
    assert (refreshed.status, refreshed.tables[0].extracted, refreshed.tables[0].extracted_this_run) == (
        "succeeded", 100, 100)
    assert pg_scalar(pg_database, "SELECT name FROM patients WHERE patient_id = 5") == "patient 5"


def test_limit_is_a_quick_try_that_keeps_no_checkpoint(tmp_path, mongo_db, pg_database, hmac_key):
    job = load_job(make_job(tmp_path, mongo_db, pg_database, batch_records=10))
    report = run_job(job, RunOptions(limit=7))
    assert (report.status, report.exit_code) == ("unproven", 4)
    assert (report.tables[0].extracted, report.tables[0].loaded) == (7, 7)
    assert pg_scalar(pg_database, "SELECT count(*) FROM patients") == 7
    store = open_store(SqliteConfig(), base_dir=tmp_path)
    assert store.checkpoints("controls") == {}
    store.close()


def test_max_rejects_stops_the_run_with_the_most_frequent_reasons(tmp_path, mongo_db, pg_database, hmac_key):
    mongo_db.patients.insert_many(patients(30))
    for patient_id in (3, 4, 9):
        mongo_db.patients.update_one({"_id": patient_id}, {"$set": {"balance": "lots"}})
    mongo_db.patients.update_one({"_id": 12}, {"$unset": {"email": ""}})
    path = write_job(tmp_path, name="rejects", database=mongo_db.name, collection="patients",
                     mapping=patients_mapping(tmp_path), pg_dsn=pg_database, dynamo=False, partitions=1,
                     after_run=False, max_rejects="2")
    result = run_cli(path)
    assert result.returncode == 3, result.stdout + result.stderr
    report = saved_report(result.stdout)
    assert report["status"] == "failed"
    assert report["message"].startswith(
        "too many rejected records: 4 of 30 extracted, more than max_rejects 2 allows; most frequent: ")
    reasons = {r["reason"]: r["count"] for r in report["tables"][0]["top_reasons"]}
    assert sorted(reasons.values()) == [1, 3]
    letters = list(read_dead_letters(tmp_path / ".etl" / "dead_letter.jsonl"))
    assert sorted(letter["source_key"] for letter in letters) == ["_id=12", "_id=3", "_id=4", "_id=9"]
    assert all("lots" not in str(letter["reason"]) for letter in letters)
    assert report["tables"][0]["extracted"] == report["tables"][0]["loaded"] + 4


def test_shards_together_run_the_job_exactly_once(tmp_path, mongo_db, pg_database, hmac_key):
    job = load_job(make_job(tmp_path, mongo_db, pg_database, records=300, partitions=4, batch_records=25))
    reports = [run_job(job, RunOptions(shard=Shard(k, 3), validate=True)) for k in range(3)]
    assert [r.status for r in reports] == ["succeeded"] * 3
    # only the last shard to finish validates: before, other shards' rows are not there yet
    assert [r.validation is None for r in reports] == [True, True, False]
    assert [(c.table, c.ok, c.rows_target) for c in reports[2].validation][0] == ("patients", True, 300)
    assert [r.tables[0].partitions for r in reports] == [2, 1, 1]
    assert sum(r.tables[0].extracted for r in reports) == 300
    assert pg_scalar(pg_database, "SELECT count(*) FROM patients") == 300
    store = open_store(SqliteConfig(), base_dir=tmp_path)
    checkpoints = store.checkpoints("controls")
    assert len(checkpoints) == 4 and all(c.done for c in checkpoints.values())
    store.close()
    assert run_job(job, RunOptions(shard=Shard(1, 3))).status == "nothing to do"


def test_sigterm_finishes_in_flight_batches_and_the_next_run_resumes(tmp_path, mongo_db, pg_database):
    path = make_job(tmp_path, mongo_db, pg_database, records=3000, partitions=2, batch_records=20)
    store = open_store(SqliteConfig(), base_dir=tmp_path)
    # the run sends itself SIGTERM once its 10th batch is checkpointed: an exact moment, not a timing
    result = run_cli(path, fault="term:batch:10")
    assert result.returncode == 3, result.stdout + result.stderr
    report = saved_report(result.stdout)
    assert report["status"] == "stopped"
    assert report["message"] == "stopped by SIGTERM"
    assert f"run `python -m etl.run {path} --resume` to continue" in report["hint"]
    checkpoints = store.checkpoints("controls")
    assert not all(c.done for c in checkpoints.values())
    committed = sum(c.counts["extracted"] for c in checkpoints.values())
    assert 200 <= committed == report["tables"][0]["extracted"] < 3000
    resumed = run_cli(path)
    assert resumed.returncode == 4, resumed.stdout + resumed.stderr  # moved and counted; after_run is false
    assert saved_report(resumed.stdout)["tables"][0]["extracted"] == 3000
    store.close()
