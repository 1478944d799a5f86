"""Two runs of one job at once: the second exits 3 naming the holder and the expiry, writing nothing."""

from __future__ import annotations

import socket
import sqlite3
import subprocess

import pytest

from etl.state.base import now, to_epoch
from etl.state.sqlite import Config as SqliteConfig
from etl.state.sqlite import open_store
from tests.integration.run_helpers import (
    command,
    environment,
    patients,
    patients_mapping,
    pg_scalar,
    run_cli,
    saved_report,
    write_job,
)

pytestmark = pytest.mark.integration


def test_a_held_lease_stops_a_second_run(tmp_path, mongo_db, pg_database):
    mongo_db.patients.insert_many(patients(20))
    job = write_job(tmp_path, name="leased", database=mongo_db.name, collection="patients",
                    mapping=patients_mapping(tmp_path), pg_dsn=pg_database, dynamo=False)
    store = open_store(SqliteConfig(), base_dir=tmp_path)
    lease = store.acquire_lease("leased", "batch-host-7:pid4242", 300)
    until = lease.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC")

    second = run_cli(job)
    assert second.returncode == 3
    assert second.stderr.strip().splitlines()[-2:] == [
        f"error: job 'leased' is already running: its lease is held by 'batch-host-7:pid4242' until {until}",
        "  hint: wait for that run to finish, or for the lease to expire if that run died",
    ]
    assert "Traceback" not in second.stderr
    assert store.checkpoints("leased") == {}

    store.release_lease(lease)
    third = run_cli(job)
    assert third.returncode == 0, third.stdout + third.stderr
    assert saved_report(third.stdout)["status"] == "succeeded"
    assert len(store.checkpoints("leased")) == 2
    store.close()


def test_a_run_killed_with_sigkill_is_resumed_at_once_by_the_next_run_on_its_host(tmp_path, mongo_db,
                                                                                 pg_database):
    """The killed run's lease is unexpired (default ttl 60 s), but its process is dead: the next run
    takes the lease over without waiting, logs that, and finishes the job with exact counts."""
    records = 3000
    mongo_db.patients.insert_many(patients(records))
    job = write_job(tmp_path, name="killed", database=mongo_db.name, collection="patients",
                    mapping=patients_mapping(tmp_path), pg_dsn=pg_database, dynamo=False, partitions=4,
                    batch_records=50, after_run=False)
    store = open_store(SqliteConfig(), base_dir=tmp_path)
    # the run kills itself (SIGKILL) once its 10th batch is checkpointed: an exact moment, not a timing
    first = subprocess.Popen(command(job), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**environment(), "ETL_TEST_FAULT": "kill:batch:10"})
    assert first.wait() == -9
    moved = sum(c.counts.get("extracted", 0) for c in store.checkpoints("killed").values())
    assert 500 <= moved < records
    with sqlite3.connect(tmp_path / ".etl" / "state.sqlite") as db:
        holder, expires_at = db.execute("SELECT holder, expires_at FROM lease").fetchone()
    assert holder.startswith(f"{socket.gethostname()}:{first.pid}:")
    assert expires_at > to_epoch(now()) + 30  # still held for most of its 60 s

    second = run_cli(job)
    assert second.returncode == 4, second.stdout[-3000:] + second.stderr[-3000:]  # after_run: false
    assert f"took over the lease of '{holder}', whose process on this host is dead" in second.stderr
    table = saved_report(second.stdout)["tables"][0]
    figures = (table["extracted"], table["loaded"], table["rejected"], table["filtered"])
    assert figures == (records, records, 0, 0)
    assert table["partitions_done"] == table["partitions"] == 4
    assert pg_scalar(pg_database, "SELECT count(*) FROM patients") == records
    assert pg_scalar(pg_database, "SELECT count(DISTINCT patient_id) FROM patients") == records
    with sqlite3.connect(tmp_path / ".etl" / "state.sqlite") as db:
        assert db.execute("SELECT count(*) FROM lease").fetchone()[0] == 0  # released at the end
    store.close()
