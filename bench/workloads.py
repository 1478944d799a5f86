"""The W1/W2/W3 benchmark workloads: seeded, deterministic data, sizes as arguments.

W1/W2: customer documents (ObjectId `_id`, nested address, 1-10 orders each with Decimal128
amounts and dates) in MongoDB, mapped to PostgreSQL `customers` + exploded `orders` (W1) or to a
DynamoDB single table, a profile item and one item per order (W2).
W3: a wide PostgreSQL table of 12 mixed columns, copied to another PostgreSQL database.

The same `seed` and `count` always give the same data, so figures from two runs compare.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import bson
import psycopg
import pymongo
from bson import ObjectId
from bson.decimal128 import Decimal128

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from etl.records import TableSpec  # noqa: E402
from etl.report.run_report import UNPROVEN  # noqa: E402

LOADED_UNVALIDATED = UNPROVEN
"""How a correct benchmark run ends: the benchmarks time the load with validation off, and a run
that does not validate is never green (docs/verdicts.md)."""

BASE_TIME = datetime(2020, 1, 1, tzinfo=UTC)
CITIES = ("Lyon", "Oslo", "Porto", "Austin", "Kyoto", "Lagos", "Quito", "Perth")
STATUSES = ("new", "paid", "shipped", "returned")

W1_MAPPING = """\
version: 1
source:
  key: [_id]
targets:
  pg: postgres
outputs:
  - target: pg
    table: customers
    key: [customer_id]
    columns:
      customer_id: {from: _id, type: string}
      customer_no: {from: customer_no, type: int, required: true}
      name: name
      email: email
      city: address.city
      country: address.country
      created: {from: created, type: timestamptz(3), required: true}
      balance: {from: balance, type: "decimal(12,2)", required: true}
  - target: pg
    table: orders
    explode: orders[]
    parent: customers
    key: [order_id]
    columns:
      order_id: {from: order_id, type: int}
      placed: {from: placed, type: timestamptz(3), required: true}
      status: status
      amount: {from: amount, type: "decimal(12,2)", required: true}
      quantity: {from: quantity, type: int}
"""

W2_MAPPING = """\
version: 1
source:
  key: [_id]
targets:
  ddb: dynamodb
outputs:
  - target: ddb
    table: {table}
    key: [pk, sk]
    columns:
      pk: {{template: "CUSTOMER#{{_id}}"}}
      sk: {{const: PROFILE}}
      customer_no: {{from: customer_no, type: int, required: true}}
      name: name
      email: email
      address: {{from: address, type: map}}
      created: {{from: created, type: timestamptz(3), required: true}}
      balance: {{from: balance, type: "decimal(12,2)", required: true}}
  - target: ddb
    table: {table}
    explode: orders[]
    key: [pk, sk]
    columns:
      pk: {{template: "CUSTOMER#{{$root._id}}"}}
      sk: {{template: "ORDER#{{order_id}}"}}
      order_id: {{from: order_id, type: int, required: true}}
      placed: {{from: placed, type: timestamptz(3), required: true}}
      status: status
      amount: {{from: amount, type: "decimal(12,2)", required: true}}
      quantity: {{from: quantity, type: int}}
"""


def customer_documents(count: int, seed: int = 11, chunk: int = 10_000) -> Iterator[list[dict]]:
    """`count` customer documents in chunks; orders are numbered 1.. across the whole workload."""
    rng = random.Random(seed)
    order_id = 0
    for start in range(0, count, chunk):
        documents = []
        for number in range(start, min(start + chunk, count)):
            created = BASE_TIME + timedelta(seconds=number * 37, milliseconds=number % 1000)
            orders = []
            for _ in range(rng.randint(1, 10)):
                order_id += 1
                orders.append({
                    "order_id": order_id,
                    "placed": created + timedelta(days=rng.randint(0, 900), milliseconds=rng.randint(0, 999)),
                    "status": STATUSES[rng.randrange(4)],
                    "amount": Decimal128(Decimal(rng.randint(100, 9_999_999)) / 100),
                    "quantity": rng.randint(1, 20),
                })
            documents.append({
                "_id": ObjectId(f"{0x5F000000 + number // 1000:08x}{number:016x}"),
                "customer_no": number,
                "name": f"Customer {number}",
                "email": f"customer{number}@example.org",
                "address": {"street": f"{number % 999} Main St", "city": CITIES[number % len(CITIES)],
                            "country": "FR", "postal_code": f"{number % 100000:05d}"},
                "created": created,
                "balance": Decimal128(Decimal(rng.randint(-500_000, 5_000_000)) / 100),
                "orders": orders,
            })
        yield documents


def load_mongo(uri: str, database: str, count: int, seed: int = 11) -> tuple[int, float]:
    """Insert the W1/W2 documents into `database.customers`; returns (orders, seconds)."""
    started, orders = time.perf_counter(), 0
    with pymongo.MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        collection = client[database].customers
        for documents in customer_documents(count, seed, chunk=5_000):
            orders += sum(len(document["orders"]) for document in documents)
            collection.insert_many(documents, ordered=False)
    return orders, time.perf_counter() - started


def write_dump(folder: Path, database: str, count: int, seed: int = 11) -> tuple[int, Path]:
    """The W1/W2 documents as a mongodump folder, `<folder>/<database>/customers.bson`; returns
    (orders, the file)."""
    (folder / database).mkdir(parents=True, exist_ok=True)
    path = folder / database / "customers.bson"
    orders = 0
    with open(path, "wb") as out:
        for documents in customer_documents(count, seed):
            orders += sum(len(document["orders"]) for document in documents)
            out.write(b"".join(bson.encode(document) for document in documents))
    return orders, path


# W3: 12 columns of mixed types, generated by the server so that loading 1,000,000 rows is quick.
W3_CREATE = """
CREATE TABLE {table} (
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
    born date,
    notes text
)
"""
W3_FILL = """
INSERT INTO {table}
SELECT i, i % 100000, (i % 30)::smallint, ((i * 7919) % 10000000) / 100.0, 'patient ' || i,
       'city ' || (i % 500), timestamp '2020-01-01' + i * interval '1 second',
       timestamptz '2020-01-01 00:00+00' + i * interval '1 minute', i % 2 = 0,
       (i % 1000) / 8.0, date '1950-01-01' + (i % 20000), repeat('n', i % 40)
