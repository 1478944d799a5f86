"""W3: a wide PostgreSQL table (12 mixed columns) -> another PostgreSQL database, etl against dlt.

Creates a scratch source database with `--rows` rows (bench/workloads.py, server-generated) and a
scratch target database, then, in the same run, copies the table with the etl engine (schema
`engine`, `--parallelism` workers over `--partitions` key ranges, upsert by key, validation off)
and with dlt (PyPI `dlt`, its `sql_table` source and `postgres` destination, each backend of
`--dlt-backends` into its own dataset, dlt's default append). Row counts of every copy are
checked. Prints rows/s of each and etl over the fastest dlt; exits 1 below `--goal`.

    .venv/bin/python bench/bench_w3_postgres_postgres.py --rows 1000000 --dlt-backends sqlalchemy,pyarrow
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads  # noqa: E402
from bench_w1_mongo_postgres import pg_admin_dsn  # noqa: E402
from workloads import LOADED_UNVALIDATED  # noqa: E402

JOB = """\
version: 1
name: {name}
sources:
  src: {{type: postgres, dsn: "{source}", tables: {{wide: {{mapping: MAPPING, partitions: {partitions}}}}}}}
targets:
  pg: {{type: postgres, dsn: "{target}", schema: engine, create: if_missing}}
batch: {{records: {batch}}}
parallelism: {parallelism}
state: {{type: sqlite, path: {name}.sqlite}}
validation: {{after_run: false}}
report: {{dir: reports}}
"""


def url(dsn: str) -> str:
    """The libpq settings of `dsn` as the postgresql:// URL SQLAlchemy and dlt take.

    dlt's postgres destination insists on a password; the local server trusts loopback
    connections and ignores it, so a placeholder stands in when the DSN has none."""
    parts = psycopg.conninfo.conninfo_to_dict(dsn)
    password = parts.get("password", "unused")
    return (f"postgresql://{parts.get('user', 'postgres')}:{password}@{parts.get('host', '127.0.0.1')}:"
            f"{parts.get('port', 5432)}/{parts['dbname']}")


def run_dlt(source_dsn: str, target_dsn: str, backend: str, folder: Path) -> float:
    """Seconds for dlt to extract, normalise and load the table into dataset `dlt_<backend>`."""
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"  # no network from a benchmark
    try:
        import dlt
        from dlt.sources.sql_database import sql_table
    except ImportError as error:
        raise SystemExit(f"dlt cannot be imported ({error}): install the bench extra, "
                         "`.venv/bin/pip install -e '.[bench]'`") from None

    pipeline = dlt.pipeline(pipeline_name=f"w3_{backend}", pipelines_dir=str(folder),
                            destination=dlt.destinations.postgres(credentials=url(target_dsn)),
                            dataset_name=f"dlt_{backend}")
    started = time.perf_counter()
    pipeline.run(sql_table(credentials=url(source_dsn), table="wide", backend=backend))
    return time.perf_counter() - started


def count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as connection:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000, help="records per engine batch")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--parallelism", type=int, default=2, help="engine workers")
    parser.add_argument("--dlt-backends", default="sqlalchemy,pyarrow",
                        help="comma-separated dlt sql_table backends to time")
    parser.add_argument("--goal", type=float, default=2.0, help="minimum etl/fastest-dlt rows/s ratio")
    parser.add_argument("--pg-admin-dsn", default=pg_admin_dsn())
    args = parser.parse_args(argv)

    name = f"etl_bench_w3_{uuid.uuid4().hex[:8]}"
    source_db, target_db = f"{name}_src", f"{name}_dst"
    source = workloads.create_database(args.pg_admin_dsn, source_db)
    target = workloads.create_database(args.pg_admin_dsn, target_db)
    timings: list[tuple[str, int, float]] = []
    try:
        workloads.create_w3_table(source, args.rows)
        with tempfile.TemporaryDirectory() as folder:
            job = JOB.format(name=name, source=source, target=target, partitions=args.partitions,
                             batch=args.batch, parallelism=args.parallelism)
            report, seconds = workloads.run_engine(Path(folder), name, job, workloads.W3_MAPPING)
            if report.status != LOADED_UNVALIDATED:
                print(f"engine run failed: {report.status} {report.message}", file=sys.stderr)
                return 2
            timings.append((f"etl engine, {args.parallelism} workers", count(target, "engine.wide"), seconds))
            for backend in args.dlt_backends.split(","):
                seconds = run_dlt(source, target, backend, Path(folder))
                timings.append((f"dlt sql_table -> postgres, backend {backend}",
                                count(target, f"dlt_{backend}.wide"), seconds))
    finally:
        workloads.drop_database(args.pg_admin_dsn, source_db)
        workloads.drop_database(args.pg_admin_dsn, target_db)

    wrong = [(label, rows) for label, rows, _ in timings if rows != args.rows]
    if wrong:
        print(f"wrong row counts (expected {args.rows}): {wrong}", file=sys.stderr)
        return 2
    fastest_dlt = min(seconds for label, _, seconds in timings if label.startswith("dlt"))
    ratio = fastest_dlt / timings[0][2]
    workloads.print_table(f"W3 PostgreSQL -> PostgreSQL: {args.rows} rows of 12 columns (engine: "
                          f"{args.partitions} partitions, batch {args.batch}); ratio over the fastest dlt",
                          timings, args.rows / fastest_dlt)
    print(f"ratio etl/fastest dlt: {ratio:.3f} (goal >= {args.goal})")
    if ratio < args.goal:
        print("GOAL MISSED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
