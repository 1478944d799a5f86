"""W1: MongoDB customers (1-10 orders each) -> PostgreSQL customers + orders, against raw COPY.

Loads `--records` workload documents (bench/workloads.py) into a scratch MongoDB database, runs
the engine (`--parallelism` workers, `--partitions` partitions, validation off) into schema
`engine` of a scratch PostgreSQL database, then, in the same run, writes the rows the mapping
makes of the same documents (mapped before the clock starts) with one psycopg binary COPY per
table into the same tables in schema `raw`. Rows/s count target rows (customers + orders). A
last line times a bare pymongo find() over the collection, in rows the documents make: the rate
at which the MongoDB server alone hands the documents out, which bounds the engine's.
Exits 1 when engine/raw is below `--goal`, or engine/find() below `--find-goal`.

    .venv/bin/python bench/bench_w1_mongo_postgres.py --records 20000 --partitions 1 --goal 0
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pymongo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads  # noqa: E402
from workloads import LOADED_UNVALIDATED  # noqa: E402

from etl.records import TableSpec  # noqa: E402

JOB = """\
version: 1
name: {name}
sources:
  mongo: {{type: mongo, uri: "{uri}", database: {database},
          tables: {{customers: {{mapping: MAPPING, partitions: {partitions}}}}}}}
targets:
  pg: {{type: postgres, dsn: "{dsn}", schema: engine, create: if_missing}}
batch: {{records: {batch}}}
parallelism: {parallelism}
state: {{type: sqlite, path: {name}.sqlite}}
validation: {{after_run: false}}
report: {{dir: reports}}
"""


def mongo_uri() -> str:
    port = os.environ.get("ETL_MONGO_PORT", "27017")
    return os.environ.get("ETL_MONGO_URI", f"mongodb://127.0.0.1:{port}/?directConnection=true")


def pg_admin_dsn() -> str:
    return os.environ.get("ETL_PG_ADMIN_DSN", f"host=127.0.0.1 port={os.environ.get('ETL_PG_PORT', '5432')} "
                          "user=postgres dbname=postgres")


def raw_copy(dsn: str, tables: dict[str, tuple[TableSpec, list[dict]]]) -> float:
    """Seconds for binary COPY of the already-mapped rows into empty copies of the engine's tables."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("CREATE SCHEMA raw")
        types: dict[str, list[str]] = {}
        for table, (spec, _rows) in tables.items():
            columns = [column.name for column in spec.columns]
            connection.execute(f"CREATE TABLE raw.{table} (LIKE engine.{table} INCLUDING ALL)")
            found = dict(connection.execute(
                "SELECT attname, atttypid::regtype::text FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0", (f"raw.{table}",)).fetchall())
            types[table] = [found[column] for column in columns]
        started = time.perf_counter()
        with connection.transaction(), connection.cursor() as cursor:
            for table, (spec, rows) in tables.items():
                columns = [column.name for column in spec.columns]
                statement = f"COPY raw.{table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
                with cursor.copy(statement) as copy:
                    copy.set_types(types[table])
                    for row in rows:
                        copy.write_row([row[column] for column in columns])
        return time.perf_counter() - started


def raw_find(uri: str, database: str) -> tuple[int, float]:
    """(documents, seconds) of one pymongo find() loop over the collection: the source's own limit,
    which the engine cannot beat (shown for information; the goal is against COPY)."""
    from bson.codec_options import CodecOptions

    with pymongo.MongoClient(uri) as client:
        collection = client[database].get_collection("customers", CodecOptions(tz_aware=True))
        started = time.perf_counter()
        documents = sum(1 for _ in collection.find(batch_size=1000))
        return documents, time.perf_counter() - started


def count_rows(dsn: str, schema: str, tables: list[str]) -> dict[str, int]:
    with psycopg.connect(dsn) as connection:
        return {table: connection.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0]
                for table in tables}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="MongoDB documents")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--batch", type=int, default=1000, help="records per batch")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--parallelism", type=int, default=2, help="engine workers")
    parser.add_argument("--goal", type=float, default=0.5, help="minimum engine/raw COPY rows/s ratio")
    parser.add_argument("--find-goal", type=float, default=0.5,
                        help="minimum engine/bare find() rows/s ratio (issue 24's live W1 goal)")
    parser.add_argument("--mongo-uri", default=mongo_uri())
    parser.add_argument("--pg-admin-dsn", default=pg_admin_dsn())
    args = parser.parse_args(argv)

    name = f"etl_bench_w1_{uuid.uuid4().hex[:8]}"
    mongo = pymongo.MongoClient(args.mongo_uri, serverSelectionTimeoutMS=10_000)
    dsn = workloads.create_database(args.pg_admin_dsn, name)
    try:
        orders, load_seconds = workloads.load_mongo(args.mongo_uri, name, args.records, args.seed)
        print(f"loaded {args.records} documents ({orders} orders) into MongoDB in {load_seconds:.1f} s")
        with tempfile.TemporaryDirectory() as folder:
            job = JOB.format(name=name, uri=args.mongo_uri, database=name, partitions=args.partitions,
                             dsn=dsn, batch=args.batch, parallelism=args.parallelism)
            report, engine_seconds = workloads.run_engine(Path(folder), name, job, workloads.W1_MAPPING)
        table = report.tables[0]
        if report.status != LOADED_UNVALIDATED or table.loaded != args.records:
            print(f"engine run failed: {report.status} {report.message} (loaded {table.loaded})",
                  file=sys.stderr)
            return 2
        engine_rows = count_rows(dsn, "engine", ["customers", "orders"])
        mapped = workloads.mapped_rows(workloads.W1_MAPPING, args.records, args.seed)
        raw_seconds = raw_copy(dsn, mapped)
        raw_rows = count_rows(dsn, "raw", ["customers", "orders"])
        found, find_seconds = raw_find(args.mongo_uri, name)
    finally:
        mongo.drop_database(name)
        mongo.close()
        workloads.drop_database(args.pg_admin_dsn, name)

    expected = {"customers": args.records, "orders": orders}
    if engine_rows != expected or raw_rows != expected or found != args.records:
        print(f"wrong row counts: expected {expected}, engine {engine_rows}, raw {raw_rows}", file=sys.stderr)
        return 2
    total = args.records + orders
    raw_rate, engine_rate = total / raw_seconds, total / engine_seconds
    ratio = engine_rate / raw_rate
    workloads.print_table(
        f"W1 MongoDB -> PostgreSQL: {args.records} documents -> {args.records} customers + {orders} orders "
        f"(parallelism {args.parallelism}, {args.partitions} partitions, batch {args.batch})",
        [("raw psycopg binary COPY of mapped rows", total, raw_seconds),
         ("etl engine end to end", total, engine_seconds),
         ("bare pymongo find() of the documents", total, find_seconds)], raw_rate)
    against_find = find_seconds / engine_seconds
    print(f"ratio engine/raw: {ratio:.3f} (goal >= {args.goal})")
    print(f"ratio engine/find(): {against_find:.3f} (goal >= {args.find_goal})")
    if ratio < args.goal or against_find < args.find_goal:
        print("GOAL MISSED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
