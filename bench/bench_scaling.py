"""Speedup of the run engine from 1 to 2 workers on a MongoDB -> PostgreSQL job.

Loads `--records` generated documents into a scratch MongoDB database, then runs the same job
(`--partitions` partitions) with 1 and with 2 workers (threads, or with `--processes` the
processes of a local Dask cluster) into fresh PostgreSQL schemas, and a raw single-threaded
baseline (pymongo find + psycopg COPY of the same rows) in the same run. Prints records/s of
each, the 1 -> 2 worker speedup and the engine against the raw baseline; exits 1 when the
speedup is below `--min-speedup`.

    python bench/bench_scaling.py --records 20000 --partitions 4 --min-speedup 1.3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pymongo
from bson.decimal128 import Decimal128

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's etl, not an installed one

MAPPING = """\
version: 1
source:
  key: [_id]
targets:
  pg: postgres
outputs:
  - target: pg
    table: patients
    key: [patient_id]
    columns:
      patient_id: {from: _id, type: int}
      name: name
      ward: ward
      admitted: {from: admitted, type: timestamptz(3), required: true}
      balance: {from: balance, type: "decimal(12,2)", required: true}
"""


def documents(n: int) -> list[dict]:
    base = datetime(2024, 1, 1, tzinfo=UTC)
    return [{"_id": i, "name": f"patient {i}", "ward": "ABCD"[i % 4], "admitted": base + timedelta(minutes=i),
             "balance": Decimal128(Decimal(i % 100000) / 100)} for i in range(1, n + 1)]


def job_text(name: str, mongo_uri: str, database: str, dsn: str, schema: str, partitions: int,
             parallelism: int, batch: int, scheduler: str | None = None) -> str:
    executor = f'{{type: dask, scheduler: "{scheduler}"}}' if scheduler else "{type: local}"
    return f"""\
version: 1
name: {name}
sources:
  mongo: {{type: mongo, uri: "{mongo_uri}", database: {database},
          tables: {{patients: {{mapping: mapping.yaml, partitions: {partitions}}}}}}}
targets:
  pg: {{type: postgres, dsn: "{dsn}", schema: {schema}, create: if_missing}}
batch: {{records: {batch}}}
parallelism: {parallelism}
executor: {executor}
state: {{type: postgres, dsn: "{dsn}", schema: state_{schema}}}
validation: {{after_run: false}}
report: {{dir: reports}}
"""


def raw_baseline(mongo: pymongo.MongoClient, database: str, dsn: str) -> float:
    """Records/s of the simplest correct copy: one cursor, one COPY, no mapping, no checkpoints."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("CREATE SCHEMA raw_copy")
        connection.execute("CREATE TABLE raw_copy.patients (patient_id int PRIMARY KEY, name text, "
                           "ward text, admitted timestamptz, balance numeric(12,2))")
        started = time.perf_counter()
        with connection.cursor() as cursor, cursor.copy(
                "COPY raw_copy.patients (patient_id, name, ward, admitted, balance) FROM STDIN") as copy:
            for d in mongo[database].patients.find().sort("_id", 1):
                copy.write_row((d["_id"], d["name"], d["ward"], d["admitted"], d["balance"].to_decimal()))
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--processes", action="store_true",
                        help="run the workers as processes of a local Dask cluster instead of threads "
                        "(mapping is Python code: threads share one interpreter lock)")
    parser.add_argument("--min-speedup", type=float, default=1.3,
                        help="goal for records/s with 2 workers over 1 worker (exit 1 below it)")
    mongo_port = os.environ.get("ETL_MONGO_PORT", "27017")
    parser.add_argument("--mongo-uri", default=os.environ.get(
        "ETL_MONGO_URI", f"mongodb://127.0.0.1:{mongo_port}/?directConnection=true"))
    parser.add_argument("--pg-admin-dsn", default=os.environ.get(
        "ETL_PG_ADMIN_DSN", f"host=127.0.0.1 port={os.environ.get('ETL_PG_PORT', '5432')} user=postgres "
        "dbname=postgres"))
    args = parser.parse_args(argv)

    from etl.engine.runner import run_job
    from etl.job import load_job
    from etl.report.run_report import UNPROVEN as LOADED_UNVALIDATED  # validation is off: never green

    name = f"etl_bench_{uuid.uuid4().hex[:8]}"
    mongo = pymongo.MongoClient(args.mongo_uri, serverSelectionTimeoutMS=10_000)
    with psycopg.connect(args.pg_admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(args.pg_admin_dsn, dbname=name)
    try:
        data = documents(args.records)
        for start in range(0, len(data), 10000):
            mongo[name].patients.insert_many(data[start:start + 10000])
        rates: dict[str, float] = {}
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "mapping.yaml").write_text(MAPPING)
            for workers in (1, 2):
                path = Path(folder) / f"bench{workers}.yaml"
                with ExitStack() as stack:
                    scheduler = None
                    if args.processes:
                        from distributed import LocalCluster

                        cluster = stack.enter_context(LocalCluster(
                            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None))
                        scheduler = cluster.scheduler_address
                    path.write_text(job_text(f"bench-{workers}", args.mongo_uri, name, dsn,
                                             f"workers_{workers}", args.partitions, workers, args.batch,
                                             scheduler))
                    started = time.perf_counter()
                    report = run_job(load_job(path))
                    seconds = time.perf_counter() - started
                table = report.tables[0]
                if report.status != LOADED_UNVALIDATED or table.loaded != args.records:
                    print(f"run with {workers} worker(s) failed: {report.status} {report.message} "
                          f"(loaded {table.loaded} of {args.records})", file=sys.stderr)
                    return 1
                rates[f"engine, {workers} worker{'s' if workers > 1 else ''}"] = args.records / seconds
        raw_seconds = raw_baseline(mongo, name, dsn)
        rates["raw find + COPY, 1 thread"] = args.records / raw_seconds
    finally:
        mongo.drop_database(name)
        mongo.close()
        with psycopg.connect(args.pg_admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    one, two = rates["engine, 1 worker"], rates["engine, 2 workers"]
    raw = rates["raw find + COPY, 1 thread"]
    speedup = two / one
    kind = "processes (local Dask cluster)" if args.processes else "threads"
    print(f"MongoDB -> PostgreSQL, {args.records:,} records, {args.partitions} partitions, "
          f"batch {args.batch}, workers as {kind}")
    print(f"{'run':<28}{'records/s':>12}")
    for label, rate in rates.items():
        print(f"{label:<28}{rate:>12,.0f}")
    print(f"speedup 1 -> 2 workers: {speedup:.2f}x (goal >= {args.min_speedup:.2f}x)")
    print(f"engine with 2 workers vs raw baseline: {two / raw:.2f}x")
    return 0 if speedup >= args.min_speedup else 1


if __name__ == "__main__":
    sys.exit(main())