FROM generate_series(1, {rows}) AS i
"""
W3_COLUMNS = ("id", "patient_no", "visits", "amount", "name", "city", "admitted", "recorded",
              "active", "score", "born", "notes")
W3_MAPPING = """\
version: 1
source:
  key: [id]
targets:
  pg: postgres
outputs:
  - target: pg
    table: wide
    key: [id]
    columns:
      id: {from: id, type: int}
      patient_no: {from: patient_no, type: int}
      visits: {from: visits, type: int}
      amount: {from: amount, type: "decimal(12,2)"}
      name: name
      city: city
      admitted: {from: admitted, type: timestamp(6)}
      recorded: {from: recorded, type: timestamptz(6)}
      active: {from: active, type: bool}
      score: {from: score, type: float}
      born: {from: born, type: date}
      notes: notes
"""


def create_w3_table(dsn: str, rows: int, table: str = "wide") -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(W3_CREATE.format(table=table))
        connection.execute(W3_FILL.format(table=table, rows=int(rows)))
        connection.execute(f"VACUUM ANALYZE {table}")


def create_database(admin_dsn: str, name: str) -> str:
    """A fresh PostgreSQL database; returns its DSN."""
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return psycopg.conninfo.make_conninfo(admin_dsn, dbname=name)


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class ServerCpu:
    """CPU seconds (user + system) spent over an interval by the local process that listens on TCP
    `port` (a server on this machine), from /proc: what a server on the same cores takes from the
    engine and the other servers. None where no local process listens there or /proc is missing."""

    def __init__(self, port: int) -> None:
        self._pid = self._listener(port)
        self._started = self._seconds()

    @staticmethod
    def _listener(port: int) -> int | None:
        sockets: set[str] = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as lines:
                    next(lines)
                    for line in lines:
                        fields = line.split()
                        # local address ends in the port in hex; state 0A is LISTEN
                        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
                            sockets.add(f"socket:[{fields[9]}]")
            except OSError:
                continue
        if not sockets:
            return None
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                descriptors = os.listdir(f"/proc/{pid}/fd")
                if any(os.readlink(f"/proc/{pid}/fd/{fd}") in sockets for fd in descriptors):
                    return int(pid)
            except OSError:
                continue
        return None

    def _seconds(self) -> float | None:
        if self._pid is None:
            return None
        try:
            with open(f"/proc/{self._pid}/stat") as stat:
                # fields 14 and 15 (utime, stime), counted after the parenthesised command name
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def seconds(self) -> float | None:
        """Since this object was made."""
        now = self._seconds()
        return None if now is None or self._started is None else now - self._started


def print_table(title: str, rows: list[tuple[str, int, float]], base: float) -> None:
    """`rows` of (label, rows moved, seconds); ratio is each rate over `base` rows/s."""
    print(title)
    print(f"{'path':<48}{'rows':>12}{'seconds':>10}{'rows/s':>12}{'ratio':>8}")
    for label, count, seconds in rows:
        rate = count / seconds
        print(f"{label:<48}{count:>12}{seconds:>10.2f}{rate:>12,.0f}{rate / base:>8.2f}")


def mapped_rows(mapping_text: str, count: int, seed: int = 11) -> dict[str, tuple[TableSpec, list[dict]]]:
    """The rows the mapping makes of the workload's documents: table -> (its TableSpec, rows).

    This is what the raw baselines write: the mapping's work is done before their clock starts.
    """
    from etl.mapping import compile_mapping
    from etl.mapping.spec import parse_mapping

    compiled = compile_mapping(parse_mapping(mapping_text))
    tables: dict[str, tuple[TableSpec, list[dict]]] = {spec.table: (spec, []) for spec in compiled.tables}
    for documents in customer_documents(count, seed):
        batch = compiled.apply(documents, lambda record: str(record["_id"]))
        assert not batch.rejects, batch.rejects[:1]
        for (_target, table), rows in batch.rows.items():
            tables[table][1].extend(rows.rows)
    return tables


def run_engine(folder: Path, name: str, job_text: str, mapping_text: str) -> tuple[object, float]:
    """Run a job file through the engine as `python -m etl.run` would; returns (report, seconds)."""
    from etl.engine.runner import run_job
    from etl.job import load_job

    (folder / f"{name}.mapping.yaml").write_text(mapping_text)
    path = folder / f"{name}.yaml"
    path.write_text(job_text.replace("MAPPING", f"{name}.mapping.yaml"))
    job = load_job(path)
    started = time.perf_counter()
    report = run_job(job)
    return report, time.perf_counter() - started
