"""The items a job owns in a shared DynamoDB table: the Scan filter validation reads back with."""

from __future__ import annotations

import pydantic
import pytest

from etl.sinks.dynamodb_scope import Scope


def test_a_scope_keeps_items_by_prefix():
    scope = Scope(attribute="pk", begins_with="PATIENT#")
    assert scope.scan_filter() == {"FilterExpression": "begins_with(#scope, :p0)",
                                   "ExpressionAttributeNames": {"#scope": "pk"},
                                   "ExpressionAttributeValues": {":p0": {"S": "PATIENT#"}}}
    two = Scope(attribute="pk", begins_with=["PATIENT#", "VISIT#"])
    assert two.scan_filter()["FilterExpression"] == "begins_with(#scope, :p0) OR begins_with(#scope, :p1)"
    assert two.describe() == "pk begins with 'PATIENT#' or 'VISIT#'"


def test_an_empty_prefix_is_refused():
    with pytest.raises(pydantic.ValidationError, match="an empty prefix would keep every item"):
        Scope(attribute="pk", begins_with=[""])
