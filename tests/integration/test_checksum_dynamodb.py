"""Validation of a DynamoDB target written by the DynamoDB sink and read back by its parallel Scan:
zero differences when equal, and exactly the key touched by hand when one item is changed,
deleted or added with raw boto3 calls."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from etl.checksum import FieldDifference, validate_table
from etl.records import Column, TableRows, TableSpec
from etl.sinks import dynamodb
from tests.conftest import DYNAMODB_ENDPOINT

pytestmark = pytest.mark.integration


def spec(table: str) -> TableSpec:
    return TableSpec(
        "dynamo",
        table,
        ("pk", "sk"),
        (
            Column("pk", "string"),
            Column("sk", "string"),
            Column("amount", "decimal(10,2)"),
            Column("count", "int"),
            Column("seen_at", "timestamptz(6)"),
            Column("ratio", "float"),
            Column("address", "json"),
            Column("tags", "set(string)"),
            Column("name_hash", "string", pii="hmac"),
        ),
    )


def source_rows() -> list[dict]:
    return [
        {
            "pk": f"PATIENT#{i // 4:04d}",
            "sk": f"VISIT#{i % 4}",
            "amount": 1 if i % 3 == 0 else (1.0 if i % 3 == 1 else Decimal("1.00")),  # DynamoDB: one number
            "count": i,
            "seen_at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i, microseconds=i),
            "ratio": i / 7,
            "address": {"city": "Oslo", "zip": i, "unit": None},
            "tags": {"a", f"t{i % 5}"},
            "name_hash": f"hm{i:06x}",
        }
        for i in range(1200)
    ]


@pytest.fixture
def loaded(dynamodb_table_prefix, dynamodb_client):
    table = f"{dynamodb_table_prefix}_visits"
    sink = dynamodb.open_sink(
        "dynamo", dynamodb.Config(type="dynamodb", endpoint_url=DYNAMODB_ENDPOINT, create="if_missing")
    )
    sink.prepare([spec(table)])
    rows = source_rows()
    result = sink.write({table: TableRows(rows, [f"{r['pk']}/{r['sk']}" for r in rows])})
    assert result.loaded == {table: 1200} and result.rejects == []
    yield table, sink, rows
    sink.close()


def validate(table: str, sink, rows: list[dict]):
    return validate_table(
        spec(table),
        lambda: rows,
        lambda: sink.read_back(spec(table), segments=3, consistent=True),
        buckets=64,
    )


def test_equal_target_has_zero_differences(loaded) -> None:
    table, sink, rows = loaded
    result = validate(table, sink, rows)
    assert result.ok and (result.rows_source, result.rows_target, result.mismatched_buckets) == (
        1200,
        1200,
        [],
    )


def test_changes_made_by_hand_are_found_by_key(loaded, dynamodb_client) -> None:
    table, sink, rows = loaded
    dynamodb_client.update_item(
        TableName=table,
        Key={"pk": {"S": "PATIENT#0042"}, "sk": {"S": "VISIT#1"}},
        UpdateExpression="SET #c = :v",
        ExpressionAttributeNames={"#c": "count"},
        ExpressionAttributeValues={":v": {"N": "7"}},
    )
    dynamodb_client.delete_item(TableName=table, Key={"pk": {"S": "PATIENT#0100"}, "sk": {"S": "VISIT#3"}})
    dynamodb_client.put_item(
        TableName=table, Item={"pk": {"S": "PATIENT#9999"}, "sk": {"S": "VISIT#0"}, "count": {"N": "1"}}
    )
    result = validate(table, sink, rows)
    assert (result.missing, result.extra, result.changed, result.rows_target) == (1, 1, 1, 1200)
    found = {(d.kind, d.key["pk"], d.key["sk"]): d.fields for d in result.differences}
    assert found == {
        ("changed", "PATIENT#0042", "VISIT#1"): (FieldDifference("count", 169, Decimal("7")),),
        ("missing", "PATIENT#0100", "VISIT#3"): (),
        ("extra", "PATIENT#9999", "VISIT#0"): (),
    }
