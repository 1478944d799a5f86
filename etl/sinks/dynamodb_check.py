"""`--check` of a DynamoDB target: each table the job writes, found by DescribeTable (its status,
key schema and approximate item count) or created by the run. Write permission shows only when
writing: IAM is not asked (that needs iam:SimulatePrincipalPolicy, which a run does not)."""

from __future__ import annotations

from collections.abc import Sequence

from etl.records import TableSpec
from etl.sinks.dynamodb import DynamoDBSink


def probe(sink: DynamoDBSink, tables: Sequence[TableSpec]) -> list[tuple[str, bool]]:
    """Lines of what was found, each with whether it lets a run proceed; raises ConnectionFailed
    when the endpoint cannot be reached or refuses the credentials."""
    where = sink.config.endpoint_url or f"AWS {sink.config.region}"
    found: list[tuple[str, bool]] = [(f"DynamoDB at {where}", True)]
    for spec in tables:
        table = sink._describe(spec.table)
        if table is None:
            creates = sink.config.create == "if_missing"
            found.append((f"table {spec.table}: missing; " + (
                "the run creates it (create: if_missing)" if creates
                else "the run cannot create it (create: never)"), creates))
            continue
        keys = ", ".join(f"{k['AttributeName']} ({k['KeyType'].lower()})" for k in table.get("KeySchema", []))
        status = table.get("TableStatus", "UNKNOWN")
        scope = sink.config.scopes.get(spec.table)
        shared = f"; validation reads only the items whose {scope.describe()}" if scope is not None else ""
        found.append((f"table {spec.table}: {status.lower()}, key {keys}, about "
                      f"{table.get('ItemCount', 0):,} items{shared}", status in {"ACTIVE", "UPDATING"}))
    return found
