"""What a first load gains by not deleting children: the PostgreSQL sink writing the W1 workload's
batches (customers + their orders) into empty tables, told that the child table was empty as the run
began (a first load: no child delete) against not told (one `DELETE ... WHERE customer_id = ANY(...)`
per batch, as any later load does), same rows, same code.

    .venv/bin/python bench/bench_child_delete.py --records 100000 --repeat 5

The documents are mapped before any clock starts; each run writes into a schema dropped and created
again, the two modes take turns going first, and the fastest run of each is compared. Both modes'
tables are counted after every run (exit 2 on a difference); exit 1 when the first load is slower.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etl.mapping import compile_mapping  # noqa: E402
from etl.mapping.spec import parse_mapping  # noqa: E402
from etl.records import TableRows  # noqa: E402
from etl.sinks import postgres  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import W1_MAPPING, customer_documents  # noqa: E402

SCHEMA = "bench_child_delete"
MODES = {True: "first load: the child table empty as the run began", False: "a delete per batch"}


def mapped_batches(records: int, batch: int) -> tuple[list, list[dict[str, TableRows]]]:
    """(the mapping's table specs, one dict of table -> rows per batch of `batch` documents)."""
    compiled = compile_mapping(parse_mapping(W1_MAPPING))
    batches = []
    for documents in customer_documents(records, chunk=batch):
        mapped = compiled.apply(documents, lambda record: str(record["_id"]))
        batches.append({table: rows for (_target, table), rows in mapped.rows.items()})
    return compiled.tables, batches


def load(dsn: str, tables: list, batches: list[dict[str, TableRows]], *, told: bool) -> tuple[float, tuple]:
    """(seconds the sink's writes took, (customers, orders) counted afterwards)."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    config = postgres.Config(type="postgres", dsn=dsn, schema=SCHEMA, create="if_missing")
    run = postgres.open_sink("pg", config)  # the run's own prepare, before any partition starts
    empty = run.prepare(tables)
    run.close()
    sink = postgres.open_sink("pg", config)
    sink.prepare(tables, empty_at_start=empty if told else frozenset())
    started = time.perf_counter()
    for batch in batches:
        sink.write(batch)
    seconds = time.perf_counter() - started
    sink.close()
    with psycopg.connect(dsn) as connection:
        counts = tuple(connection.execute(f"SELECT count(*) FROM {SCHEMA}.{table}").fetchone()[0]
                       for table in ("customers", "orders"))
    return seconds, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="documents (customers)")
    parser.add_argument("--batch", type=int, default=1_000, help="documents per batch")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each mode; the fastest counts")
    parser.add_argument("--pg-dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres",
                        help="a database where the benchmark may create and drop its own schema")
    args = parser.parse_args(argv)

    tables, batches = mapped_batches(args.records, args.batch)
    expected = (args.records, sum(len(batch["orders"].rows) for batch in batches if "orders" in batch))
    best: dict[bool, float] = {}
    try:
        for run in range(args.repeat):
            for told in ((True, False) if run % 2 == 0 else (False, True)):
                seconds, counts = load(args.pg_dsn, tables, batches, told=told)
                if counts != expected:
                    print(f"{MODES[told]}: {counts} rows (customers, orders), expected {expected}")
                    return 2
                best[told] = min(best.get(told, seconds), seconds)
    finally:
        with psycopg.connect(args.pg_dsn, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")

    print(f"PostgreSQL sink, W1 workload: {args.records:,} customers + {expected[1]:,} orders in "
          f"{len(batches)} batches of {args.batch:,}, fastest of {args.repeat} runs each")
    for told in (False, True):
        print(f"{MODES[told]:<52} {best[told]:>7.3f} s")
    ratio = best[False] / best[True]
    print(f"first load over a delete per batch: {ratio:.3f}x "
          f"({1000 * (best[False] - best[True]) / len(batches):.2f} ms saved per batch)")
    return 0 if ratio >= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
