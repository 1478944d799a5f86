"""The Dask executor on a real `distributed.LocalCluster` (2 worker processes) gives the same
targets as the local executor: exact counts and identical bucket checksums of every table."""

from __future__ import annotations

import pytest

from etl.checksum import checksum_side
from etl.engine.resources import JobResources
from etl.engine.runner import RunOptions, run_job
from etl.job import load_job
from etl.state.postgres import Config as PostgresStateConfig
from etl.state.postgres import open_store
from tests.integration.run_helpers import (
    HMAC_KEY,
    note_delete_statements,
    patients,
    patients_mapping,
    pg_scalar,
    write_job,
)

pytestmark = pytest.mark.integration

RECORDS = 1500


def table_checksums(job) -> dict[str, dict]:
    resources = JobResources(job)
    sums = {}
    for spec in resources.mapping("mongo", "patients").tables:
        sink = resources.open_sink(spec.target)
        try:
            rows = lambda s=sink, t=spec: s.read_back(t)  # noqa: E731
            sums[spec.table] = checksum_side(rows, spec, buckets=64).to_dict()
        finally:
            sink.close()
    return sums


def test_dask_executor_matches_the_local_executor(tmp_path, mongo_db, pg_database, monkeypatch):
    from distributed import LocalCluster

    monkeypatch.setenv("ETL_DEMO_HMAC_KEY", HMAC_KEY)
    mongo_db.patients.insert_many(patients(RECORDS))
    mapping = patients_mapping(tmp_path)
    state = f'{{type: postgres, dsn: "{pg_database}", schema: etl_state}}'
    local = load_job(write_job(tmp_path, name="local-run", database=mongo_db.name, collection="patients",
                               mapping=mapping, pg_dsn=pg_database, pg_schema="by_local", dynamo=False,
                               partitions=4, batch_records=100, state=state))
    local_report = run_job(local)
    assert local_report.status == "succeeded", local_report.message

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        executor = f'{{type: dask, scheduler: "{cluster.scheduler_address}"}}'
        on_dask = load_job(write_job(tmp_path, name="dask-run", database=mongo_db.name, collection="patients",
                                     mapping=mapping, pg_dsn=pg_database, pg_schema="by_dask", dynamo=False,
                                     partitions=4, batch_records=100, state=state, executor=executor))
        created = JobResources(on_dask).open_sink("pg")
        created.prepare(JobResources(on_dask).mapping("mongo", "patients").tables)
        created.close()
        note_delete_statements(pg_database, ["visits"], schema="by_dask")
        dask_report = run_job(on_dask, RunOptions())
    assert dask_report.status == "succeeded", dask_report.message
    assert [(c.table, c.ok, c.rows_target) for c in dask_report.validation] == [
        ("patients", True, RECORDS), ("visits", True, local_report.validation[1].rows_target)]

    table = dask_report.tables[0]
    assert (table.extracted, table.loaded, table.partitions_done) == (RECORDS, RECORDS, 4)
    for name in ("patients", "visits"):
        assert pg_scalar(pg_database, f"SELECT count(*) FROM by_dask.{name}") == pg_scalar(
            pg_database, f"SELECT count(*) FROM by_local.{name}")
    assert pg_scalar(pg_database, "SELECT count(*) FROM by_dask.patients") == RECORDS
    # the run found the child table empty and told every Dask worker's sink: a first load deletes no children
    assert pg_scalar(pg_database, "SELECT count(*) FROM by_dask.delete_statements") == 0
    assert table_checksums(on_dask) == table_checksums(local)

    # the checkpoints the workers wrote are in the shared PostgreSQL state store
    config = PostgresStateConfig(type="postgres", dsn=pg_database, schema="etl_state")
    store = open_store(config, base_dir=tmp_path)
    checkpoints = store.checkpoints("dask-run")
    store.close()
    assert sorted(checkpoints) == [f"mongo.patients#{i}/4" for i in range(4)]
    assert all(c.done for c in checkpoints.values())
    assert sum(c.counts["extracted"] for c in checkpoints.values()) == RECORDS
