"""Validation speed against raw baselines measured in the same run.

Each measurement runs --repeat times, interleaved with its baseline; the fastest run counts.

(a) DynamoDB: validating N items (bucket checksums of the target read back by a parallel Scan,
    compared with the source's checksums accumulated while loading) against a raw boto3
    parallel Scan of the same table with the same segments, decoded with the same deserialiser.
    Goal: >= 0.8x the raw Scan's items/s. The full validation (hashing the in-memory source rows
    as well) is printed too.
(b) PostgreSQL to PostgreSQL: N identical rows in two databases, then the same with one row
    changed, validated by `validate_table` (checksums pushed down to SQL; with an integer key on
    both sides, buckets are key ranges: docs/checksum.md §10) and by reladiff's `diff_tables` on
    the same tables. Goal: no slower than reladiff, and the same differing key.
    The same tables are also validated from a job file, as `python -m etl.run job.yaml
    --validate-only` does (`validate_job`: a PostgreSQL source table copied by a mapping into a
    PostgreSQL target; both sides hashed in SQL, docs/checksum.md §10), against the same reladiff
    run. Goal: >= 2x reladiff's rows/s (`--job-goal`), and the same differing key. `--jsonb` adds
    a jsonb column (a nested document) to both tables, `--text-key` makes the key text.

Exit status: 0 every goal met; 1 a goal missed; 2 a result was wrong (differences where none
exist, or not the changed key).

    .venv/bin/python bench/bench_validation.py --dynamodb-items 50000 --pg-rows 1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import boto3
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's etl, not an installed one

from etl.checksum import BucketChecksums, validate_table  # noqa: E402
from etl.checksum.postgres_sql import PostgresTableSide  # noqa: E402
from etl.records import Column, TableSpec  # noqa: E402

GOAL_DYNAMODB_RATIO = 0.8
GOAL_POSTGRES_RATIO = 1.0
DDB_SPEC_COLUMNS = (
    Column("pk", "string"),
    Column("visit", "int"),
    Column("amount", "decimal(12,2)"),
    Column("weight", "float"),
    Column("name", "string", pii="hmac"),
    Column("seen_at", "timestamptz(6)"),
    Column("active", "bool"),
)


def timed(action: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def best_of(repeat: int, actions: dict[str, Callable[[], object]]) -> dict[str, tuple[float, object]]:
    """Each action run `repeat` times, interleaved; the fastest run of each (the machine is shared)."""
    best: dict[str, tuple[float, object]] = {}
    for _ in range(repeat):
        for name, action in actions.items():
            elapsed, result = timed(action)
            if name not in best or elapsed < best[name][0]:
                best[name] = (elapsed, result)
    return best


# ---------------------------------------------------------------- (a) DynamoDB


def ddb_rows(n: int) -> list[dict]:
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    return [
        {
            "pk": f"PATIENT#{i:08d}",
            "visit": i % 17,
            "amount": Decimal(i % 100000) / 100,
            "weight": 40 + (i % 997) / 7,
            "name": f"hmac:{i * 2654435761 % 2**32:08x}",
            "seen_at": start + dt.timedelta(seconds=i, microseconds=i % 1000),
            "active": i % 3 == 0,
        }
        for i in range(n)
    ]


def ddb_item(row: dict) -> dict:
    return {
        "pk": {"S": row["pk"]},
        "visit": {"N": str(row["visit"])},
        "amount": {"N": str(row["amount"])},
        "weight": {"N": repr(row["weight"])},
        "name": {"S": row["name"]},
        "seen_at": {"S": row["seen_at"].isoformat()},
        "active": {"BOOL": row["active"]},
    }


def load_dynamodb(client, table: str, rows: list[dict], threads: int) -> None:
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=table)

    def write(chunk: list[dict]) -> None:
        request = {table: [{"PutRequest": {"Item": ddb_item(row)}} for row in chunk]}
        while request:
            request = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or None

    chunks = [rows[i : i + 25] for i in range(0, len(rows), 25)]  # BatchWriteItem takes at most 25 items
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, chunks))


def raw_parallel_scan(client, table: str, segments: int, decode: Callable[[dict], dict]) -> int:
    """The baseline: boto3 Scan, one thread per segment, every item decoded."""
    counts = [0] * segments

    def scan(segment: int) -> None:
        request = {"TableName": table, "Segment": segment, "TotalSegments": segments}
        while True:
            page = client.scan(**request)
            for item in page["Items"]:
                decode(item)
                counts[segment] += 1
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    threads = [threading.Thread(target=scan, args=(s,)) for s in range(segments)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)


def target_reader(
    endpoint: str, spec: TableSpec, segments: int, client
) -> tuple[str, Callable[[], Iterator[dict]], Callable[[dict], dict]]:
    """The DynamoDB sink's read_back and its deserialiser when the sink exists, else a raw Scan path."""
    try:
        from etl.sinks.dynamodb import Config, open_sink
        from etl.sinks.dynamodb_values import decode_item
    except ImportError:
        from boto3.dynamodb.types import TypeDeserializer

        deserializer = TypeDeserializer()

        def decode_plain(item: dict) -> dict:
            row = {name: deserializer.deserialize(value) for name, value in item.items()}
            row["seen_at"] = dt.datetime.fromisoformat(row["seen_at"])
            row["weight"] = float(row["weight"])
            return row

        def scan_rows() -> Iterator[dict]:
            paginator = client.get_paginator("scan")
            for segment in range(segments):
                for page in paginator.paginate(TableName=spec.table, Segment=segment, TotalSegments=segments):
                    yield from (decode_plain(item) for item in page["Items"])

        return "raw boto3 Scan + TypeDeserializer (etl.sinks.dynamodb not present)", scan_rows, decode_plain
    sink = open_sink("bench", Config(type="dynamodb", endpoint_url=endpoint))
    columns = {column.name: column.parsed_type for column in spec.columns}
    return (
        "etl.sinks.dynamodb read_back",
        lambda: sink.read_back(spec, segments=segments),
        lambda item: decode_item(item, columns),
    )


