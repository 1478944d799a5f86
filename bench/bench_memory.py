"""Peak RSS of the W1 run (MongoDB -> PostgreSQL customers + orders) at two sizes.

Loads `--small` and `--large` workload documents (bench/workloads.py) into two scratch MongoDB
databases, then runs the engine on each in a fresh child process (so each peak is its own) and
reads the child's peak resident set size (getrusage ru_maxrss). Memory is bounded by batches, not
by table size, so the two peaks should be close: exits 1 when large/small exceeds `--goal`.

    .venv/bin/python bench/bench_memory.py --small 100000 --large 1000000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

import pymongo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads  # noqa: E402
from bench_w1_mongo_postgres import JOB, mongo_uri, pg_admin_dsn  # noqa: E402
from engine_child import run_in_child  # noqa: E402


def measure(folder: Path, args: argparse.Namespace, name: str, count: int) -> tuple[int, float]:
    """(documents loaded by the engine, peak RSS MiB) of a child process running W1 on `count` documents."""
    workloads.load_mongo(args.mongo_uri, name, count, args.seed)
    dsn = workloads.create_database(args.pg_admin_dsn, name)
    try:
        (folder / f"{name}.mapping.yaml").write_text(workloads.W1_MAPPING)
        job = folder / f"{name}.yaml"
        job.write_text(JOB.format(name=name, uri=args.mongo_uri, database=name, partitions=args.partitions,
                                  dsn=dsn, batch=args.batch, parallelism=args.parallelism)
                       .replace("MAPPING", f"{name}.mapping.yaml"))
        outcome = run_in_child(job)
        if not outcome["ok"]:
            raise SystemExit(f"the run on {count} documents failed: {outcome['status']} {outcome['message']}")
        return outcome["loaded"], outcome["peak_rss_mib"]
    finally:
        with pymongo.MongoClient(args.mongo_uri) as client:
            client.drop_database(name)
        workloads.drop_database(args.pg_admin_dsn, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100_000, help="documents in the small run")
    parser.add_argument("--large", type=int, default=1_000_000, help="documents in the large run")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--goal", type=float, default=1.2, help="maximum large/small peak RSS ratio")
    parser.add_argument("--mongo-uri", default=mongo_uri())
    parser.add_argument("--pg-admin-dsn", default=pg_admin_dsn())
    args = parser.parse_args(argv)

    name = f"etl_bench_mem_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as folder:
        runs = [(count, *measure(Path(folder), args, f"{name}_{label}", count))
                for label, count in (("small", args.small), ("large", args.large))]
    for count, loaded, _ in runs:
        if loaded != count:
            print(f"the run on {count} documents loaded {loaded}", file=sys.stderr)
            return 2
    (_, _, small), (_, _, large) = runs
    ratio = large / small
    print(f"W1 peak RSS (parallelism {args.parallelism}, {args.partitions} partitions, batch {args.batch})")
    print(f"{'documents':>12}{'peak RSS MiB':>14}")
    for count, _, peak in runs:
        print(f"{count:>12}{peak:>14.1f}")
    print(f"ratio large/small: {ratio:.3f} (goal <= {args.goal})")
    if ratio > args.goal:
        print("GOAL MISSED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
