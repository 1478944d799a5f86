"""BatchWriteItem with a request body the sink builds itself, sent through the ordinary boto3 client.

botocore turns `RequestItems` into JSON by walking every AttributeValue against the service model
in Python, which costs more client CPU per call than signing and sending it. The sink encodes each
item once (`json_item`), keeps that text for the retries of its chunk, and joins the texts of the
items still pending into the body of each call. The client still signs (after the body is in
place), sends, retries nothing (the sink does), parses the response and raises `ClientError`.

Two handlers on the client do it: `before-parameter-build` takes the body out of the call's
parameters (so the serializer only sees `RequestItems` with the same table names and no items),
`before-call` puts it into the serialized request before it is signed. The JSON is what botocore
itself would send for the same items: `json.dumps` with its default separators, binary values as
base64 text (botocore's blob serialization, https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_AttributeValue.html).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from etl.sinks.dynamodb_values import AttributeValue

_BODY = "_etl_body"
"""Private call parameter carrying the pre-built body; taken out before botocore serializes."""
_EVENT = "dynamodb.BatchWriteItem"


def _base64(value: Any) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"a {type(value).__name__} is not part of an encoded DynamoDB item")


_encoder = json.JSONEncoder(default=_base64)


def json_item(item: dict[str, AttributeValue]) -> str:
    """One encoded item (`encode_item`'s output) as BatchWriteItem's JSON carries it."""
    return _encoder.encode(item)


def batch_write(client: Any, table: str, items: Sequence[str]) -> dict:
    """One BatchWriteItem call putting `items` (from `json_item`) into `table`; returns the parsed
    response, or raises what `client.batch_write_item` raises."""
    body = ('{"RequestItems": {' + json.dumps(table) + ": ["
            + ", ".join(['{"PutRequest": {"Item": ' + item + "}}" for item in items]) + "]}}")
    return client.batch_write_item(RequestItems={table: []}, **{_BODY: body.encode("utf-8")})


def install(client: Any) -> None:
    """Let `client` send `batch_write` bodies; other calls, and BatchWriteItem calls without a
    pre-built body, are untouched. Installing twice on one client registers the handlers once."""
    events = client.meta.events
    events.register(f"before-parameter-build.{_EVENT}", _take_body, unique_id="etl-batch-write-take-body")
    events.register(f"before-call.{_EVENT}", _put_body, unique_id="etl-batch-write-put-body")


def _take_body(params: dict, context: dict, **_: Any) -> None:
    body = params.pop(_BODY, None)
    if body is not None:
        context[_BODY] = body


def _put_body(params: dict, context: dict, **_: Any) -> None:
    body = context.pop(_BODY, None)
    if body is not None:
        params["body"] = body
