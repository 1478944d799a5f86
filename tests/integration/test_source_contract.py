"""The contract every source keeps (`etl.sources.base.Source`), run against every source engine.

One suite, parametrized over the engines the way dlt runs one suite over every destination: a new
source adds an entry to `ENGINES` (how to put records into it and open it here), not a test file.
Oracle and SQL Server run through the harness of test_dialect_sql.py: their own SQL, parsed in their
dialect by sqlglot and run transpiled on PostgreSQL. What only one engine does (BSON types, mixed
`_id` types, exported snapshots, dump damage) stays in that engine's own file.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import psycopg
import pytest

from etl.records import Partition
from etl.sources import SOURCE_TYPES
from etl.sources.base import BatchLimits, Source

pytestmark = pytest.mark.integration

RECORDS = 97
BATCH = 7
LIMITS = BatchLimits(records=BATCH)
IDS = list(range(1, RECORDS + 1))
STORED = random.Random(23).sample(IDS, RECORDS)
"""The order records are put into every source: not their key order."""
TABLE = "things"


@dataclass(frozen=True)
class SourceEngine:
    """One source engine holding the records `IDS` (put in the order `STORED`) in table `TABLE`."""

    kind: str
    """The job file's `type:` (a key of `SOURCE_TYPES`)."""
    source: Source
    """Opened with `LIMITS`."""
    order: list[int]
    """The order `read` and `sample` give the ids in: key order, or the order the records are stored
    in for a source that is not read by key (a dump file)."""
    remove: Callable[[list[int]], None] | None
    """Delete these ids at the source (for `missing_keys`); None where the records cannot change."""


def record_id(record: dict) -> int:
    value = record.get("_id", record.get("id"))
    return int(value) if isinstance(value, Decimal) else value


def name_of(n: int) -> str:
    return f"name {n}"


def mongo_engine(request, tmp_path):
    from etl.sources import mongo
    from tests.conftest import MONGO_URI

    db = request.getfixturevalue("mongo_db")
    db[TABLE].insert_many([{"_id": n, "name": name_of(n)} for n in STORED])
    config = mongo.Config(type="mongo", uri=MONGO_URI, database=db.name,
                          tables={TABLE: {"mapping": "m.yaml"}})

    def remove(ids):
        db[TABLE].delete_many({"_id": {"$in": ids}})

    return SourceEngine("mongo", mongo.open_source("src", config, LIMITS), IDS, remove)


def mongodump_engine(request, tmp_path):
    from etl.sources import mongodump
    from tests.integration.dump_jobs import write_dump

    folder = write_dump(tmp_path / "dump", "db", TABLE, [{"_id": n, "name": name_of(n)} for n in STORED])
    config = mongodump.Config(type="mongodump", path=str(folder), database="db",
                              tables={TABLE: {"mapping": "m.yaml"}})
    return SourceEngine("mongodump", mongodump.open_source("src", config, LIMITS), STORED, None)


