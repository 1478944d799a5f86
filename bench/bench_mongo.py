"""MongoDB extraction against raw pymongo, measured in one run.

    python bench/bench_mongo.py [--uri URI] [--docs 20000] [--dump-docs 200000]
                                [--rss-small 100000] [--rss-large 1000000] [--repeat 3]

1. Live collection: documents/s of `MongoSource.read` (keyset by `_id`, byte-bounded batches,
   canonical values) against a raw `for doc in collection.find()` loop (goal >= 0.9x).
2. mongodump file: documents/s of `MongodumpSource.read` against raw `bson.decode_file_iter`
   (goal >= 0.9x).
3. Peak RSS of reading a dump of `--rss-large` documents against one of `--rss-small`, each in
   its own process (goal: within 20%): memory must not grow with the collection.

The goals compare like with like: the raw baselines decode with the same CodecOptions as the
sources (timezone-aware UTC dates, Decimal128 -> Decimal, ...), so the ratio is the cost of
the source's own machinery (keyset queries, framing, batching, resume positions, rejects).
Rows marked "info" give, for reference, the baselines with pymongo's default CodecOptions
(which skip that conversion), a `find().sort('_id')` (the order the source must read in for
exact resume; the goal stays against the unsorted `find()`), and a raw decode that keeps each
batch's documents alive the way any batch consumer must (a loop that drops every document at
once reuses the same hot memory; keeping --batch-records documents costs cache misses and page
faults). Live timings are wall-clock (the server dominates); dump timings are this process's
CPU time (steadier on a busy machine). Each is the best of `--repeat` alternating runs.
Exits 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import bson
import pymongo
from bson.decimal128 import Decimal128

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from etl.records import Partition  # noqa: E402
from etl.sources import mongo, mongodump  # noqa: E402
from etl.sources.base import BatchLimits  # noqa: E402
from etl.sources.bson_values import CANONICAL_CODEC  # noqa: E402

DEFAULT_URI = f"mongodb://127.0.0.1:{os.environ.get('ETL_MONGO_PORT', '27017')}/?directConnection=true"


def make_document(number: int) -> dict:
    """A patient-like document: nested address, array of visits, money as Decimal128, dates."""
    return {
        "_id": number,
        "mrn": f"MRN{number:09d}",
        "name": {"given": f"Given{number % 977}", "family": f"Family{number % 1231}"},
        "born": datetime.datetime(1930 + number % 90, 1 + number % 12, 1 + number % 28, tzinfo=datetime.UTC),
        "address": {"street": f"{number % 400} Main Street", "city": "Bergen", "zip": f"{number % 9999:04d}"},
        "balance": Decimal128(f"{number % 100000}.{number % 100:02d}"),
        "active": number % 7 != 0,
        "visits": [{"at": datetime.datetime(2024, 1 + k, 1, tzinfo=datetime.UTC), "code": f"Z{k:02d}"}
                   for k in range(number % 4)],
    }


def best_of(repeat: int, runs: dict, clock=time.perf_counter) -> dict:
    """Alternate the runs `repeat` times; keep each one's best time (and check the counts)."""
    best = {name: float("inf") for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            started = clock()
            count = run()
            best[name] = min(best[name], clock() - started)
            best[f"{name}_count"] = count
    return best


def bench_live(uri: str, docs: int, repeat: int, limits: BatchLimits) -> list[tuple]:
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10_000)
    name = f"etl_bench_{uuid.uuid4().hex[:8]}"
    try:
        collection = client[name]["patients"]
        for start in range(0, docs, 5000):
            collection.insert_many([make_document(n) for n in range(start, min(docs, start + 5000))])
        config = mongo.Config(type="mongo", uri=uri, database=name,
                              tables={"patients": {"mapping": "m.yaml"}})
        source = mongo.open_source("bench", config, limits)
        partition = Partition("bench", "patients", 0, 1)
        same_codec = collection.with_options(codec_options=CANONICAL_CODEC)
        times = best_of(repeat, {
            "raw": lambda: sum(1 for _ in same_codec.find()),
            "ours": lambda: sum(len(batch.records) for batch in source.read(partition)),
            "default": lambda: sum(1 for _ in collection.find()),
            "sorted": lambda: sum(1 for _ in same_codec.find(sort=[("_id", 1)])),
        })
        source.close()
    finally:
        client.drop_database(name)
        client.close()
    assert {times[f"{name}_count"] for name in ("raw", "ours", "default", "sorted")} == {docs}, times
    return [("live: read vs find()", docs / times["ours"], docs / times["raw"], 0.9),
            ("live: vs find(), default codec (info)", docs / times["ours"], docs / times["default"], None),
            ("live: vs find().sort('_id') (info)", docs / times["ours"], docs / times["sorted"], None)]


