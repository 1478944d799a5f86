"""Scan responses decoded with `json.loads` instead of botocore's walk of the service model.

botocore parses a Scan response by walking every AttributeValue of every item against the
service model in Python; for the read-back of a validation that walk cost several times the
`json.loads` of the same body and most of the client's CPU (docs/benchmarks.md, validation).
A `before-parse` handler on the sink's client decodes a successful Scan body itself into what
botocore returns for it: the JSON as is, with binary values ("B", and each member of "BS")
base64-decoded to bytes, as botocore's blob parser does. It then leaves botocore an empty JSON
object to parse, so botocore still adds `ResponseMetadata`, and every response with a status of
300 or more (errors, throttling) is left to botocore untouched.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

_EVENT = "before-parse.dynamodb.Scan"
_BINARY_KEY = re.compile(rb'"BS?"\s*:|\\u')
"""A "B" or "BS" key, or an escape that could spell one: only such bodies need the walk."""


def _blobs(node: dict) -> dict:
    """A JSON object with binary values decoded. Only an AttributeValue has a string or list
    under "B" or "BS": a map of attributes holds AttributeValue objects under any name."""
    if len(node) == 1:
        value = node.get("B")
        if type(value) is str:
            node["B"] = base64.b64decode(value)
        elif type(node.get("BS")) is list:
            node["BS"] = [base64.b64decode(member) for member in node["BS"]]
    return node


def parse_scan_body(body: bytes) -> dict:
    """A Scan response body as botocore parses it (without `ResponseMetadata`)."""
    if _BINARY_KEY.search(body):
        return json.loads(body, object_hook=_blobs)
    return json.loads(body)


def _parse(response_dict: dict, customized_response_dict: dict, **_: Any) -> None:
    if response_dict["status_code"] >= 300:
        return
    customized_response_dict.update(parse_scan_body(response_dict["body"]))
    response_dict["body"] = b"{}"


def install_scan(client: Any) -> None:
    """Let `client` decode its Scan responses with `parse_scan_body`; other calls are untouched.
    Installing twice on one client registers the handler once."""
    client.meta.events.register(_EVENT, _parse, unique_id="etl-scan-json")
