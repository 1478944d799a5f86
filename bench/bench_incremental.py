"""What incremental jobs cost and save, on a live MongoDB -> PostgreSQL job (parent and child table).

In one run: a full load without `incremental: true` (the baseline), the same load keeping change
positions and the ledger, then `--changes` percent of the documents changed (half updated with
their arrays shrunk, half deleted) and a few inserted, caught up by an incremental run and, for
comparison, by a full reload. Validation proves the caught-up target equal to the source. Prints
records/s of both loads (the ledger's cost as a ratio) and the catch-up against the reload; exits
1 when the targets differ or the catch-up is not `--min-speedup` times faster than the reload.

    python bench/bench_incremental.py --records 20000 --changes 1
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
import pymongo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etl.engine import RunOptions, run_job, validate_job  # noqa: E402
from etl.job import load_job  # noqa: E402

MAPPING = """\
version: 1
source:
  key: [_id]
targets:
  pg: postgres
outputs:
  - target: pg
    table: patients
    key: [patient_id]
    columns:
      patient_id: {from: _id, type: int}
      name: name
      ward: ward
  - target: pg
    table: visits
    explode: visits[]
    parent: patients
    key: [visit_id]
    columns:
      visit_id: {from: visit_id, type: int}
      cost: {from: cost, type: int}
"""


def documents(n: int) -> list[dict]:
    return [{"_id": i, "name": f"patient {i}", "ward": "ABCD"[i % 4],
             "visits": [{"visit_id": i * 10 + v, "cost": v * 100} for v in range(i % 4)]}
            for i in range(1, n + 1)]


def write_job(folder: Path, name: str, mongo_uri: str, database: str, dsn: str, schema: str,
              incremental: bool) -> Path:
    (folder / "patients.yaml").write_text(MAPPING)
    path = folder / f"{name}.yaml"
    path.write_text(f"""\
version: 1
name: {name}
sources:
  mongo:
    type: mongo
    uri: "{mongo_uri}"
    database: {database}
    tables: {{patients: {{mapping: patients.yaml, partitions: 4}}}}
targets:
  pg: {{type: postgres, dsn: "{dsn}", schema: {schema}, create: if_missing}}
parallelism: 2
state: {{type: sqlite, path: .etl/{name}.sqlite}}
dead_letter: {{path: .etl/{name}.jsonl}}
report: {{dir: .etl/reports}}
incremental: {str(incremental).lower()}
""")
    return path


def timed(job: Path, **options) -> tuple[float, int]:
    started = time.perf_counter()
    report = run_job(load_job(job), RunOptions(validate=False, **options))
    seconds = time.perf_counter() - started
    if report.status != "unproven":
        raise SystemExit(f"{job.name}: {report.status}: {report.message}")
    return seconds, sum(t.extracted_this_run for t in report.tables)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--changes", type=float, default=1.0, help="percent of documents changed")
    parser.add_argument("--min-speedup", type=float, default=2.0)
    parser.add_argument("--mongo", default=os.environ.get("ETL_MONGO_URI",
                                                          "mongodb://127.0.0.1:27017/?directConnection=true"))
    parser.add_argument("--pg", default=os.environ.get("ETL_PG_DSN",
                                                       "host=127.0.0.1 user=postgres dbname=postgres"))
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    client = pymongo.MongoClient(args.mongo)
    database = f"bench_inc_{tag}"
    collection = client[database].patients
    dsn = args.pg.replace("dbname=postgres", f"dbname=bench_inc_{tag}")
    with psycopg.connect(args.pg, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "bench_inc_{tag}"')
    try:
        docs = documents(args.records)
        for start in range(0, len(docs), 10_000):
            collection.insert_many(docs[start:start + 10_000])
        with tempfile.TemporaryDirectory() as folder:
            plain = write_job(Path(folder), "plain", args.mongo, database, dsn, "plain", False)
            kept = write_job(Path(folder), "kept", args.mongo, database, dsn, "kept", True)
            plain_seconds, loaded = timed(plain)
            kept_seconds, _ = timed(kept)
            changed = max(2, int(args.records * args.changes / 100))
            ids = list(range(1, args.records + 1, max(1, args.records // changed)))[:changed]
            collection.update_many({"_id": {"$in": ids[::2]}}, {"$set": {"visits": [], "ward": "Z"}})
            collection.delete_many({"_id": {"$in": ids[1::2]}})
            collection.insert_many(documents(args.records + changed // 4)[args.records:])
            catch_up_seconds, applied = timed(kept, incremental=True)
            reload_seconds, _ = timed(kept, full_refresh=True)
            catch_up_again, _ = timed(kept, incremental=True)  # nothing changed since the reload
            validation = validate_job(load_job(kept))
    finally:
        client.drop_database(database)
        client.close()
        with psycopg.connect(args.pg, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "bench_inc_{tag}" WITH (FORCE)')
    print(f"full load, {loaded:,} documents: without the ledger {loaded / plain_seconds:,.0f} records/s, "
          f"with it {loaded / kept_seconds:,.0f} records/s: ratio {plain_seconds / kept_seconds:.2f}x")
    print(f"catch-up of {applied:,} changes: {catch_up_seconds:.2f} s; full reload {reload_seconds:.2f} s: "
          f"the catch-up is {reload_seconds / catch_up_seconds:.1f}x faster; nothing to apply: "
          f"{catch_up_again:.2f} s")
    print(f"validation after the catch-up: {'equal' if validation.ok else 'DIFFERENT'}")
    if not validation.ok:
        return 1
    return 0 if reload_seconds / catch_up_seconds >= args.min_speedup else 1


if __name__ == "__main__":
    sys.exit(main())
