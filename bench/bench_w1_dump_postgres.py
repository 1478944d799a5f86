"""W1 from a mongodump folder -> PostgreSQL customers + orders, against decode + raw binary COPY.

Writes `--records` W1 documents (bench/workloads.py) as a mongodump folder, so no MongoDB server is
in the loop, and in the same run times:

- the engine (a job with a `mongodump` source, validation off) at parallelism 1 and 2 on threads,
  and with `--processes` also on worker processes (`executor: {type: local, processes: true}`), each
  in a fresh schema of a scratch PostgreSQL database and in a child process of its own (its peak RSS
  is that of the largest process: the run's, or with processes its largest worker's);
- the raw baseline: one `bson.decode_file_iter` loop over the same file, a hand-written function
  turning each document into the same rows (tuples, no checks), and one binary COPY per table on
  one connection, all inside the clock (the rows of 1,000,000 documents do not fit in memory to be
  mapped before it).

Rows/s count target rows (customers + orders); the engine's tables are checked equal to the raw
ones (exit 2 when a row differs). Exits 1 when engine/raw at parallelism 2 (the faster of threads
and processes) is below `--goal`, or with `--processes` when 2 worker processes are less than
`--speedup-goal` times as fast as 1. `--repeat N` runs every engine mode N times in turn (each run
loading a fresh schema) and keeps the fastest run of each.

Every run also shows how many cores the whole machine kept busy meanwhile (/proc/stat; PostgreSQL
shares the cores): on N cores, N / (cores busy at parallelism 1) is the most parallelism 2 can gain.
With `--processes` the bench also measures what the machine gives two workers that share nothing:
two one-worker runs at once, each of half the documents (its own dump, schema, state store,
dead-letter file and run process). 1 worker process over that is what two workers gained on this
machine at that moment without sharing anything: the reference for the speedup, printed beside it
(measured like everything here, through the machine's noise).

`--sizes 100000,1000000` instead prints, per size, the engine's rows/s and peak RSS at
parallelism 2 with the raw rate of the same size: the cost as the work grows. It exits 1 when the
largest size is more than `--max-slowdown` slower per row than the smallest.

    .venv/bin/python bench/bench_w1_dump_postgres.py --records 100000
    .venv/bin/python bench/bench_w1_dump_postgres.py --records 100000 --processes
    .venv/bin/python bench/bench_w1_dump_postgres.py --sizes 100000,1000000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import bson
import psycopg
from bson.codec_options import CodecOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads  # noqa: E402
from busy_cores import BusyCores  # noqa: E402
from engine_child import run_in_child, run_in_children  # noqa: E402

DATABASE = "shop"
JOB = """\
version: 1
name: {name}
sources:
  dump: {{type: mongodump, path: "{folder}", database: {database},
         tables: {{customers: {{mapping: {mapping}, partitions: {partitions}}}}}}}
targets:
  pg: {{type: postgres, dsn: "{dsn}", schema: {schema}, create: if_missing}}
