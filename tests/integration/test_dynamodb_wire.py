"""Pre-built BatchWriteItem bodies: byte for byte what botocore sends for the same items, every type."""

import datetime as dt
from decimal import Decimal

import botocore.config
import pytest

from etl.coltypes import parse_type
from etl.sinks.dynamodb_values import decode_item, encode_item
from etl.sinks.dynamodb_wire import batch_write, install, json_item
from tests.conftest import dynamodb_local_client

pytestmark = pytest.mark.integration

COLUMNS = {"pk": "string", "sk": "int", "when": "timestamptz(6)", "ratio": "float", "tags": "set(string)",
           "numbers": "set(int)", "blobs": "set(bytes)", "photo": "bytes", "lines": "list", "doc": "json"}


def rows():
    return [
        {"pk": "CUSTOMER#1", "sk": 1, "text": "plain",
         "when": dt.datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC), "amount": Decimal("-12.30"),
         "big": 10**37, "ratio": 1 / 3, "yes": True, "no": False, "none": None,
         "tags": {"a", "b"}, "numbers": {1, 2, 30}, "blobs": {b"\x00\x01", b"\xff"}, "photo": b"\x00\xfe\x7f",
         "lines": [{"unit_price": Decimal("0.99"), "quantity": 1}, "x", None, [True]],
         "doc": {"city": "Oslo", "nested": {"deep": [1, 2.5]}, "empty": {}}, "empty_list": []},
        {"pk": "CUSTOMER#2", "sk": 2, "text": "é \" \\ \n \u2028 😀 \x00", "photo": b"", "tags": set()},
    ]


def test_prebuilt_body_equals_botocores_and_the_items_arrive(dynamodb_client, dynamodb_table_prefix):
    table = f"{dynamodb_table_prefix}_wire"
    dynamodb_client.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "N"}])
    dynamodb_client.get_waiter("table_exists").wait(TableName=table)
    client = dynamodb_local_client(config=botocore.config.Config(parameter_validation=False))
    install(client)
    install(client)  # a second sink on the same client: still one body, still sent once
    sent = []
    client.meta.events.register("before-send.dynamodb.BatchWriteItem",
                                lambda request, **_: sent.append(request.body))
    columns = {name: parse_type(kind) for name, kind in COLUMNS.items()}
    items = [encode_item(row, columns, ("pk", "sk")) for row in rows()]

    plain = client.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": item}} for item in items]})
    built = batch_write(client, table, [json_item(item) for item in items])

    assert len(sent) == 2
    assert sent[1] == sent[0]
    assert plain["UnprocessedItems"] == built["UnprocessedItems"] == {}
    for item in items:
        key = {"pk": item["pk"], "sk": item["sk"]}
        stored = dynamodb_client.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
        assert decode_item(stored, {}) == decode_item(item, {})


def test_only_encoded_items_become_json():
    assert json_item({"pk": {"S": "a"}, "b": {"BS": [b"\x00", b"\xff"]}}) == (
        '{"pk": {"S": "a"}, "b": {"BS": ["AA==", "/w=="]}}')
    with pytest.raises(TypeError, match="a datetime is not part of an encoded DynamoDB item"):
        json_item({"pk": {"S": dt.datetime(2020, 1, 1)}})
