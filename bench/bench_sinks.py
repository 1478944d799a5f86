"""Sink write rates against raw baselines measured in the same run, on the same rows.

    .venv/bin/python bench/bench_sinks.py --pg-rows 200000 --ddb-items 20000 --threads 4

PostgreSQL: the sink's `write` (per batch: one transaction, binary COPY into a temp staging table,
INSERT ... ON CONFLICT DO UPDATE) against a raw psycopg loop doing the same staging COPY + upsert
with no checks. Goal: sink rows/s >= 0.85 x raw.
DynamoDB: the sink's `write` (checked encoding, de-duplication, chunks of 25 on `--threads` writer
threads, UnprocessedItems retried) against raw boto3 `batch_write_item` on the same number of
threads (TypeSerializer, chunks of 25, UnprocessedItems resent). Goal: sink items/s >= 0.9 x raw.
Each side writes into its own fresh table; the sides take turns going first, `--repeat` runs each,
and the best run of each is compared. Exits 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import boto3
import psycopg
from boto3.dynamodb.types import TypeSerializer
from psycopg import sql
from psycopg.types.json import Jsonb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etl.records import (  # noqa: E402
    Column,
    TableRows,  # noqa: E402
    TableSpec,
)
from etl.sinks import dynamodb, postgres  # noqa: E402

PG_GOAL, DDB_GOAL = 0.85, 0.90


# ---------------------------------------------------------------- PostgreSQL


def pg_spec(table: str) -> TableSpec:
    return TableSpec("pg", table, ("id",), (
        Column("id", "int"), Column("name", "string"), Column("amount", "decimal(12,2)"),
        Column("recorded", "timestamptz(6)"), Column("active", "bool"), Column("doc", "json"),
    ))


def pg_rows(count: int) -> list[dict]:
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    return [
        {"id": n, "name": f"patient {n}", "amount": Decimal(n % 100000) / 100,
         "recorded": start + dt.timedelta(minutes=n), "active": n % 2 == 0, "doc": {"k": n % 10, "s": "x"}}
        for n in range(count)
    ]


def pg_raw(dsn: str, table: str, rows: list[dict], batch: int) -> float:
    """The baseline: staging COPY + upsert per batch, nothing else."""
    names = ["id", "name", "amount", "recorded", "active", "doc"]
    columns = sql.SQL(", ").join(map(sql.Identifier, names))
    updates = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in names[1:])
    target = sql.Identifier(table)
    with psycopg.connect(dsn) as conn:
        conn.execute(sql.SQL("CREATE TEMP TABLE stage (LIKE {}) ON COMMIT DELETE ROWS").format(target))
        conn.commit()
        began = time.perf_counter()
        for start in range(0, len(rows), batch):
            with conn.transaction(), conn.cursor() as cursor:
                copy_sql = sql.SQL("COPY stage ({}) FROM STDIN (FORMAT BINARY)").format(columns)
                with cursor.copy(copy_sql) as copy:
                    copy.set_types(["int8", "text", "numeric", "timestamptz", "bool", "jsonb"])
                    for row in rows[start:start + batch]:
                        copy.write_row([row["id"], row["name"], row["amount"], row["recorded"], row["active"],
                                        Jsonb(row["doc"])])
                upsert = "INSERT INTO {} ({}) SELECT {} FROM stage ON CONFLICT (id) DO UPDATE SET {}"
                cursor.execute(sql.SQL(upsert).format(target, columns, columns, updates))
        return time.perf_counter() - began


def pg_sink(dsn: str, table: str, rows: list[dict], batch: int) -> float:
    sink = postgres.open_sink("pg", postgres.Config(type="postgres", dsn=dsn, create="if_missing"))
    sink.prepare([pg_spec(table)])
    began = time.perf_counter()
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        result = sink.write({table: TableRows(chunk, [""] * len(chunk))})
        assert result.loaded[table] == len(chunk) and not result.rejects
    elapsed = time.perf_counter() - began
    sink.close()
    return elapsed


def bench_pg(args: argparse.Namespace) -> tuple[float, float]:
    database = f"etl_bench_sinks_{uuid.uuid4().hex[:8]}"
    admin_dsn = args.pg_dsn
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    dsn = psycopg.conninfo.make_conninfo(admin_dsn, dbname=database)
    rows = pg_rows(args.pg_rows)
    raw_best = sink_best = float("inf")
    try:
        for run in range(args.repeat):
            raw_table, sink_table = f"raw_{run}", f"sink_{run}"
            postgres.open_sink("pg", postgres.Config(type="postgres", dsn=dsn, create="if_missing")).prepare(
                [pg_spec(raw_table)])
            for side in _order(run):  # alternate who goes first, so drift in machine load hits both
                if side == "raw":
                    raw_best = min(raw_best, pg_raw(dsn, raw_table, rows, args.pg_batch))
                else:
                    sink_best = min(sink_best, pg_sink(dsn, sink_table, rows, args.pg_batch))
        with psycopg.connect(dsn) as conn:
            for run in range(args.repeat):
                count = sql.SQL("SELECT count(*) FROM {}")
                counts = [conn.execute(count.format(sql.Identifier(t))).fetchone()[0]
                          for t in (f"raw_{run}", f"sink_{run}")]
                assert counts == [len(rows), len(rows)], counts
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
    return len(rows) / raw_best, len(rows) / sink_best


# ---------------------------------------------------------------- DynamoDB


def ddb_spec(table: str) -> TableSpec:
    return TableSpec("dynamo", table, ("pk", "sk"), (
        Column("pk", "string"), Column("sk", "string"), Column("total", "decimal(10,2)"),
        Column("invoice_date", "timestamptz(6)"), Column("country", "string"), Column("lines", "list"),
    ))


def ddb_rows(count: int) -> list[dict]:
    start = dt.datetime(2009, 1, 1, tzinfo=dt.UTC)
    return [
        {"pk": f"CUSTOMER#{n // 8}", "sk": f"INVOICE#{n}", "total": Decimal(n % 5000) / 100,
         "invoice_date": start + dt.timedelta(hours=n), "country": "Norway",
         "lines": [{"track_id": n, "unit_price": Decimal("0.99"), "quantity": 1}]}
        for n in range(count)
    ]


def ddb_raw(client, table: str, rows: list[dict], threads: int) -> float:
    """The baseline: TypeSerializer, chunks of 25, UnprocessedItems resent, on `threads` threads."""
    serializer = TypeSerializer()

    def put(chunk: list[dict]) -> None:
        items = [{"PutRequest": {"Item": {
            name: serializer.serialize(value.isoformat() if isinstance(value, dt.datetime) else value)
            for name, value in row.items()}}} for row in chunk]
        request = {table: items}
        while request:
            request = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or None

    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, [rows[i:i + 25] for i in range(0, len(rows), 25)]))
    return time.perf_counter() - began


def ddb_sink(sink, table: str, rows: list[dict], batch: int) -> float:
    began = time.perf_counter()
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        result = sink.write({table: TableRows(chunk, [""] * len(chunk))})
        assert result.loaded[table] == len(chunk) and not result.rejects
    return time.perf_counter() - began


def bench_ddb(args: argparse.Namespace) -> tuple[float, float]:
    prefix = f"bench_sinks_{uuid.uuid4().hex[:8]}"
    config = dynamodb.Config(type="dynamodb", endpoint_url=args.ddb_endpoint, create="if_missing",
                             concurrency=args.threads)
    sink = dynamodb.open_sink("dynamo", config)
    client = boto3.client("dynamodb", endpoint_url=args.ddb_endpoint, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local",
                          config=boto3.session.Config(max_pool_connections=max(10, args.threads * 2)))
    rows = ddb_rows(args.ddb_items)
    raw_best = sink_best = float("inf")
    tables = []
    try:
        for run in range(args.repeat):
            raw_table, sink_table = f"{prefix}_raw_{run}", f"{prefix}_sink_{run}"
            tables += [raw_table, sink_table]
            sink.prepare([ddb_spec(raw_table), ddb_spec(sink_table)])
            for side in _order(run):
                if side == "raw":
                    raw_best = min(raw_best, ddb_raw(client, raw_table, rows, args.threads))
                else:
                    sink_best = min(sink_best, ddb_sink(sink, sink_table, rows, args.ddb_batch))
            for table in (raw_table, sink_table):
                count = client.scan(TableName=table, Select="COUNT", ConsistentRead=True)
                total = count["Count"]
                while "LastEvaluatedKey" in count:
                    count = client.scan(TableName=table, Select="COUNT", ConsistentRead=True,
                                        ExclusiveStartKey=count["LastEvaluatedKey"])
                    total += count["Count"]
                assert total == len(rows), (table, total)
    finally:
        sink.close()
        _drop_tables(client, tables)
    return len(rows) / raw_best, len(rows) / sink_best


def _drop_tables(client, tables: list[str]) -> None:
    """Delete the tables that exist (a run that failed early never created some) and wait until each
    is gone, so nothing is left behind and a missing table is not an error."""
    pages = client.get_paginator("list_tables").paginate()
    existing = {name for page in pages for name in page["TableNames"]}
    doomed = [table for table in tables if table in existing]
    for table in doomed:
        try:
            client.delete_table(TableName=table)
        except client.exceptions.ResourceNotFoundException:
            continue  # deleted meanwhile
    for table in doomed:
        waiter = client.get_waiter("table_not_exists")
        waiter.wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})


# ---------------------------------------------------------------- main


def _order(run: int) -> tuple[str, str]:
    return ("raw", "sink") if run % 2 == 0 else ("sink", "raw")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-rows", type=int, default=200_000)
    parser.add_argument("--pg-batch", type=int, default=5_000)
    parser.add_argument("--pg-dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres",
                        help="a database where the benchmark may create and drop its own scratch database")
    parser.add_argument("--ddb-items", type=int, default=20_000)
    parser.add_argument("--ddb-batch", type=int, default=1_000)
    parser.add_argument("--ddb-endpoint", default="http://127.0.0.1:8001")
    parser.add_argument("--threads", type=int, default=4, help="DynamoDB writer threads, both sides")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side; the best of each is compared")
    parser.add_argument("--only", choices=["pg", "dynamodb"], default=None)
    args = parser.parse_args(argv)

    results = []
    if args.only in (None, "pg"):
        raw, sink = bench_pg(args)
        results.append(("PostgreSQL", f"{args.pg_rows:,} rows", raw, sink, PG_GOAL))
    if args.only in (None, "dynamodb"):
        raw, sink = bench_ddb(args)
        results.append(("DynamoDB", f"{args.ddb_items:,} items, {args.threads} threads", raw, sink, DDB_GOAL))

    print(f"{'target':<11} {'size':<26} {'raw/s':>10} {'sink/s':>10} {'ratio':>6} {'goal':>5}  result")
    missed = False
    for target, size, raw, sink, goal in results:
        ratio = sink / raw
        ok = ratio >= goal
        missed |= not ok
        print(f"{target:<11} {size:<26} {raw:>10,.0f} {sink:>10,.0f} {ratio:>6.2f} {goal:>5.2f}  "
              f"{'ok' if ok else 'MISSED'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
