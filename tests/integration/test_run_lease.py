"""Two runs of one job at once: the second exits 3 naming the holder and the expiry, writing nothing."""

from __future__ import annotations

import pytest

from etl.state.sqlite import Config as SqliteConfig
from etl.state.sqlite import open_store
from tests.integration.run_helpers import patients, patients_mapping, run_cli, write_job

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
    assert len(store.checkpoints("leased")) == 2
    store.close()