def write_dump(folder: Path, docs: int) -> Path:
    (folder / "clinic").mkdir(parents=True, exist_ok=True)
    path = folder / "clinic" / "patients.bson"
    with open(path, "wb") as out:
        for number in range(docs):
            out.write(bson.encode(make_document(number)))
    return path


def read_dump(folder: Path, limits: BatchLimits) -> int:
    config = mongodump.Config(type="mongodump", path=str(folder), database="clinic",
                              tables={"patients": {"mapping": "m.yaml"}})
    source = mongodump.open_source("bench", config, limits)
    (partition,) = source.plan("patients", 1)
    return sum(len(batch.records) for batch in source.read(partition))


def raw_dump(path: Path, codec_options=CANONICAL_CODEC) -> int:
    with open(path, "rb") as stream:
        return sum(1 for _ in bson.decode_file_iter(stream, codec_options))


def raw_dump_batched(path: Path, records: int) -> int:
    count = 0
    batch: list[dict] = []
    with open(path, "rb") as stream:
        for document in bson.decode_file_iter(stream, CANONICAL_CODEC):
            batch.append(document)
            if len(batch) == records:
                count += len(batch)
                batch = []
    return count + len(batch)


def bench_dump(docs: int, repeat: int, limits: BatchLimits) -> list[tuple]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = write_dump(folder, docs)
        times = best_of(repeat, {
            "raw": lambda: raw_dump(path),
            "ours": lambda: read_dump(folder, limits),
            "default": lambda: raw_dump(path, bson.DEFAULT_CODEC_OPTIONS),
            "batched": lambda: raw_dump_batched(path, limits.records),
        }, clock=time.process_time)
    assert {times[f"{name}_count"] for name in ("raw", "ours", "default", "batched")} == {docs}, times
    ours = docs / times["ours"]
    return [("mongodump: read vs decode_file_iter", ours, docs / times["raw"], 0.9),
            ("mongodump: vs default codec (info)", ours, docs / times["default"], None),
            (f"mongodump: vs raw in {limits.records}-doc batches (info)", ours, docs / times["batched"],
             None)]


def peak_rss_kb(docs: int, limits: BatchLimits) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        write_dump(Path(tmp), docs)
        output = subprocess.run([sys.executable, __file__, "--rss-child", tmp,
                                 "--batch-records", str(limits.records)], check=True,
                                capture_output=True, text=True).stdout
    result = json.loads(output)
    assert result["records"] == docs, result
    return result["peak_rss_kb"]


def bench_rss(small: int, large: int, limits: BatchLimits) -> list[tuple]:
    small_kb, large_kb = peak_rss_kb(small, limits), peak_rss_kb(large, limits)
    # the ratio column is large/small here; the goal is at most 1.2 (within 20%)
    return [(f"peak RSS MiB: {large:,} vs {small:,} docs", large_kb / 1024, small_kb / 1024, 1.2)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default=os.environ.get("ETL_MONGO_URI", DEFAULT_URI))
    parser.add_argument("--docs", type=int, default=20_000, help="documents in the live collection")
    parser.add_argument("--dump-docs", type=int, default=200_000, help="documents in the dump file")
    parser.add_argument("--rss-small", type=int, default=100_000)
    parser.add_argument("--rss-large", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-records", type=int, default=1000,
                        help="BatchLimits.records (the demo job uses 1000)")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    limits = BatchLimits(records=args.batch_records)
    if args.rss_child:
        records = read_dump(Path(args.rss_child), limits)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        print(json.dumps({"records": records, "peak_rss_kb": peak}))
        return 0

    rows = (bench_live(args.uri, args.docs, args.repeat, limits)
            + bench_dump(args.dump_docs, args.repeat, limits)
            + bench_rss(args.rss_small, args.rss_large, limits))
    print("figures: documents/s, or MiB for peak RSS; ratio = etl / baseline")
    print(f"{'measure':<48} {'etl':>12} {'baseline':>12} {'ratio':>7} {'goal':>8}  result")
    failed = False
    for label, ours, raw, goal in rows:
        ratio = ours / raw
        if goal is None:
            ok, goal_text = True, "-"
        elif label.startswith("peak RSS"):  # smaller is better: large / small
            ok, goal_text = ratio <= goal, f"<= {goal:.2f}"
        else:
            ok, goal_text = ratio >= goal, f">= {goal:.2f}"
        failed |= not ok
        result = "info" if goal is None else ("ok" if ok else "MISSED")
        print(f"{label:<48} {ours:>12,.1f} {raw:>12,.1f} {ratio:>7.2f} {goal_text:>8}  {result}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
