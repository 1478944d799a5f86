"""W2: MongoDB customers (1-10 orders each) -> one DynamoDB table, against raw BatchWriteItem.

Loads `--records` workload documents (bench/workloads.py) into a scratch MongoDB database, runs
the engine (`--parallelism` workers, each sink with `--concurrency` writer threads, validation
off) into a fresh single table (a profile item and one item per order), then, in the same run,
writes the rows the mapping makes of the same documents (mapped before the clock starts) with
boto3 `batch_write_item` on parallelism x concurrency threads into a second fresh table: each
thread turns its 25 rows into attribute values with boto3's TypeSerializer (timestamps as ISO
text), sends them and resends UnprocessedItems (bench_sinks.ddb_raw, the sink benchmark's
baseline). For information, the same items encoded before the clock starts are written the same
way into a third table. Exits 1 when engine/raw items/s is below `--goal`. `--source dump`: the
engine reads the same documents from a mongodump folder instead, so that the MongoDB server (here
a Python server on the same cores) takes no CPU from the engine and DynamoDB Local. Each path
also prints the CPU seconds the MongoDB server and DynamoDB Local spent while it ran (when they
run on this machine) and the cores the machine kept busy (`CpuUsage`). `--repeat N` runs both
paths N times, each pass into fresh tables and in the other order than the pass before (DynamoDB
Local, a JVM on the same cores, moves one path's time by 20-40% from pass to pass), prints every
pass, and takes the ratio of the fastest of each.

    .venv/bin/python bench/bench_w2_mongo_dynamodb.py --records 1000000 --parallelism 2 --concurrency 4
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pymongo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads  # noqa: E402
from bench_sinks import ddb_raw  # noqa: E402
from bench_w1_mongo_postgres import mongo_uri  # noqa: E402
from busy_cores import BusyCores  # noqa: E402
from workloads import LOADED_UNVALIDATED  # noqa: E402

from etl.sinks.dynamodb_values import encode_item  # noqa: E402

JOB = """\
version: 1
name: {name}
sources:
  mongo: {source}
targets:
  ddb: {{type: dynamodb, endpoint_url: "{endpoint}", region: us-east-1, create: if_missing,
        concurrency: {concurrency}}}
batch: {{records: {batch}}}
parallelism: {parallelism}
state: {{type: sqlite, path: {name}.sqlite}}
validation: {{after_run: false}}
report: {{dir: reports}}
"""
SOURCES = {
    "mongo": '{{type: mongo, uri: "{uri}", database: {database}, '
             'tables: {{customers: {{mapping: MAPPING, partitions: {partitions}}}}}}}',
    "dump": '{{type: mongodump, path: "{folder}", database: {database}, '
            'tables: {{customers: {{mapping: MAPPING, partitions: {partitions}}}}}}}',
}
"""--source: the engine reads the documents from the MongoDB server, or from a mongodump folder of
the same documents (no server on the machine's cores: the engine and DynamoDB Local only)."""
BATCH_WRITE_LIMIT = 25  # https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html


class CpuUsage:
    """Where a path's CPU went on this machine: the cores kept busy, and the seconds spent by the
    MongoDB server and DynamoDB Local when they run here. The raw path reads nothing from MongoDB,
    so the server's seconds in the engine's run are work the raw path does not do, on the cores
    DynamoDB Local needs."""

    def __init__(self, mongo: str, endpoint: str) -> None:
        mongo_port = local_port(*pymongo.uri_parser.parse_uri(mongo)["nodelist"][0])
        ddb = urlsplit(endpoint)
        self.busy = BusyCores()
        ports = {"MongoDB server": mongo_port, "DynamoDB Local": local_port(ddb.hostname, ddb.port)}
        self.servers = {label: workloads.ServerCpu(port) for label, port in ports.items() if port is not None}

    def done(self) -> str:
        cores = self.busy.cores()
        spent = [f"{label} {seconds:.1f} s" for label, server in self.servers.items()
                 if (seconds := server.seconds()) is not None]
        return ", ".join([*spent, *([f"{cores:.2f} cores busy"] if cores is not None else [])]) or "unknown"


def local_port(host: str | None, port: int | None) -> int | None:
    """`port` when `host` is this machine (a server whose CPU /proc shows), else None."""
    return port if host in ("127.0.0.1", "localhost", "::1") else None


def client_for(endpoint: str):
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")  # noqa: S106


def create_table(client, table: str) -> None:
    client.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}])
    client.get_waiter("table_exists").wait(TableName=table)


