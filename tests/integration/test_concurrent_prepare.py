"""Shards and workers preparing the same targets at the same moment, on the real servers.

The race is made certain, not likely. PostgreSQL: a session of the test creates the schema (or the
table) and keeps its transaction open; every prepare is released by a barrier and runs into that
uncommitted object, and only when all of them wait on a lock does the session roll back. Without
serialisation they all go on to create it, and all but one fail with UniqueViolation.
DynamoDB: every sink's CreateTable is held by a barrier until all of them have looked for the table
and found none, so all of them send CreateTable and all but one get ResourceInUseException.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import psycopg
import pytest

from etl.errors import EtlError
from etl.records import Column, TableSpec
from etl.sinks import dynamodb, postgres
from tests.conftest import DYNAMODB_ENDPOINT, dynamodb_local_client, unique_name

pytestmark = pytest.mark.integration
SHARDS = 6
SCHEMA = "shard_race"
PATIENTS = (Column("patient_id", "int"), Column("name", "string"), Column("born", "date"),
            Column("weight", "decimal(6,2)"))


def patients(table="patients"):
    return TableSpec("pg", table, ("patient_id",), PATIENTS)


def waiting_on_locks(admin, application):
    return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                         " AND wait_event_type = 'Lock'", (application,)).fetchone()[0]


def all_waiting(admin, application: str, futures: list) -> None:
    """Return once every prepare waits on the test's lock: the state is read each time the prepares
    have had a moment to move (a wait on their futures, which ends at once if one of them ends, as
    none may while the lock is held); nothing depends on how long that moment is."""
    rounds = 0
    while waiting_on_locks(admin, application) < len(futures):
        done, _ = wait(futures, timeout=0.05, return_when=FIRST_COMPLETED)
        assert not done, f"a prepare ended while the lock was held: {[f.exception() for f in done]}"
        rounds += 1
        assert rounds < 1200, "the prepares never all waited on the lock"  # a guard against a hang
    assert waiting_on_locks(admin, application) == len(futures)


@pytest.mark.parametrize("held, tables", [
    ("schema", ["patients"] * SHARDS),
    ("schema", [f"patients_{n}" for n in range(SHARDS)]),
    ("table", ["patients"] * SHARDS),
])
def test_postgres_shards_preparing_at_once_all_succeed(pg_database, held, tables):
    application = unique_name("etl_prepare_race")
    config = postgres.Config(type="postgres", dsn=f"{pg_database} application_name={application}",
                             schema=SCHEMA, create="if_missing")
    sinks = [postgres.open_sink("pg", config) for _ in tables]
    barrier = threading.Barrier(len(tables), timeout=60)

    def prepare(sink, table):
        barrier.wait()
        sink.prepare([patients(table)])

    with psycopg.connect(pg_database, autocommit=True) as admin, psycopg.connect(pg_database) as other:
        if held == "table":
            admin.execute(f"CREATE SCHEMA {SCHEMA}")
            other.execute(f"CREATE TABLE {SCHEMA}.patients (patient_id int)")
        else:
            other.execute(f"CREATE SCHEMA {SCHEMA}")
        with ThreadPoolExecutor(len(tables)) as pool:
            futures = [pool.submit(prepare, sink, table) for sink, table in zip(sinks, tables, strict=True)]
            all_waiting(admin, application, futures)
            other.rollback()
            failures = [repr(future.exception()) for future in futures if future.exception() is not None]
        for sink in sinks:
            sink.close()
        assert failures == []

        for table in set(tables):
            columns = admin.execute(
                "SELECT column_name, udt_name, is_nullable FROM information_schema.columns"
                " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position", (SCHEMA, table),
            ).fetchall()
            assert columns == [("patient_id", "int8", "NO"), ("name", "text", "YES"), ("born", "date", "YES"),
                               ("weight", "numeric", "YES")]
        schemas = admin.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (SCHEMA,))
        assert schemas.fetchone()[0] == 1
        created = admin.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY 1", (SCHEMA,),
        ).fetchall()
        assert created == [(table,) for table in sorted(set(tables))]


def dynamo_spec(table, key_type):
    return TableSpec("dynamo", table, ("pk", "sk"), (Column("pk", key_type), Column("sk", "string"),
                                                     Column("total", "decimal(10,2)")))


def racing_sinks(count):
    """Sinks whose CreateTable calls are all sent together, once every one of them is about to send."""
    barrier = threading.Barrier(count, timeout=60)
    config = dynamodb.Config(type="dynamodb", endpoint_url=DYNAMODB_ENDPOINT, create="if_missing")

    def hold(**_):
        barrier.wait()  # returns None: botocore would take any other value as the call's response

    sinks = []
    for _ in range(count):
        client = dynamodb_local_client()
        client.meta.events.register("before-call.dynamodb.CreateTable", hold)
        sinks.append(dynamodb.DynamoDBSink("dynamo", config, client=client))
    return sinks


def prepare_all(sinks, specs):
    with ThreadPoolExecutor(len(sinks)) as pool:
        futures = [pool.submit(sink.prepare, [spec]) for sink, spec in zip(sinks, specs, strict=True)]
        errors = [future.exception() for future in futures]
    for sink in sinks:
        sink.close()
    return errors


def test_dynamodb_workers_creating_the_same_table_at_once_all_succeed(dynamodb_table_prefix, dynamodb_client):
    table = f"{dynamodb_table_prefix}_patients"
    errors = prepare_all(racing_sinks(SHARDS), [dynamo_spec(table, "string")] * SHARDS)
    assert errors == [None] * SHARDS
    described = dynamodb_client.describe_table(TableName=table)["Table"]
    assert described["TableStatus"] == "ACTIVE"
    assert described["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                      {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert sorted(described["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == [
        {"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}]
    names = [name for page in dynamodb_client.get_paginator("list_tables").paginate()
             for name in page["TableNames"] if name.startswith(dynamodb_table_prefix)]
    assert names == [table]


def test_dynamodb_a_worker_that_lost_the_create_race_still_checks_the_key(dynamodb_table_prefix,
                                                                          dynamodb_client):
    """Half the workers map pk as a string, half as a number: whichever created the table, every
    worker of the other half is refused before any data moves, naming the key attribute."""
    table = f"{dynamodb_table_prefix}_patients"
    kinds = ["string", "int"] * (SHARDS // 2)
    errors = prepare_all(racing_sinks(SHARDS), [dynamo_spec(table, kind) for kind in kinds])
    stored = {a["AttributeName"]: a["AttributeType"]
              for a in dynamodb_client.describe_table(TableName=table)["Table"]["AttributeDefinitions"]}
    winner = {"S": "string", "N": "int"}[stored["pk"]]
    for kind, error in zip(kinds, errors, strict=True):
        if kind == winner:
            assert error is None
        else:
            assert isinstance(error, EtlError)
            needs = "N" if kind == "int" else "S"
            assert str(error).startswith(f"DynamoDB table {table!r}: key attribute 'pk' has type"
                                         f" {stored['pk']}, the mapping's column needs {needs}")
