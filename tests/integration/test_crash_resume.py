"""The proof: a job killed with SIGKILL at 10 seeded moments and resumed each time ends with every
target holding exactly the expected rows — none twice, none missing — and with its record
accounting exact (every record counted once however often its batch was replayed).

The moments are exact, whatever the machine's load: each run kills itself through the test-only
fault hook (ETL_TEST_FAULT, etl/engine/faults.py) at the n-th time it reaches a seeded point —
after reading a batch, after one sink wrote it, or after its checkpoint — with n chosen so that
the run must reach it before it could finish (every batch holds at most `batch` records).
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import pytest

from etl.state.sqlite import Config as SqliteConfig
from etl.state.sqlite import open_store
from tests.integration.run_helpers import (
    dynamo_count,
    patients,
    patients_mapping,
    pg_scalar,
    run_cli,
    saved_report,
    write_job,
)

pytestmark = pytest.mark.integration

SEED = 20261126
KILLS = 10


def committed(store, job: str) -> int:
    return sum(c.counts.get("extracted", 0) for c in store.checkpoints(job).values())


def crash_and_resume(tmp_path: Path, mongo_db, pg_dsn: str, *, records: int, batch: int,
                     dynamo_table: str | None, dynamodb_client=None, timeout: float = 300) -> None:
    documents = patients(records, seed=SEED)
    for start in range(0, records, 5000):
        mongo_db.patients.insert_many(documents[start:start + 5000])
    mapping = patients_mapping(tmp_path, dynamo_table=dynamo_table)
    job = write_job(tmp_path, name="crash", database=mongo_db.name, collection="patients", mapping=mapping,
                    pg_dsn=pg_dsn, partitions=4, parallelism=2, batch_records=batch,
                    dynamo=dynamo_table is not None)
    store = open_store(SqliteConfig(), base_dir=tmp_path)
    rng = random.Random(SEED)
    thresholds = sorted(rng.sample(range(records // 20, records - records // 20), KILLS))
    faults = []
    for threshold in thresholds:
        done = committed(store, "crash")
        left = -(-(records - done) // batch)  # batches this run must commit at the least
        nth = min(max(1, -(-(threshold - done) // batch)), left)
        point = rng.choice(["read", "write", "batch"])
        faults.append(f"kill:{point}:{nth}")
        killed = run_cli(job, fault=faults[-1], timeout=timeout)
        assert killed.returncode == -9, (faults[-1], killed.stdout[-3000:] + killed.stderr[-3000:])
        # no wait: the killed run's lease is unexpired (60 s), but the next run on this host sees
        # its process is dead and takes it over (etl/state/liveness.py)

    final = run_cli(job, timeout=timeout)
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    report = saved_report(final.stdout)
    table = report["tables"][0]
    # cumulative over the 11 runs: each record counted exactly once despite the replays
    figures = (table["extracted"], table["loaded"], table["rejected"], table["filtered"])
    assert figures == (records, records, 0, 0)
    assert table["partitions_done"] == table["partitions"] == 4

    visits = [v for d in documents for v in d["visits"]]
    assert pg_scalar(pg_dsn, "SELECT count(*) FROM patients") == records
    assert pg_scalar(pg_dsn, "SELECT count(DISTINCT patient_id) FROM patients") == records
    assert pg_scalar(pg_dsn, "SELECT min(patient_id) FROM patients") == 1
    assert pg_scalar(pg_dsn, "SELECT max(patient_id) FROM patients") == records
    assert pg_scalar(pg_dsn, "SELECT count(*) FROM visits") == len(visits)
    assert pg_scalar(pg_dsn, "SELECT sum(balance) FROM patients") == sum(d["balance"].to_decimal()
                                                                         for d in documents)
    assert pg_scalar(pg_dsn, "SELECT sum(cost) FROM visits") == sum((v["cost"].to_decimal() for v in visits),
                                                                    Decimal(0))
    if dynamo_table is not None:
        assert dynamo_count(dynamodb_client, dynamo_table) == records

    # row-by-row: bucket checksums of every target table against the source, through etl.checksum
    assert report["status"] == "succeeded"
    checks = {(c["target"], c["table"]): (c["ok"], c["rows_source"], c["rows_target"], c["missing"],
                                          c["extra"], c["changed"]) for c in report["validation"]}
    expected = {("pg", "patients"): (True, records, records, 0, 0, 0),
                ("pg", "visits"): (True, len(visits), len(visits), 0, 0, 0)}
    if dynamo_table is not None:
        expected[("dynamo", dynamo_table)] = (True, records, records, 0, 0, 0)
    assert checks == expected
    store.close()


def test_killed_ten_times_then_resumed_small(tmp_path, mongo_db, pg_database, dynamodb_client,
                                            dynamodb_table_prefix):
    """The same logic on 2,000 records, to PostgreSQL and DynamoDB at once."""
    crash_and_resume(tmp_path, mongo_db, pg_database, records=2000, batch=40,
                     dynamo_table=f"{dynamodb_table_prefix}_patients", dynamodb_client=dynamodb_client)


@pytest.mark.timeout(1800)
def test_killed_ten_times_then_resumed_50k(tmp_path, mongo_db, pg_database):
    """The full proof on 50,000 records, about 3 minutes on 2 idle cores (PostgreSQL only:
    DynamoDB Local makes it many minutes longer; the 2,000-record test covers DynamoDB)."""
    crash_and_resume(tmp_path, mongo_db, pg_database, records=50_000, batch=500, dynamo_table=None,
                     timeout=1800)