def relational_table(dsn: str) -> Callable[[list[int]], None]:
    """`TABLE` in PostgreSQL with the records; returns how to delete some of them."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {TABLE} (id int4 PRIMARY KEY, name varchar(20))")
        with connection.cursor() as cursor:
            cursor.executemany(f"INSERT INTO {TABLE} VALUES (%s, %s)", [(n, name_of(n)) for n in STORED])

    def remove(ids):
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f"DELETE FROM {TABLE} WHERE id = ANY(%s)", (ids,))

    return remove


def postgres_engine(request, tmp_path):
    from etl.sources import postgres

    dsn = request.getfixturevalue("pg_database")
    remove = relational_table(dsn)
    config = postgres.Config(type="postgres", dsn=dsn, tables={TABLE: {"mapping": "m.yaml"}}, page_rows=10)
    return SourceEngine("postgres", postgres.open_source("src", config, LIMITS), IDS, remove)


def transpiled_engine(kind: str, dialect: str):
    def engine(request, tmp_path):
        from tests.integration.test_dialect_sql import SOURCES

        dsn = request.getfixturevalue("pg_database")
        remove = relational_table(dsn)
        if dialect == "oracle":  # Oracle's one-row table, which its VALUES lists select from
            with psycopg.connect(dsn, autocommit=True) as connection:
                connection.execute("CREATE VIEW dual AS SELECT 'X'::varchar AS dummy")
        source = SOURCES[dialect](dsn, [], {TABLE: {"mapping": "m.yaml"}}, page_rows=10, limits=LIMITS)
        return SourceEngine(kind, source, IDS, remove)

    return engine


ENGINES = {
    "mongo": mongo_engine,
    "mongodump": mongodump_engine,
    "postgres": postgres_engine,
    "oracle": transpiled_engine("oracle", "oracle"),
    "mssql": transpiled_engine("mssql", "tsql"),
}


def test_every_registered_source_runs_the_contract():
    assert sorted(ENGINES) == sorted(SOURCE_TYPES)


@pytest.fixture(params=sorted(ENGINES))
def engine(request, tmp_path):
    made = ENGINES[request.param](request, tmp_path)
    yield made
    made.source.close()


def read_ids(source: Source, partition: Partition, **options) -> list[int]:
    return [record_id(record) for batch in source.read(partition, **options) for record in batch.records]


@pytest.mark.parametrize("partitions", [1, 2, 3, 5, 8])
def test_the_plan_covers_every_record_exactly_once(engine, partitions):
    plan = engine.source.plan(TABLE, partitions)
    assert 1 <= len(plan) <= partitions
    shipped = [Partition.from_json(partition.to_json()) for partition in plan]  # as a worker gets it
    seen = [n for partition in shipped for n in read_ids(engine.source, partition)]
    assert sorted(seen) == IDS


def test_one_partition_reads_in_the_sources_order_in_bounded_batches(engine):
    """A batch ends at the limit or sooner (a relational source also ends one where a page ends)."""
    (partition,) = engine.source.plan(TABLE, 1)
    batches = list(engine.source.read(partition))
    assert all(0 < len(batch.records) <= BATCH for batch in batches)
    assert [record_id(r) for batch in batches for r in batch.records] == engine.order
    assert all(batch.rejects == [] and batch.extracted == len(batch.records) for batch in batches)


@pytest.mark.parametrize("partitions", [1, 3])
def test_a_read_resumed_after_any_batch_loses_and_repeats_nothing(engine, partitions):
    for partition in engine.source.plan(TABLE, partitions):
        batches = list(engine.source.read(partition))
        assert all(len(batch.records) <= BATCH for batch in batches)
        for cut, batch in enumerate(batches, start=1):
            shipped = json.loads(json.dumps(batch.resume_after))  # positions are stored as JSON
            rest = read_ids(engine.source, partition, resume_after=shipped)
            assert rest == [record_id(r) for later in batches[cut:] for r in later.records], cut


def test_count_is_the_number_of_records_where_the_source_can_count(engine):
    count = engine.source.count(TABLE)
    if engine.kind == "mongodump":
        assert count is None  # a dump file tells how many documents it holds only by being read
    else:
        assert count == RECORDS


def test_key_text_names_the_key_only_and_is_stable(engine):
    (partition,) = engine.source.plan(TABLE, 1)
    first = [record for batch in engine.source.read(partition) for record in batch.records]
    again = [record for batch in engine.source.read(partition) for record in batch.records]
    texts = [engine.source.key_text(TABLE, record) for record in first]
    assert texts == [engine.source.key_text(TABLE, record) for record in again]
    assert len(set(texts)) == RECORDS
    assert not any(name_of(record_id(record)) in text for record, text in zip(first, texts, strict=True))
    assert all(str(record_id(record)) in text for record, text in zip(first, texts, strict=True))


def test_sample_gives_the_first_records_in_the_sources_order(engine):
    sample = engine.source.sample(TABLE, 5)
    assert [record_id(record) for record in sample] == engine.order[:5]
    assert [record["name"] for record in sample] == [name_of(n) for n in engine.order[:5]]


def change_source(engine: SourceEngine, method: str):
    if not hasattr(engine.source, method):
        pytest.skip(f"the {engine.kind} source has no {method} (its changes are found by reading again)")
    return engine.source


def test_key_of_is_json_equal_for_equal_keys_and_distinct_otherwise(engine):
    source = change_source(engine, "key_of")
    (partition,) = source.plan(TABLE, 1)
    first = [source.key_of(TABLE, r) for batch in source.read(partition) for r in batch.records]
    again = [source.key_of(TABLE, r) for batch in source.read(partition) for r in batch.records]
    assert first == again == json.loads(json.dumps(first))
    assert len({json.dumps(key) for key in first}) == RECORDS


def test_missing_keys_are_exactly_those_deleted_at_the_source(engine):
    source = change_source(engine, "missing_keys")
    (partition,) = source.plan(TABLE, 1)
    keys = {record_id(r): source.key_of(TABLE, r) for batch in source.read(partition) for r in batch.records}
    assert source.missing_keys(TABLE, list(keys.values())) == []
    gone = STORED[::9]
    engine.remove(gone)
    asked = [keys[n] for n in IDS]
    assert source.missing_keys(TABLE, asked) == [keys[n] for n in IDS if n in gone]
    assert source.missing_keys(TABLE, []) == []