def encoded_batch_write(client, table: str, items: list[dict], threads: int) -> float:
    """Seconds for batch_write_item of already-encoded items on `threads` threads."""

    def write(chunk: list[dict]) -> None:
        request = {table: [{"PutRequest": {"Item": item}} for item in chunk]}
        while request:
            request = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or None

    chunks = [items[i:i + BATCH_WRITE_LIMIT] for i in range(0, len(items), BATCH_WRITE_LIMIT)]
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, chunks))
    return time.perf_counter() - started


def count_items(client, table: str) -> int:
    paginator = client.get_paginator("scan")
    return sum(page["Count"] for page in paginator.paginate(TableName=table, Select="COUNT"))


def engine_pass(args: argparse.Namespace, folder: Path, database: str, table: str) -> tuple[float, str]:
    """The engine's run into a fresh `table` (its own job name and state); (seconds, CPU usage)."""
    source = SOURCES[args.source].format(uri=args.mongo_uri, folder=folder / "dump", database=database,
                                         partitions=args.partitions)
    job = JOB.format(name=table, source=source, endpoint=args.endpoint, concurrency=args.concurrency,
                     batch=args.batch, parallelism=args.parallelism)
    usage = CpuUsage(args.mongo_uri, args.endpoint)
    report, seconds = workloads.run_engine(folder, table, job, workloads.W2_MAPPING.format(table=table))
    cpu = usage.done()
    if report.status != LOADED_UNVALIDATED or report.tables[0].loaded != args.records:
        print(f"engine run failed: {report.status} {report.message} (loaded {report.tables[0].loaded})",
              file=sys.stderr)
        raise SystemExit(2)  # a wrong result, not a missed goal (1)
    return seconds, cpu


