"""PostgreSQL extraction rows/s against a raw psycopg server-side cursor loop over the same table.

    .venv/bin/python bench/bench_relational.py --rows 1000000

Creates a scratch database with a wide table of `--rows` rows (15 columns: integers, numeric,
text, timestamps with and without time zone, uuid, boolean, double, date, jsonb), then times,
alternately (swapping which goes first) and `--repeat` times each, (a) a plain named-cursor
`fetchmany` loop over `SELECT *` — the fastest way psycopg can hand rows to Python — and (b) the source
reading the table as the engine does (plan, keyset pages, canonical records in batches). Prints
both rates and their ratio (best run of each); exits 1 when the ratio is below `--goal`.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etl.sources.base import BatchLimits  # noqa: E402
from etl.sources.postgres import Config, open_source  # noqa: E402

TABLE = "bench_wide"
CREATE = f"""
CREATE TABLE {TABLE} (
    id bigint PRIMARY KEY,
    patient_no integer NOT NULL,
    visits smallint,
    amount numeric(12, 2),
    name text,
    city varchar(40),
    admitted timestamp,
    recorded timestamptz,
    active boolean,
    score double precision,
    ref uuid,
    born date,
    notes text,
    code char(4),
    extra jsonb
)
"""
FILL = f"""
INSERT INTO {TABLE}
SELECT i, i % 100000, (i % 30)::smallint, (i % 100000) / 100.0, 'patient ' || i, 'city ' || (i % 500),
       timestamp '2020-01-01' + i * interval '1 second',
       timestamptz '2020-01-01 00:00+00' + i * interval '1 minute',
       i % 2 = 0, i / 7.0, md5(i::text)::uuid, date '1950-01-01' + (i % 20000),
       repeat('n', i % 50), lpad((i % 10000)::text, 4, '0'), jsonb_build_object('k', i % 10)
FROM generate_series(1, %s) AS i
"""


def create_database(admin_dsn: str, name: str, rows: int) -> str:
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{admin_dsn} dbname={name}"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(CREATE)
        connection.execute(FILL.replace("%s", str(int(rows))))
        connection.execute(f"VACUUM ANALYZE {TABLE}")
    return dsn


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def raw_cursor_loop(dsn: str, batch: int) -> int:
    """The baseline: a named (server-side) cursor and fetchmany, rows as psycopg's tuples."""
    rows = 0
    with psycopg.connect(dsn) as connection, connection.cursor(name="raw") as cursor:
        cursor.itersize = batch
        cursor.execute(f"SELECT * FROM {TABLE}")
        while chunk := cursor.fetchmany(batch):
            rows += len(chunk)
    return rows


def source_read(dsn: str, batch: int) -> int:
    config = Config(type="postgres", dsn=dsn, tables={TABLE: {"mapping": "bench.yaml"}})
    source = open_source("bench", config, BatchLimits(records=batch, bytes=1 << 30))
    try:
        rows = 0
        for partition in source.plan(TABLE, 1):
            for batch_ in source.read(partition):
                rows += len(batch_.records)
        return rows
    finally:
        source.close()


def timed(function, *args) -> tuple[float, int]:
    start = time.perf_counter()
    rows = function(*args)
    return time.perf_counter() - start, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="PostgreSQL source vs raw psycopg server-side cursor")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the wide table")
    parser.add_argument("--batch", type=int, default=5000, help="records per batch / fetchmany size")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each side (best is kept)")
    parser.add_argument("--goal", type=float, default=0.9, help="minimum source/raw ratio")
    parser.add_argument(
        "--admin-dsn",
        default="host=127.0.0.1 port=5432 user=postgres",
        help="libpq settings of a user that may create databases (without dbname)",
    )
    args = parser.parse_args(argv)

    name = f"etl_bench_{uuid.uuid4().hex[:8]}"
    dsn = create_database(args.admin_dsn, name, args.rows)
    try:
        raw_cursor_loop(dsn, args.batch)  # warm the cache for both sides
        raw_best = source_best = float("inf")
        for run in range(args.repeat):
            # Alternate which side goes first so that neither always meets a warmer server.
            for side in (raw_cursor_loop, source_read) if run % 2 == 0 else (source_read, raw_cursor_loop):
                seconds, rows = timed(side, dsn, args.batch)
                if rows != args.rows:
                    raise SystemExit(f"{side.__name__} read {rows} rows, expected {args.rows}")
                if side is raw_cursor_loop:
                    raw_best = min(raw_best, seconds)
                else:
                    source_best = min(source_best, seconds)
    finally:
        drop_database(args.admin_dsn, name)

    raw_rate, source_rate = args.rows / raw_best, args.rows / source_best
    ratio = source_rate / raw_rate
    print(f"{'path':<44}{'rows':>12}{'seconds':>10}{'rows/s':>12}")
    for label, seconds, rate in (
        ("raw psycopg named cursor, fetchmany", raw_best, raw_rate),
        ("etl PostgreSQL source, canonical records", source_best, source_rate),
    ):
        print(f"{label:<44}{args.rows:>12}{seconds:>10.3f}{rate:>12.0f}")
    print(f"ratio source/raw: {ratio:.3f} (goal >= {args.goal})")
    if ratio < args.goal:
        print("GOAL MISSED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
