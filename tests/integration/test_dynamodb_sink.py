"""The DynamoDB sink against DynamoDB Local: exact round trips, rejects with reasons, tables from specs."""

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from etl.errors import EtlError
from etl.records import Column, TableRows, TableSpec, WriteCondition
from etl.sinks import dynamodb
from tests.conftest import DYNAMODB_ENDPOINT

pytestmark = pytest.mark.integration


def spec(table):
    return TableSpec("dynamo", table, ("pk", "sk"), (
        Column("pk", "string"), Column("sk", "string"), Column("invoice_id", "int"),
        Column("invoice_date", "timestamptz(6)"), Column("total", "decimal(10,2)"), Column("lines", "list"),
        Column("address", "json"), Column("tags", "set(string)"), Column("photo", "bytes"),
        Column("ratio", "float"),
    ))


def invoice(customer, n, **changes):
    row = {
        "pk": f"CUSTOMER#{customer}", "sk": f"INVOICE#2009-01-{n % 28 + 1:02d}#{n}", "invoice_id": n,
        "invoice_date": dt.datetime(2009, 1, n % 28 + 1, tzinfo=dt.UTC), "total": Decimal(n) / 100,
        "lines": [{"track_id": n, "unit_price": Decimal("0.99"), "quantity": 1}],
        "address": {"city": "Oslo", "state": None}, "tags": {"a", f"t{n}"}, "photo": bytes([n % 256]),
        "ratio": n / 7,
    }
    row.update(changes)
    return row


def open_sink(endpoint=DYNAMODB_ENDPOINT, **options):
    config = dynamodb.Config(type="dynamodb", endpoint_url=endpoint, create="if_missing", base_delay_ms=1,
                             **options)
    return dynamodb.open_sink("dynamo", config)


def batch(table, rows):
    return {table: TableRows(rows, [f"_id={row.get('invoice_id')}" for row in rows])}


def by_key(rows):
    return {(row["pk"], row["sk"]): row for row in rows}


def test_round_trip_is_exact_and_replay_changes_nothing(dynamodb_table_prefix):
    table = f"{dynamodb_table_prefix}_inv"
    sink = open_sink(concurrency=4)
    sink.prepare([spec(table)])
    rows = [invoice(c, c * 10 + i) for c in range(30) for i in range(10)]  # 300 items, 12 calls + 1 partial
    result = sink.write(batch(table, rows))
    assert result.loaded == {table: 300} and result.rejects == []
    assert sink.write(batch(table, rows)).loaded == {table: 300}  # replay
    back = list(sink.read_back(spec(table), segments=3, consistent=True))
    assert len(back) == 300
    assert by_key(back) == by_key(rows)
    sample = by_key(back)[("CUSTOMER#3", "INVOICE#2009-01-07#34")]
    assert type(sample["total"]) is Decimal and sample["invoice_date"].tzinfo is not None
    assert type(sample["ratio"]) is float and sample["ratio"] == 34 / 7
    sink.close()


def test_items_dynamodb_cannot_hold_are_rejected_with_reasons(dynamodb_table_prefix):
    table = f"{dynamodb_table_prefix}_bad"
    sink = open_sink()
    sink.prepare([spec(table)])
    rows = [invoice(1, n) for n in range(10)]
    rows[2]["total"] = Decimal("NaN")
    rows[4]["address"] = {"blob": "x" * 410_000}
    rows[6]["ratio"] = Decimal("1.234567890123456789012345678901234567891")
    rows[8]["pk"] = 8  # the table's partition key is a string: DynamoDB refuses this item
    result = sink.write(batch(table, rows))
    assert result.loaded == {table: 6}
    reasons = {r.source_key: (r.stage, r.field_path, r.reason) for r in result.rejects}
    assert reasons["_id=2"] == ("load", "total", "NaN or Infinity is not a number DynamoDB can store")
    assert reasons["_id=4"][2].startswith("item is 410") and reasons["_id=4"][2].endswith("(400 KB)")
    assert reasons["_id=6"][1:] == ("ratio", "number has 40 significant digits; DynamoDB holds at most 38"
                                    " (store it as a string or reduce its precision in the mapping)")
    assert reasons["_id=8"][2].startswith("DynamoDB refused the item: ValidationException")
    assert len(result.rejects) == 4
    assert all(reject.record is not None and reject.target == f"dynamo.{table}" for reject in result.rejects)
    assert len(list(sink.read_back(spec(table)))) == 6
    sink.close()