def raw_pass(args: argparse.Namespace, client, table: str, rows: list[dict],
             threads: int) -> tuple[float, str]:
    """The raw baseline into a fresh `table`; (seconds, CPU usage)."""
    create_table(client, table)
    usage = CpuUsage(args.mongo_uri, args.endpoint)
    seconds = ddb_raw(client, table, rows, threads)
    return seconds, usage.done()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="MongoDB documents")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--batch", type=int, default=1000, help="records per batch")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--parallelism", type=int, default=2, help="engine workers")
    parser.add_argument("--concurrency", type=int, default=4, help="writer threads per engine worker's sink")
    parser.add_argument("--goal", type=float, default=0.8, help="minimum engine/raw items/s ratio")
    parser.add_argument("--repeat", type=int, default=1,
                        help="passes of both paths in alternating order; the ratio is of the fastest of each")
    parser.add_argument("--source", choices=sorted(SOURCES), default="mongo",
                        help="read from the MongoDB server or from a mongodump folder of the same documents")
    parser.add_argument("--mongo-uri", default=mongo_uri())
    parser.add_argument("--endpoint", default=os.environ.get(
        "ETL_DYNAMODB_ENDPOINT", f"http://127.0.0.1:{os.environ.get('ETL_DYNAMODB_PORT', '8001')}"))
    args = parser.parse_args(argv)

    name = f"etl_bench_w2_{uuid.uuid4().hex[:8]}"
    encoded_table = f"{name}_encoded"
    tables = [encoded_table]
    threads = args.parallelism * args.concurrency
    client = client_for(args.endpoint)
    mongo = pymongo.MongoClient(args.mongo_uri, serverSelectionTimeoutMS=10_000)
    engine_best = raw_best = float("inf")
    try:
        with tempfile.TemporaryDirectory() as folder:
            if args.source == "dump":
                orders, _file = workloads.write_dump(Path(folder) / "dump", name, args.records, args.seed)
                print(f"wrote {args.records} documents ({orders} orders) as a mongodump folder")
            else:
                orders, load_seconds = workloads.load_mongo(args.mongo_uri, name, args.records, args.seed)
                print(f"loaded {args.records} documents ({orders} orders) into MongoDB "
                      f"in {load_seconds:.1f} s")
            expected = args.records + orders
            spec, rows = workloads.mapped_rows(workloads.W2_MAPPING.format(table=encoded_table), args.records,
                                               args.seed)[encoded_table]
            # The raw path's rows stay alive through every pass, the engine's (which runs in this
            # process) included: out of the collector's way, so that neither path pays for scanning them.
            gc.freeze()
            for number in range(1, args.repeat + 1):
                engine_table, raw_table = f"{name}_engine_{number}", f"{name}_raw_{number}"
                tables += [engine_table, raw_table]
                engine_first = number % 2 == 1  # alternate, so that neither path always meets a warmer server
                timed = {}
                for path in ("engine", "raw") if engine_first else ("raw", "engine"):
                    timed[path] = (engine_pass(args, Path(folder), name, engine_table) if path == "engine"
                                   else raw_pass(args, client, raw_table, rows, threads))
                counts = {"engine": count_items(client, engine_table), "raw": count_items(client, raw_table)}
                if set(counts.values()) != {expected}:
                    print(f"wrong item counts: expected {expected}, got {counts}", file=sys.stderr)
                    return 2
                (engine_seconds, engine_cpu), (raw_seconds, raw_cpu) = timed["engine"], timed["raw"]
                engine_best, raw_best = min(engine_best, engine_seconds), min(raw_best, raw_seconds)
                first = "engine" if engine_first else "raw"
                print(f"pass {number} ({first} first): engine {engine_seconds:.2f} s, "
                      f"raw {raw_seconds:.2f} s, ratio {raw_seconds / engine_seconds:.3f}; "
                      f"CPU during the run: engine {engine_cpu}; raw {raw_cpu}")
        columns = {column.name: column.parsed_type for column in spec.columns}
        items = [encode_item(row, columns, spec.key) for row in rows]
        create_table(client, encoded_table)
        encoded_seconds = encoded_batch_write(client, encoded_table, items, threads)
        if (encoded := count_items(client, encoded_table)) != expected:
            print(f"wrong item count pre-encoded: expected {expected}, got {encoded}", file=sys.stderr)
            return 2
    finally:
        mongo.drop_database(name)
        mongo.close()
        for table in tables:
            try:
                client.delete_table(TableName=table)
            except client.exceptions.ResourceNotFoundException:
                pass

    raw_rate, engine_rate = expected / raw_best, expected / engine_best
    ratio = engine_rate / raw_rate
    workloads.print_table(
        f"W2 {'MongoDB' if args.source == 'mongo' else 'mongodump'} -> DynamoDB: {args.records} documents "
        f"-> {expected} items ({args.records} profiles + {orders} orders; parallelism {args.parallelism} "
        f"x concurrency {args.concurrency} = {threads} writer threads, {args.partitions} partitions, "
        f"batch {args.batch}" + (f"; the fastest of {args.repeat} passes" if args.repeat > 1 else "") + ")",
        [(f"raw TypeSerializer + batch_write_item, {threads} thr", expected, raw_best),
         ("etl engine end to end", expected, engine_best),
         ("info: raw batch_write_item, items pre-encoded", expected, encoded_seconds)], raw_rate)
    print(f"ratio engine/raw: {ratio:.3f} (goal >= {args.goal}); "
          f"engine/pre-encoded raw: {engine_rate / (expected / encoded_seconds):.3f}")
    if ratio < args.goal:
        print("GOAL MISSED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
