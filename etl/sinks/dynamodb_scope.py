"""The items one job owns in a DynamoDB table it shares with other jobs (single-table design).

Two jobs writing one table (patients under `PATIENT#...`, wards under `WARD#...`) each see the
other's items when validation reads the table back: every one would count as extra. A job declares
its share per table — an attribute (usually the partition key) and the prefixes its values begin
with — and validation's read-back keeps only those items (a Scan FilterExpression: DynamoDB still
reads, and bills, the whole table).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Scope(BaseModel):
    """`scopes: {<table>: {attribute: pk, begins_with: ["PATIENT#"]}}` on a `dynamodb` target."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attribute: str = Field(min_length=1)
    """The attribute whose value says whose item it is (a string attribute: the partition key in
    a single-table design)."""
    begins_with: tuple[str, ...] = Field(min_length=1)
    """The job's items are those whose `attribute` begins with one of these (a string is one)."""

    @field_validator("begins_with", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("begins_with")
    @classmethod
    def _not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not prefix for prefix in value):
            raise ValueError("an empty prefix would keep every item: name the job's own prefix")
        return value

    def scan_filter(self) -> dict[str, Any]:
        """Scan parameters keeping only the job's items."""
        prefixes = list(enumerate(self.begins_with))
        return {
            "FilterExpression": " OR ".join(f"begins_with(#scope, :p{i})" for i, _ in prefixes),
            "ExpressionAttributeNames": {"#scope": self.attribute},
            "ExpressionAttributeValues": {f":p{i}": {"S": prefix} for i, prefix in prefixes},
        }

    def describe(self) -> str:
        return f"{self.attribute} begins with " + " or ".join(repr(prefix) for prefix in self.begins_with)
