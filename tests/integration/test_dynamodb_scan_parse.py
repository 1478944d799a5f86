"""Scan responses decoded by `etl.sinks.dynamodb_scan` equal botocore's own parse of the same
table, page by page, for every attribute type (binary values nested in maps, lists and sets, and
attributes named like AttributeValue members); errors still raise botocore's ClientError."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from etl.sinks.dynamodb_scan import install_scan
from tests.conftest import dynamodb_local_client

pytestmark = pytest.mark.integration

ITEMS = [
    {
        "pk": {"S": f"k{i:03d}"},
        "n": {"N": str(i * 1.5)},
        "blob": {"B": bytes([i % 256, 0, 255])},
        "blobs": {"BS": [b"\x00", bytes([i % 256 + 1])] if i % 256 != 255 else [b"\x00"]},
        "strings": {"SS": ["a", f"Bob {i}"]},
        "numbers": {"NS": ["1", str(i + 2)]},
        "map": {"M": {"B": {"B": b"\x01\x02"}, "BS": {"S": "named BS"}, "deep": {"L": [{"B": b"\xff"}]}}},
        "list": {"L": [{"NULL": True}, {"BOOL": False}, {"S": 'quote " and \\u0042'}, {"B": b"x"}]},
        "B": {"S": "an attribute named B"},
        "flag": {"BOOL": i % 2 == 0},
        "nothing": {"NULL": True},
        "text": {"S": "caf\u00e9 \U0001f600 \u2028"},
    }
    for i in range(40)
] + [{"pk": {"S": "plain"}, "s": {"S": "no binary here"}}]


BODIES_LEFT_TO_BOTOCORE: list[bytes] = []
"""The Scan bodies botocore itself parsed on the installed clients: `b"{}"` whenever ours ran."""


def client(installed: bool):
    made = dynamodb_local_client()
    if installed:
        install_scan(made)
        install_scan(made)  # twice: still one handler
        made.meta.events.register_last(
            "before-parse.dynamodb.Scan",
            lambda response_dict, **_: BODIES_LEFT_TO_BOTOCORE.append(response_dict["body"]))
    return made


def pages(scanner, table: str, **extra) -> list[dict]:
    request = {"TableName": table, "Limit": 7, **extra}
    found = []
    while True:
        page = scanner.scan(**request)
        found.append({key: value for key, value in page.items() if key != "ResponseMetadata"})
        assert page["ResponseMetadata"]["HTTPStatusCode"] == 200
        if "LastEvaluatedKey" not in page:
            return found
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_scan_pages_equal_botocores_parse(dynamodb_client, dynamodb_table_prefix) -> None:
    table = f"{dynamodb_table_prefix}_scan"
    dynamodb_client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for item in ITEMS:
        dynamodb_client.put_item(TableName=table, Item=item)
    BODIES_LEFT_TO_BOTOCORE.clear()
    ours = pages(client(True), table, ReturnConsumedCapacity="TOTAL")
    assert BODIES_LEFT_TO_BOTOCORE == [b"{}"] * 6  # every page was decoded by install_scan's handler
    botocore = pages(client(False), table, ReturnConsumedCapacity="TOTAL")
    assert len(ours) == 6  # 41 items, 7 a page
    assert ours == botocore
    scanned = {item["pk"]["S"]: item for page in ours for item in page["Items"]}
    assert len(scanned) == len(ITEMS)
    assert scanned["k005"]["blob"] == {"B": b"\x05\x00\xff"}
    assert scanned["k005"]["map"]["M"]["B"] == {"B": b"\x01\x02"}
    assert scanned["k005"]["list"]["L"][2:] == [{"S": 'quote " and \\u0042'}, {"B": b"x"}]
    assert pages(client(True), table, Segment=1, TotalSegments=3) == pages(
        client(False), table, Segment=1, TotalSegments=3
    )


def test_errors_are_still_botocores(dynamodb_table_prefix) -> None:
    with pytest.raises(ClientError) as raised:
        client(True).scan(TableName=f"{dynamodb_table_prefix}_absent")
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
