"""Throttling and UnprocessedItems, injected by a real proxy in front of DynamoDB Local: nothing is lost."""

import pytest

from etl.records import Column, TableRows, TableSpec
from etl.sinks import dynamodb
from tests.conftest import DYNAMODB_ENDPOINT
from tests.integration.faultproxy import FaultProxy

pytestmark = pytest.mark.integration


def spec(table):
    return TableSpec("dynamo", table, ("pk", "sk"), (Column("pk", "string"), Column("sk", "int"),
                                                     Column("payload", "string")))


def rows(count):
    return [{"pk": f"P#{n % 97}", "sk": n, "payload": f"row {n}"} for n in range(count)]


def sink_through(proxy, **options):
    config = dynamodb.Config(type="dynamodb", endpoint_url=proxy.url, base_delay_ms=1, max_delay_ms=20,
                             **options)
    return dynamodb.open_sink("dynamo", config)


def stored(client, table):
    items = []
    for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items.extend(page["Items"])
    return items


def prepared(table):
    direct = dynamodb.open_sink("dynamo", dynamodb.Config(type="dynamodb", endpoint_url=DYNAMODB_ENDPOINT,
                                                          create="if_missing"))
    direct.prepare([spec(table)])
    direct.close()


def test_every_item_lands_exactly_once_through_throttling_and_partial_writes(
    dynamodb_client, dynamodb_table_prefix
):
    table = f"{dynamodb_table_prefix}_faults"
    prepared(table)
    data = rows(3000)
    with FaultProxy(DYNAMODB_ENDPOINT, seed=20261126, throttle=0.25, partial=0.35) as proxy:
        sink = sink_through(proxy, concurrency=6, max_attempts=30)
        sink.prepare([spec(table)])
        total_loaded = 0
        for start in range(0, len(data), 500):  # six batches, as the engine would send them
            chunk = data[start:start + 500]
            result = sink.write({table: TableRows(chunk, [str(row["sk"]) for row in chunk])})
            assert result.rejects == []
            total_loaded += result.loaded[table]
        sink.close()
    assert total_loaded == 3000
    # the faults really happened, many times
    assert proxy.counts.throttled > 20 and proxy.counts.partial > 20 and proxy.counts.withheld_items > 500
    items = stored(dynamodb_client, table)
    assert len(items) == 3000
    assert sorted(int(item["sk"]["N"]) for item in items) == list(range(3000))
    assert all(item["payload"]["S"] == f"row {item['sk']['N']}" for item in items)


def test_when_attempts_run_out_the_rest_are_rejected_and_counted(dynamodb_client, dynamodb_table_prefix):
    table = f"{dynamodb_table_prefix}_exhaust"
    prepared(table)
    data = rows(400)
    with FaultProxy(DYNAMODB_ENDPOINT, seed=7, partial=1.0, keep_fraction=0.5) as proxy:
        sink = sink_through(proxy, concurrency=4, max_attempts=3)
        sink.prepare([spec(table)])
        result = sink.write({table: TableRows(data, [f"sk={row['sk']}" for row in data])})
        sink.close()
    loaded = result.loaded[table]
    assert loaded + len(result.rejects) == 400
    assert len(result.rejects) > 0 and loaded > 0
    assert {reject.reason for reject in result.rejects} == {
        "not written after 3 attempts: returned as UnprocessedItems on every attempt"}
    assert all(reject.stage == "load" and reject.target == f"dynamo.{table}" for reject in result.rejects)
    items = stored(dynamodb_client, table)
    assert len(items) == loaded  # what was counted as loaded is exactly what is there
    present = {int(item["sk"]["N"]) for item in items}
    assert not present & {int(reject.source_key[3:]) for reject in result.rejects}
    assert proxy.counts.forwarded_items == loaded  # DynamoDB Local wrote every item it was sent


def test_throttled_on_every_attempt_rejects_everything_and_writes_nothing(
    dynamodb_client, dynamodb_table_prefix
):
    table = f"{dynamodb_table_prefix}_throttle"
    prepared(table)
    data = rows(60)
    with FaultProxy(DYNAMODB_ENDPOINT, seed=1, throttle=1.0) as proxy:
        sink = sink_through(proxy, max_attempts=4)
        sink.prepare([spec(table)])
        result = sink.write({table: TableRows(data, [str(row["sk"]) for row in data])})
        sink.close()
    assert result.loaded == {table: 0}
    assert len(result.rejects) == 60
    assert {reject.reason for reject in result.rejects} == {
        "not written after 4 attempts: ProvisionedThroughputExceededException on every attempt"}
    assert proxy.counts.throttled == 3 * 4  # three chunks (25 + 25 + 10), four attempts each
    assert stored(dynamodb_client, table) == []