def test_tables_are_created_with_gsis_and_checked(dynamodb_table_prefix, dynamodb_client):
    table = f"{dynamodb_table_prefix}_gsi"
    sink = open_sink(gsis={table: [{"name": "by_invoice", "partition_key": "invoice_id"}]})
    sink.prepare([spec(table)])
    described = dynamodb_client.describe_table(TableName=table)["Table"]
    assert described["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                      {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert {a["AttributeName"]: a["AttributeType"] for a in described["AttributeDefinitions"]} == {
        "pk": "S", "sk": "S", "invoice_id": "N"}
    assert [index["IndexName"] for index in described["GlobalSecondaryIndexes"]] == ["by_invoice"]
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    sink.prepare([spec(table)])  # an existing table with the same key is accepted

    other = TableSpec("dynamo", table, ("pk",), (Column("pk", "string"),))
    with pytest.raises(EtlError, match=rf"table '{table}' exists with key pk \(HASH\), sk \(RANGE\)"):
        open_sink().prepare([other])
    with pytest.raises(EtlError, match="does not exist"):
        never_create = dynamodb.Config(type="dynamodb", endpoint_url=DYNAMODB_ENDPOINT)
        dynamodb.open_sink("dynamo", never_create).prepare([spec(f"{dynamodb_table_prefix}_absent")])
    sink.close()


def test_insert_only_accepts_replays_and_rejects_changes(dynamodb_table_prefix):
    table = f"{dynamodb_table_prefix}_ins"
    sink = open_sink(insert_only=True)
    sink.prepare([spec(table)])
    rows = [invoice(1, n) for n in range(5)]
    assert sink.write(batch(table, rows)).loaded == {table: 5}
    replay = sink.write(batch(table, rows))
    assert replay.loaded == {table: 5} and replay.rejects == []
    changed = sink.write(batch(table, [invoice(1, 3, total=Decimal("7.00"))]))
    assert changed.loaded == {table: 0}
    assert [(r.source_key, r.reason) for r in changed.rejects] == [
        ("_id=3", "an item with this key already exists and differs (insert_only)")]
    kept = by_key(sink.read_back(spec(table)))[("CUSTOMER#1", "INVOICE#2009-01-04#3")]
    assert kept["total"] == Decimal("0.03")
    sink.close()


def test_a_table_condition_accepts_replays_and_rejects_what_it_refuses(dynamodb_table_prefix):
    table = f"{dynamodb_table_prefix}_cond"
    condition = WriteCondition("attribute_not_exists(#t) or #t < :total", (("#t", "total"),), (":total",))
    guarded = dataclasses.replace(spec(table), condition=condition)
    sink = open_sink()
    sink.prepare([guarded])
    rows = [{**invoice(1, n), ":total": Decimal(n) / 100} for n in range(3)]
    assert sink.write(batch(table, rows)).loaded == {table: 3}
    replay = sink.write(batch(table, rows))  # the condition fails, but the items there are these
    assert replay.loaded == {table: 3} and replay.rejects == []
    higher = invoice(1, 1, total=Decimal("9.00"))
    lower = invoice(1, 2, total=Decimal("0.01"))
    result = sink.write(batch(table, [{**higher, ":total": Decimal("9.00")},
                                      {**lower, ":total": Decimal("0.01")}]))
    assert result.loaded == {table: 1}
    assert [(r.source_key, r.reason) for r in result.rejects] == [
        ("_id=2", "the table's condition-expression `attribute_not_exists(#t) or #t < :total` refused the "
                  "write and the item there differs")]
    back = by_key(sink.read_back(guarded, consistent=True))
    assert back[("CUSTOMER#1", "INVOICE#2009-01-02#1")] == higher  # no `:total` attribute was stored
    assert back[("CUSTOMER#1", "INVOICE#2009-01-03#2")]["total"] == Decimal("0.02")
    sink.close()


def test_plain_http_is_refused_for_remote_endpoints():
    with pytest.raises(ValueError, match="must use https"):
        dynamodb.Config(type="dynamodb", endpoint_url="http://dynamodb.eu-west-1.amazonaws.com")
    assert dynamodb.Config(type="dynamodb", endpoint_url="http://localhost:8001").endpoint_url