def bench_dynamodb(args: argparse.Namespace) -> tuple[list[tuple], bool, bool]:
    client = boto3.client(
        "dynamodb",
        endpoint_url=args.dynamodb_endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    table = f"bench_validation_{uuid.uuid4().hex[:8]}"
    spec = TableSpec("ddb", table, ("pk",), DDB_SPEC_COLUMNS)
    rows = ddb_rows(args.dynamodb_items)
    n = len(rows)
    load_dynamodb(client, table, rows, args.segments)
    try:
        how, read_back, decode = target_reader(args.dynamodb_endpoint, spec, args.segments, client)
        print(f"DynamoDB target read with: {how}")
        loaded = BucketChecksums.for_table(spec, buckets=args.buckets).add_all(rows)  # as accumulated at load
        runs = best_of(
            args.repeat,
            {
                "raw": lambda: raw_parallel_scan(client, table, args.segments, decode),
                "ours": lambda: validate_table(
                    spec, lambda: rows, read_back, buckets=args.buckets, source_checksums=loaded
                ),
                "full": lambda: validate_table(spec, lambda: rows, read_back, buckets=args.buckets),
            },
        )
        (raw_time, scanned), (ours_time, ours), (full_time, full) = runs["raw"], runs["ours"], runs["full"]
    finally:
        client.delete_table(TableName=table)
    correct = scanned == n and ours.ok and full.ok and ours.rows_target == n
    ratio = (n / ours_time) / (n / raw_time)
    figures = [
        ("DynamoDB raw parallel Scan + decode", n, raw_time, n / raw_time, 1.0),
        ("DynamoDB validation (source checksums from load)", n, ours_time, n / ours_time, ratio),
        ("DynamoDB validation (source rows hashed too)", n, full_time, n / full_time, raw_time / full_time),
    ]
    return figures, ratio >= GOAL_DYNAMODB_RATIO, correct


# ---------------------------------------------------------------- (b) PostgreSQL

PG_COLUMNS = "id int8 PRIMARY KEY, amount numeric(12,2), name text, seen_at timestamptz, active bool"
PG_FILL = """
INSERT INTO visits
SELECT {key}, (i %% 100000) / 100.0, 'hmac:' || md5(i::text),
       timestamptz '2024-01-01 00:00:00+00' + i * interval '1.001 s', i %% 3 = 0{extra}
FROM generate_series(1, %s) AS i
"""
TEXT_KEY = "'V' || lpad(i::text, 9, '0')"
"""With --text-key: the key is text (V000000001, ...) instead of int8."""
JSONB_VALUE = (", jsonb_build_object('n', i, 'tags', jsonb_build_array('a', i / 3.0, i %% 2 = 0),"
               " 'nested', jsonb_build_object('at', 'x' || i, 'none', null))")
"""With --jsonb: a `doc jsonb` column, a 4-key document with a nested list and map."""
PG_SPEC = TableSpec(
    "pg",
    "visits",
    ("id",),
    (
        Column("id", "int"),
        Column("amount", "decimal(12,2)"),
        Column("name", "string", pii="hmac"),
        Column("seen_at", "timestamptz(6)"),
        Column("active", "bool"),
    ),
)


def key_of(number: int, text_key: bool) -> int | str:
    """The key of row `number` of generate_series: V000000042 with --text-key (`TEXT_KEY`), else 42."""
    return f"V{number:09d}" if text_key else number


def pg_dsn(host: str, port: int, database: str) -> str:
    return f"host={host} port={port} user=postgres dbname={database}"


def run_reladiff(host: str, port: int, source_db: str, target_db: str, jsonb: bool) -> list:
    """reladiff with its default options (HASHDIFF across two databases), connections included."""
    from reladiff import connect_to_table, diff_tables

    source = connect_to_table(f"postgresql://postgres@{host}:{port}/{source_db}", "visits", "id")
    target = connect_to_table(f"postgresql://postgres@{host}:{port}/{target_db}", "visits", "id")
    columns = ("amount", "name", "seen_at", "active", *(("doc",) if jsonb else ()))
    diff = list(diff_tables(source, target, extra_columns=columns))
    for segment in (source, target):
        segment.database.close()
    return diff


JOB_MAPPING = """\
version: 1
source:
  key: [id]
targets:
  pg: postgres
outputs:
  - target: pg
    table: visits
    key: [id]
    columns:
      id: {from: id, type: int}
      amount: {from: amount, type: "decimal(12,2)"}
      name: {from: name, type: string}
      seen_at: {from: seen_at, type: timestamptz(6)}
      active: {from: active, type: bool}
{extra}"""


def job_validation(folder: Path, source_dsn: str, target_dsn: str, jsonb: bool, text_key: bool
                   ) -> Callable[[], object]:
    """`validate_job` of a job copying the source database's `visits` into the target's: what
    `--validate-only` runs (without the process start and the report file)."""
    from etl.engine.validation import validate_job
    from etl.job import load_job

    mapping = JOB_MAPPING.replace("{extra}", "      doc: {from: doc, type: json}\n" if jsonb else "")
    (folder / "visits.yaml").write_text(
        mapping.replace("id: {from: id, type: int}", "id: {from: id, type: string}") if text_key else mapping)
    path = folder / "job.yaml"
    path.write_text(f"""\
version: 1
name: bench-validate
sources:
  pg_in: {{type: postgres, dsn: "{source_dsn}", tables: {{visits: {{mapping: visits.yaml}}}}}}
targets:
  pg: {{type: postgres, dsn: "{target_dsn}"}}
state: {{type: sqlite, path: "{folder / 'state.sqlite'}"}}
report: {{dir: "{folder}"}}
""")
    job = load_job(path)
    return lambda: validate_job(job).tables[0]


def bench_postgres(args: argparse.Namespace) -> tuple[list[tuple], bool, bool]:
    suffix = uuid.uuid4().hex[:8]
    databases = [f"bench_val_src_{suffix}", f"bench_val_tgt_{suffix}"]
    admin = pg_dsn(args.pg_host, args.pg_port, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in databases:
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        for name in databases:
            with psycopg.connect(pg_dsn(args.pg_host, args.pg_port, name), autocommit=True) as conn:
                columns = PG_COLUMNS.replace("id int8", "id text") if args.text_key else PG_COLUMNS
                conn.execute(f"CREATE TABLE visits ({columns}{', doc jsonb' if args.jsonb else ''})")
                conn.execute(PG_FILL.format(extra=JSONB_VALUE if args.jsonb else "",
                                            key=TEXT_KEY if args.text_key else "i"), (args.pg_rows,))
                conn.execute("VACUUM ANALYZE visits")
        source = PostgresTableSide(pg_dsn(args.pg_host, args.pg_port, databases[0]), "visits")
        target = PostgresTableSide(pg_dsn(args.pg_host, args.pg_port, databases[1]), "visits")
        n = args.pg_rows
        changed_key = key_of(n // 2 + 1, args.text_key)
        figures, goals, correct = [], True, True
        folder = tempfile.TemporaryDirectory()
        by_job = job_validation(Path(folder.name), source.dsn, target.dsn, args.jsonb, args.text_key)
        columns = (Column("id", "string" if args.text_key else "int"), *PG_SPEC.columns[1:],
                   *((Column("doc", "json"),) if args.jsonb else ()))
        spec = TableSpec(PG_SPEC.target, PG_SPEC.table, PG_SPEC.key, columns)
        for case in ("identical", "one row changed"):
            if case == "one row changed":
                with psycopg.connect(target.dsn, autocommit=True) as conn:
                    conn.execute("UPDATE visits SET amount = amount + 1 WHERE id = %s", (changed_key,))
            runs = best_of(
                args.repeat,
                {
                    "reladiff": lambda: run_reladiff(args.pg_host, args.pg_port, *databases, args.jsonb),
                    "ours": lambda: validate_table(spec, source, target, buckets=args.buckets),
                    "job": by_job,
                },
            )
            reladiff_time, diff = runs["reladiff"]
            ours_time, ours = runs["ours"]
            job_time, by_job_result = runs["job"]
            reladiff_keys = sorted({row[0] if args.text_key else int(row[0]) for _sign, row in diff})
            ours_keys = sorted(d.key["id"] for d in ours.differences)
            job_keys = sorted(d.key["id"] for d in by_job_result.differences)
            expected = [] if case == "identical" else [changed_key]
            same = ours_keys == reladiff_keys == job_keys == expected
            correct = correct and same and ours.rows_source == ours.rows_target == n
            correct = correct and by_job_result.rows_source == by_job_result.rows_target == n
            ratio = reladiff_time / ours_time
            job_ratio = reladiff_time / job_time
            goals = goals and ratio >= GOAL_POSTGRES_RATIO and job_ratio >= args.job_goal
            figures.append(
                (f"PostgreSQL reladiff diff_tables, {case}", n, reladiff_time, n / reladiff_time, 1.0)
            )
            figures.append((f"PostgreSQL validate_table, {case}", n, ours_time, n / ours_time, ratio))
            figures.append((f"PostgreSQL job --validate-only path, {case}", n, job_time, n / job_time,
                            job_ratio))
            print(
                f"{case}: differing keys: validate_table {ours_keys}, job validation {job_keys},"
                f" reladiff {reladiff_keys} -> same differing key: {'yes' if same else 'NO'}"
                f" (validate_table: {ours.buckets} buckets, mismatched {ours.mismatched_buckets};"
                f" job: {by_job_result.buckets} buckets)"
            )
        folder.cleanup()
        return figures, goals, correct
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in databases:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dynamodb-items", type=int, default=50_000)
    parser.add_argument("--pg-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--segments", type=int, default=4, help="Scan segments (both the raw Scan and read_back)"
    )
    parser.add_argument("--buckets", type=int, default=256)
    parser.add_argument("--dynamodb-endpoint", default="http://127.0.0.1:8001")
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the fastest counts")
    parser.add_argument("--job-goal", type=float, default=2.0,
                        help="minimum reladiff time / job validation time (the --validate-only path)")
    parser.add_argument("--jsonb", action="store_true",
                        help="PostgreSQL tables with a jsonb column too (a document of 4 keys, nested)")
    parser.add_argument("--text-key", action="store_true", help="PostgreSQL tables keyed by text, not int8")
    parser.add_argument("--skip-dynamodb", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args(argv)

    figures: list[tuple] = []
    goals_met, correct = True, True
    if not args.skip_dynamodb:
        rows, goal, right = bench_dynamodb(args)
        figures += rows
        goals_met, correct = goals_met and goal, correct and right
    if not args.skip_postgres:
        rows, goal, right = bench_postgres(args)
        figures += rows
        goals_met, correct = goals_met and goal, correct and right

    print(f"{'measurement':<56} {'rows':>10} {'seconds':>9} {'rows/s':>11} {'ratio':>7}")
    for name, rows_count, seconds, rate, ratio in figures:
        print(f"{name:<56} {rows_count:>10} {seconds:>9.2f} {rate:>11.0f} {ratio:>7.2f}")
    print(
        f"goals: DynamoDB >= {GOAL_DYNAMODB_RATIO}x raw Scan; PostgreSQL >= {GOAL_POSTGRES_RATIO}x reladiff,"
        f" job validation >= {args.job_goal}x reladiff"
        f" -> {'met' if goals_met else 'MISSED'}; results {'correct' if correct else 'WRONG'}"
    )
    if not correct:
        return 2
    return 0 if goals_met else 1


if __name__ == "__main__":
    sys.exit(main())