batch: {{records: {batch}}}
parallelism: {parallelism}
executor: {{type: local, processes: {processes}}}
state: {{type: sqlite, path: "{state}"}}
dead_letter: {{path: "{dead_letters}"}}
validation: {{after_run: false}}
report: {{dir: "{reports}"}}
"""
CUSTOMER_COLUMNS = ("customer_id", "customer_no", "name", "email", "city", "country", "created", "balance")
ORDER_COLUMNS = ("order_id", "customer_id", "placed", "status", "amount", "quantity")


def schema_of(parallelism: int, processes: bool) -> str:
    return f"engine_p{parallelism}" + ("_processes" if processes else "")


def label_of(parallelism: int, processes: bool) -> str:
    return f"etl engine, {'processes' if processes else 'threads'}, parallelism {parallelism}"


def run_files(folder: Path, schema: str) -> tuple[Path, Path]:
    """(state store, dead-letter file) of the run loading `schema`: each run has its own."""
    return folder / f"{schema}.sqlite", folder / f"{schema}.rejects.jsonl"


def job_file(folder: Path, dump: Path, dsn: str, schema: str, parallelism: int, processes: bool,
             partitions: int, batch: int) -> Path:
    """The job loading the dump folder `dump` into `schema`, written in `folder`."""
    mapping = folder / "w1.mapping.yaml"
    mapping.write_text(workloads.W1_MAPPING)
    job = folder / f"{schema}.yaml"
    state, dead_letters = run_files(folder, schema)
    job.write_text(JOB.format(name=f"w1dump-{schema}", folder=dump, database=DATABASE, mapping=mapping,
                              partitions=partitions, dsn=dsn, schema=schema, batch=batch,
                              parallelism=parallelism, processes=str(processes).lower(),
                              state=state, dead_letters=dead_letters, reports=folder / "reports"))
    return job


def run_engine_child(folder: Path, dsn: str, parallelism: int, processes: bool, partitions: int,
                     batch: int) -> dict:
    """Run the job in a child process (`engine_child.py`); returns its figures: seconds, status,
    loaded, RSS, cores busy."""
    return run_in_child(job_file(folder, folder, dsn, schema_of(parallelism, processes), parallelism,
                                 processes, partitions, batch))


HALVES = ("engine_half0", "engine_half1")
"""The schemas of the two share-nothing one-worker runs."""
HALVES_LABEL = "two 1-worker runs at once, half each"


def split_dump(file: Path, records: int, folder: Path) -> tuple[Path, Path]:
    """The dump's first and second halves as two dump folders under `folder` (disjoint keys)."""
    halves = (folder / "half0", folder / "half1")
    for half in halves:
        (half / DATABASE).mkdir(parents=True)
    with open(file, "rb") as stream, open(halves[0] / DATABASE / file.name, "wb") as first, \
            open(halves[1] / DATABASE / file.name, "wb") as second:
        for number in range(records):
            head = stream.read(4)  # every BSON document starts with its length, itself included
            body = stream.read(int.from_bytes(head, "little") - 4)
            (first if number < records // 2 else second).write(head + body)
    return halves


def run_halves(folder: Path, halves: tuple[Path, Path], dsn: str, partitions: int, batch: int) -> dict:
    """Two one-worker runs (worker processes) at once, one per half: seconds (the later run's end),
    loaded (both runs'), cores busy (the mean of the two runs' readings of the whole machine)."""
    jobs = [job_file(folder, half, dsn, schema, 1, True, max(1, partitions // 2), batch)
            for half, schema in zip(halves, HALVES, strict=True)]
    runs = run_in_children(jobs)
    if not all(run["ok"] for run in runs):
        raise SystemExit(f"engine run failed (two half runs): {runs}")
    busy = [run["cores_busy"] for run in runs if run["cores_busy"] is not None]
    return {"seconds": max(run["seconds"] for run in runs), "loaded": sum(run["loaded"] for run in runs),
            "cores_busy": sum(busy) / len(busy) if busy else None}


def raw_rows(document: dict) -> tuple[tuple, list[tuple]]:
    """The W1 mapping's rows of one document, written by hand (no checks, no rounding: the workload's
    timestamps have millisecond precision and its amounts two decimals already)."""
    customer_id = str(document["_id"])
    address = document["address"]
    customer = (customer_id, document["customer_no"], document["name"], document["email"], address["city"],
                address["country"], document["created"], document["balance"].to_decimal())
    orders = [(order["order_id"], customer_id, order["placed"], order["status"], order["amount"].to_decimal(),
               order["quantity"]) for order in document["orders"]]
    return customer, orders


def raw_load(dsn: str, file: Path, like: str, schema: str = "raw") -> tuple[float, float | None]:
    """Seconds (and cores busy meanwhile) for decode_file_iter + hand-written rows + one binary COPY per
    table, the two COPYs open at once on two connections, in one thread; the tables are copies of the
    engine's."""
    with psycopg.connect(dsn, autocommit=True) as customers_db, \
            psycopg.connect(dsn, autocommit=True) as orders_db:
        customers_db.execute(f"CREATE SCHEMA {schema}")
        customers_db.execute(f"CREATE TABLE {schema}.customers (LIKE {like}.customers INCLUDING ALL)")
        customers_db.execute(f"CREATE TABLE {schema}.orders (LIKE {like}.orders INCLUDING ALL)")
        customer_types = _types(customers_db, f"{schema}.customers", CUSTOMER_COLUMNS)
        order_types = _types(customers_db, f"{schema}.orders", ORDER_COLUMNS)
        options = CodecOptions(tz_aware=True)
        started, busy = time.perf_counter(), BusyCores()
        copy = "COPY {}.{} ({}) FROM STDIN (FORMAT BINARY)"
        with customers_db.cursor() as one, orders_db.cursor() as other, \
                one.copy(copy.format(schema, "customers", ", ".join(CUSTOMER_COLUMNS))) as customers, \
                other.copy(copy.format(schema, "orders", ", ".join(ORDER_COLUMNS))) as orders:
            customers.set_types(customer_types)
            orders.set_types(order_types)
            with open(file, "rb") as stream:
                for document in bson.decode_file_iter(stream, options):
                    customer, order_rows = raw_rows(document)
                    customers.write_row(customer)
                    for row in order_rows:
                        orders.write_row(row)
        return time.perf_counter() - started, busy.cores()


def _types(connection: psycopg.Connection, table: str, columns: tuple[str, ...]) -> list[str]:
    found = dict(connection.execute("SELECT attname, atttypid::regtype::text FROM pg_attribute "
                                    "WHERE attrelid = %s::regclass AND attnum > 0", (table,)).fetchall())
    return [found[column] for column in columns]


def differences(dsn: str, *schemas: str) -> int:
    """Rows of the engine's schemas (together) not in the raw one and back, both tables (0 when
    equal)."""
    with psycopg.connect(dsn) as connection:
        total = 0
        for table, columns in (("customers", CUSTOMER_COLUMNS), ("orders", ORDER_COLUMNS)):
            names = ", ".join(columns)
            engine = " UNION ALL ".join(f"SELECT {names} FROM {schema}.{table}" for schema in schemas)
            total += connection.execute(
                f"SELECT count(*) FROM (({engine} EXCEPT ALL SELECT {names} FROM raw.{table}) UNION ALL "
                f"(SELECT {names} FROM raw.{table} EXCEPT ALL ({engine}))) AS d").fetchone()[0]
        return total


Mode = tuple[int, bool]
"""(parallelism, worker processes)."""


def forget_run(dsn: str, folder: Path, *schemas: str) -> None:
    """Drop the schemas, state stores and dead letters of a run, so that its next run loads
    everything again."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        for schema in schemas:
            connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    for schema in schemas:
        for file in run_files(folder, schema):
            file.unlink(missing_ok=True)


def measure(admin_dsn: str, records: int, seed: int, modes: list[Mode], partitions: int,
            batch: int, check: bool, repeat: int = 1, halves: bool = False) -> dict:
    """One size: the dump written, the engine in each mode (`repeat` rounds of every mode in turn,
    the fastest run of each kept: the machine is shared; with `halves`, the two share-nothing half
    runs after them), then the raw load; all figures."""
    name = f"etl_bench_w1d_{uuid.uuid4().hex[:8]}"
    dsn = workloads.create_database(admin_dsn, name)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            orders, file = workloads.write_dump(folder, DATABASE, records, seed)
            figures: dict = {"orders": orders, "engine": {}}
            half_dumps = split_dump(file, records, folder) if halves else None
            for round_ in range(repeat):
                for mode in modes:
                    if round_:
                        forget_run(dsn, folder, schema_of(*mode))
                    outcome = run_engine_child(folder, dsn, *mode, partitions, batch)
                    if not outcome["ok"] or outcome["loaded"] != records:
                        raise SystemExit(f"engine run failed ({label_of(*mode)}): {outcome}")
                    fastest = figures["engine"].get(mode)
                    if fastest is None or outcome["seconds"] < fastest["seconds"]:
                        figures["engine"][mode] = outcome
                if half_dumps:
                    if round_:
                        forget_run(dsn, folder, *HALVES)
                    outcome = run_halves(folder, half_dumps, dsn, partitions, batch)
                    if outcome["loaded"] != records:
                        raise SystemExit(f"engine runs of the halves loaded {outcome['loaded']} of {records}")
                    if "halves" not in figures or outcome["seconds"] < figures["halves"]["seconds"]:
                        figures["halves"] = outcome
            figures["raw_seconds"], figures["raw_cores_busy"] = raw_load(dsn, file, like=schema_of(*modes[0]))
            expected = {"customers": records, "orders": orders}
            loads = [(label_of(*mode), (schema_of(*mode),)) for mode in modes]
            loads += [(HALVES_LABEL, HALVES)] if halves else []
            for label, schemas in loads + [("raw", ("raw",))]:
                found = workloads_count(dsn, *schemas)
                if found != expected:
                    print(f"wrong row counts in {label}: {found}, expected {expected}", file=sys.stderr)
                    raise SystemExit(2)
            if check:
                for label, schemas in loads:
                    if (differing := differences(dsn, *schemas)) != 0:
                        print(f"{label}: {differing} rows differ from raw", file=sys.stderr)
                        raise SystemExit(2)
            return figures
    finally:
        workloads.drop_database(admin_dsn, name)


def workloads_count(dsn: str, *schemas: str) -> dict[str, int]:
    """Rows per table, the schemas' together."""
    with psycopg.connect(dsn) as connection:
        return {table: sum(connection.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0]
                           for schema in schemas) for table in ("customers", "orders")}


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="documents in the dump")
    parser.add_argument("--sizes", help="comma-separated document counts: the cost-as-work-grows mode")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--batch", type=int, default=1000, help="records per batch")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--goal", type=float, default=0.5, help="minimum engine/raw rows/s at parallelism 2")
    parser.add_argument("--max-slowdown", type=float, default=0.10,
                        help="--sizes: the largest size's rows/s may be this fraction below the smallest's")
    parser.add_argument("--processes", action="store_true",
                        help="also run the engine on worker processes (the --sizes mode: only on them)")
    parser.add_argument("--speedup-goal", type=float, default=1.7,
                        help="with --processes: minimum speedup from 1 to 2 worker processes")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of every engine mode in turn; the fastest run of each counts")
    parser.add_argument("--no-check", action="store_true",
                        help="skip comparing the engine's rows with the raw rows (EXCEPT ALL, both ways)")
    parser.add_argument("--pg-admin-dsn", default=workloads_admin_dsn())
    args = parser.parse_args(argv)
    if args.sizes:
        return sizes_mode(args)

    print(f"load average at start: {load_average()}")
    kinds = [False, True] if args.processes else [False]
    modes = [(parallelism, processes) for processes in kinds for parallelism in (1, 2)]
    figures = measure(args.pg_admin_dsn, args.records, args.seed, modes, args.partitions, args.batch,
                      not args.no_check, args.repeat, halves=args.processes)
    total = args.records + figures["orders"]
    raw_rate = total / figures["raw_seconds"]
    engine = figures["engine"]
    workloads.print_table(
        f"W1 mongodump -> PostgreSQL: {args.records} documents -> {args.records} customers + "
        f"{figures['orders']} orders ({args.partitions} partitions, batch {args.batch})",
        [("raw decode_file_iter + binary COPY, 1 thread", total, figures["raw_seconds"])]
        + [(label_of(*mode), total, engine[mode]["seconds"]) for mode in modes]
        + ([(HALVES_LABEL, total, figures["halves"]["seconds"])] if args.processes else []), raw_rate)
    cores = os.cpu_count() or 1
    print(f"cores busy (of {cores}, the whole machine): raw {_cores(figures['raw_cores_busy'])}, "
          + ", ".join(f"{'processes' if m[1] else 'threads'} p{m[0]} {_cores(engine[m]['cores_busy'])}"
                      for m in modes)
          + (f", halves {_cores(figures['halves']['cores_busy'])}" if args.processes else ""))
    speedups = {}
    for processes in kinds:
        one, two = engine[(1, processes)], engine[(2, processes)]
        speedups[processes] = one["seconds"] / two["seconds"]
        kind = "processes" if processes else "threads"
        ceiling = f"{cores / one['cores_busy']:.2f}x" if one["cores_busy"] else "unknown"
        print(f"{kind}: peak RSS MiB parallelism 1 {one['peak_rss_mib']:.1f}, parallelism 2 "
              f"{two['peak_rss_mib']:.1f}; speedup 1 -> 2 workers {speedups[processes]:.2f}x "
              f"(ceiling on {cores} cores: {ceiling})")
    ratio = total / min(engine[(2, processes)]["seconds"] for processes in kinds) / raw_rate
    print(f"ratio engine/raw at parallelism 2: {ratio:.3f} (goal >= {args.goal})")
    missed = ratio < args.goal
    if args.processes:
        print(f"speedup 1 -> 2 worker processes: {speedups[True]:.2f}x (goal >= {args.speedup_goal})")
        missed = missed or speedups[True] < args.speedup_goal
        shared_nothing = engine[(1, True)]["seconds"] / figures["halves"]["seconds"]
        print(f"two workers sharing nothing (1 worker process over two 1-worker runs at once, half each): "
              f"{shared_nothing:.2f}x; 2 worker processes reached {speedups[True] / shared_nothing:.0%} "
              "of it")
        if shared_nothing < args.speedup_goal:
            print(f"two workers sharing nothing gained less than {args.speedup_goal}x here in this run")
    print(f"load average at end: {load_average()}")
    if missed:
        print("GOAL MISSED", file=sys.stderr)
        return 1
    return 0


