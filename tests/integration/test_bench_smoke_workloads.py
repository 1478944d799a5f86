"""The W1/W2/W3 and memory benchmarks at smoke sizes: each runs to the end, checks and prints the
right row counts. Timing at these sizes says nothing, so the goals are set to pass; the recorded
figures come from the full sizes run by hand (docs/benchmarks.md)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MONGO_URI, PG_HOST, PG_PORT, PG_USER

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ADMIN_DSN = f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname=postgres"


def run(script: str, *options: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, f"bench/{script}", *options], cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "ETL_MONGO_URI": MONGO_URI, "ETL_PG_ADMIN_DSN": ADMIN_DSN},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


def figures(line: str) -> tuple[str, int]:
    """(label, rows) of a table line: the label, then rows, seconds, rows/s, ratio."""
    label, rows, _seconds, _rate, _ratio = re.fullmatch(r"(.+?)\s+(\d+)\s+([\d.]+)\s+([\d,]+)\s+([\d.]+)",
                                                        line).groups()
    return label, int(rows)


def test_w1_mongo_postgres_smoke():
    lines = run("bench_w1_mongo_postgres.py", "--records", "40", "--partitions", "2", "--batch", "10",
                "--goal", "0", "--find-goal", "0")
    # Seed 11 gives the 40 customers 238 orders in all.
    assert lines[0].startswith("loaded 40 documents (238 orders) into MongoDB in ")
    assert lines[1] == ("W1 MongoDB -> PostgreSQL: 40 documents -> 40 customers + 238 orders "
                        "(parallelism 2, 2 partitions, batch 10)")
    assert figures(lines[3]) == ("raw psycopg binary COPY of mapped rows", 278)
    assert figures(lines[4]) == ("etl engine end to end", 278)
    assert figures(lines[5]) == ("bare pymongo find() of the documents", 278)
    assert re.fullmatch(r"ratio engine/raw: \d+\.\d{3} \(goal >= 0\.0\)", lines[6])
    assert re.fullmatch(r"ratio engine/find\(\): \d+\.\d{3} \(goal >= 0\.0\)", lines[7])


def test_w2_mongo_dynamodb_smoke():
    lines = run("bench_w2_mongo_dynamodb.py", "--records", "30", "--partitions", "2", "--batch", "10",
                "--concurrency", "2", "--goal", "0", "--repeat", "2")
    assert lines[0].startswith("loaded 30 documents (176 orders) into MongoDB in ")
    # both servers run on this machine: the seconds each spent while a path ran, and the busy cores
    seconds = r"MongoDB server \d+\.\d s, DynamoDB Local \d+\.\d s, \d+\.\d\d cores busy"
    for number, first in ((1, "engine"), (2, "raw")):  # the passes alternate which path goes first
        assert re.fullmatch(rf"pass {number} \({first} first\): engine \d+\.\d\d s, raw \d+\.\d\d s, "
                            rf"ratio \d+\.\d{{3}}; CPU during the run: engine {seconds}; raw {seconds}",
                            lines[number])
    assert lines[3].startswith("W2 MongoDB -> DynamoDB: 30 documents -> 206 items (30 profiles + 176 orders; "
                               "parallelism 2 x concurrency 2 = 4 writer threads")
    assert lines[3].endswith("; the fastest of 2 passes)")
    assert figures(lines[5]) == ("raw TypeSerializer + batch_write_item, 4 thr", 206)
    assert figures(lines[6]) == ("etl engine end to end", 206)
    assert figures(lines[7]) == ("info: raw batch_write_item, items pre-encoded", 206)
    assert re.fullmatch(r"ratio engine/raw: \d+\.\d{3} \(goal >= 0\.0\); engine/pre-encoded raw: \d+\.\d{3}",
                        lines[8])


def test_w2_from_a_mongodump_folder_smoke():
    lines = run("bench_w2_mongo_dynamodb.py", "--source", "dump", "--records", "30", "--partitions", "2",
                "--batch", "10", "--concurrency", "2", "--goal", "0")
    assert lines[0] == "wrote 30 documents (176 orders) as a mongodump folder"
    assert lines[1].startswith("pass 1 (engine first): engine ")
    assert lines[2].startswith("W2 mongodump -> DynamoDB: 30 documents -> 206 items (30 profiles")
    assert figures(lines[5]) == ("etl engine end to end", 206)


@pytest.mark.skipif(importlib.util.find_spec("dlt") is None, reason="dlt is in the bench extra")
def test_w3_postgres_postgres_smoke():
    lines = run("bench_w3_postgres_postgres.py", "--rows", "500", "--batch", "100", "--dlt-backends",
                "sqlalchemy", "--goal", "0")
    table = lines[lines.index(next(line for line in lines if line.startswith("W3 "))):]
    assert table[0].startswith("W3 PostgreSQL -> PostgreSQL: 500 rows of 12 columns")
    assert figures(table[2]) == ("etl engine, 2 workers", 500)
    assert figures(table[3]) == ("dlt sql_table -> postgres, backend sqlalchemy", 500)
    assert re.fullmatch(r"ratio etl/fastest dlt: \d+\.\d{3} \(goal >= 0\.0\)", table[4])


def test_memory_smoke():
    lines = run("bench_memory.py", "--small", "30", "--large", "90", "--partitions", "2", "--batch", "10",
                "--goal", "100")
    assert lines[0] == "W1 peak RSS (parallelism 2, 2 partitions, batch 10)"
    assert [line.split()[0] for line in lines[2:4]] == ["30", "90"]
    assert all(float(line.split()[1]) > 0 for line in lines[2:4])
    assert re.fullmatch(r"ratio large/small: \d+\.\d{3} \(goal <= 100\.0\)", lines[4])


def test_w1_dump_postgres_smoke():
    lines = run("bench_w1_dump_postgres.py", "--records", "40", "--partitions", "2", "--batch", "10",
                "--goal", "0", "--processes", "--speedup-goal", "0", "--repeat", "2")
    assert lines[0].startswith("load average at start: ")
    assert lines[1] == ("W1 mongodump -> PostgreSQL: 40 documents -> 40 customers + 238 orders "
                        "(2 partitions, batch 10)")
    assert figures(lines[3]) == ("raw decode_file_iter + binary COPY, 1 thread", 278)
    assert [figures(line) for line in lines[4:9]] == [
        (f"etl engine, {kind}, parallelism {parallelism}", 278)
        for kind in ("threads", "processes") for parallelism in (1, 2)] + [
        ("two 1-worker runs at once, half each", 278)]
    cores = r"\d+\.\d{2}"
    assert re.fullmatch(rf"cores busy \(of \d+, the whole machine\): raw {cores}, threads p1 {cores}, "
                        rf"threads p2 {cores}, processes p1 {cores}, processes p2 {cores}, halves {cores}",
                        lines[9])
    for line, kind in zip(lines[10:12], ("threads", "processes"), strict=True):
        assert re.fullmatch(rf"{kind}: peak RSS MiB parallelism 1 [\d.]+, parallelism 2 [\d.]+; speedup "
                            rf"1 -> 2 workers [\d.]+x \(ceiling on \d+ cores: [\d.]+x\)", line)
    assert re.fullmatch(r"ratio engine/raw at parallelism 2: \d+\.\d{3} \(goal >= 0\.0\)", lines[12])
    assert re.fullmatch(r"speedup 1 -> 2 worker processes: \d+\.\d{2}x \(goal >= 0\.0\)", lines[13])
    assert re.fullmatch(r"two workers sharing nothing \(1 worker process over two 1-worker runs at once, "
                        r"half each\): \d+\.\d{2}x; 2 worker processes reached \d+% of it", lines[14])


def test_w1_dump_postgres_sizes_smoke():
    lines = run("bench_w1_dump_postgres.py", "--sizes", "20,40", "--partitions", "2", "--batch", "10",
                "--max-slowdown", "1")
    assert lines[1] == ("W1 mongodump -> PostgreSQL, parallelism 2 on threads, 2 partitions, batch 10: cost "
                        "as the work grows")
    # seed 11: the first 20 customers have 114 orders, the first 40 have 238
    assert [line.split()[:2] for line in lines[3:5]] == [["20", "134"], ["40", "278"]]
    assert lines[5].startswith("rows/s at 40 over rows/s at 20: ")