def _cores(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f}"


def sizes_mode(args: argparse.Namespace) -> int:
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"load average at start: {load_average()}")
    print(f"W1 mongodump -> PostgreSQL, parallelism 2 on {'processes' if args.processes else 'threads'}, "
          f"{args.partitions} partitions, batch {args.batch}: cost as the work grows")
    print(f"{'documents':>10}{'rows':>11}{'engine s':>10}{'engine rows/s':>15}{'raw rows/s':>12}{'ratio':>7}"
          f"{'peak RSS MiB':>14}")
    rates = []
    for size in sizes:
        figures = measure(args.pg_admin_dsn, size, args.seed, [(2, args.processes)], args.partitions,
                          args.batch, not args.no_check)
        total = size + figures["orders"]
        engine = figures["engine"][(2, args.processes)]
        rate, raw_rate = total / engine["seconds"], total / figures["raw_seconds"]
        rates.append(rate)
        print(f"{size:>10}{total:>11}{engine['seconds']:>10.2f}{rate:>15,.0f}{raw_rate:>12,.0f}"
              f"{rate / raw_rate:>7.2f}{engine['peak_rss_mib']:>14.1f}", flush=True)
    change = rates[-1] / rates[0]
    print(f"rows/s at {sizes[-1]} over rows/s at {sizes[0]}: {change:.2f} "
          f"(goal >= {1 - args.max_slowdown:.2f})")
    print(f"load average at end: {load_average()}")
    if change < 1 - args.max_slowdown:
        print("GOAL MISSED", file=sys.stderr)
        return 1
    return 0


def workloads_admin_dsn() -> str:
    return os.environ.get("ETL_PG_ADMIN_DSN", f"host=127.0.0.1 port={os.environ.get('ETL_PG_PORT', '5432')} "
                          "user=postgres dbname=postgres")


if __name__ == "__main__":
    sys.exit(main())
