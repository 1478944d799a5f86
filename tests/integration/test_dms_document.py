"""A whole AWS DMS table-mapping document as the mappings of a PostgreSQL source, run for real into
DynamoDB Local by `python -m etl.run` and validated equal by the engine.

The rules follow the DynamoDB-target examples of the AWS DMS User Guide ("Using object mapping to
migrate data to DynamoDB": the customer table with map-record-to-record, a JSON-string template with
literal braces and exclude-columns; map-record-to-document; a versioned condition-expression),
with selection rules (`%`, exclude) and transformation rules (rename, remove-column,
convert-lowercase, add-prefix, define-primary-key) from "Specifying table selection and
transformations rules". The expected items are what those documented semantics give: every column
not excluded is copied (or put in `_doc`), and NULL source values are left out of the item ("NULL
data from the source are ignored on the target").
"""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.conftest import DYNAMODB_ENDPOINT
from tests.integration.run_helpers import run_cli, saved_report

pytestmark = pytest.mark.integration

SOURCE = """
CREATE SCHEMA test;
CREATE TABLE test.customer (
    "CustomerId" integer PRIMARY KEY, "FirstName" text, "LastName" text, "StoreId" integer,
    "HomeAddress" text, "HomePhone" text, "WorkAddress" text, "WorkPhone" text, "DateOfBirth" date);
INSERT INTO test.customer VALUES
    (1, 'Randy', 'Marsh', 5, '221B Baker Street', '1234567890', '31 Spooner Street, Quahog', '9876543210',
     '1988-02-29'),
    (2, 'Sharon', 'Marsh', 5, '221B Baker Street', '1234567891', NULL, NULL, NULL);
CREATE TABLE test.store_visit (
    "VisitId" integer NOT NULL, "StoreId" integer, "Notes" text, "Amount" numeric(8,2));
INSERT INTO test.store_visit VALUES (10, 5, 'private', 12.50), (11, 5, NULL, NULL);
CREATE TABLE test.note ("NoteId" integer NOT NULL, "Body" text);
INSERT INTO test.note VALUES (7, 'keyless');
CREATE TABLE test.audit_log (id integer PRIMARY KEY, what text);
INSERT INTO test.audit_log VALUES (1, 'not migrated');
"""

CONTACT = (
    '{"Home": {"Address": "${HomeAddress}", "Phone": "${HomePhone}"}, '
    '"Work": {"Address": "${WorkAddress}", "Phone": "${WorkPhone}"}}'
)


def selection(rule_id: str, table: str, action: str = "include") -> dict:
    """A DMS selection rule for schema `test`."""
    return {"rule-type": "selection", "rule-id": rule_id, "rule-name": rule_id,
            "object-locator": {"schema-name": "test", "table-name": table}, "rule-action": action}


def object_mapping(rule_id: str, name: str, action: str, table: str, target: str, parameters: dict) -> dict:
    """A DMS object-mapping rule for table `test.<table>`."""
    return {"rule-type": "object-mapping", "rule-id": rule_id, "rule-name": name, "rule-action": action,
            "object-locator": {"schema-name": "test", "table-name": table}, "target-table-name": target,
            "mapping-parameters": parameters}


def rules(prefix: str) -> dict:
    return {
        "rules": [
            selection("1", "%"),
            selection("2", "audit_%", "exclude"),
            object_mapping(
                "3", "TransformToDDB", "map-record-to-record", "customer", f"{prefix}_customer_t", {
                    "partition-key-name": "CustomerName",
                    "sort-key-name": "StoreId",
                    "exclude-columns": [
                        "FirstName",
                        "LastName",
                        "HomeAddress",
                        "HomePhone",
                        "WorkAddress",
                        "WorkPhone",
                    ],
                    "attribute-mappings": [
                        {
                            "target-attribute-name": "CustomerName",
                            "attribute-type": "scalar",
                            "attribute-sub-type": "string",
                            "value": "${FirstName},${LastName}",
                        },
                        {
                            "target-attribute-name": "StoreId",
                            "attribute-type": "scalar",
                            "attribute-sub-type": "string",
                            "value": "${StoreId}",
                        },
                        {
                            "target-attribute-name": "ContactDetails",
                            "attribute-type": "scalar",
                            "attribute-sub-type": "string",
                            "value": CONTACT,
                        },
                    ],
                },
            ),
            object_mapping(
                "4", "TransformToDoc", "map-record-to-document", "customer", f"{prefix}_customer_docs", {
                    "partition-key-name": "CustomerName",
                    "exclude-columns": ["HomePhone", "WorkPhone"],
                    "attribute-mappings": [
                        {
                            "target-attribute-name": "CustomerName",
                            "attribute-type": "scalar",
                            "attribute-sub-type": "string",
                            "value": "${FirstName},${LastName}",
                        },
                    ],
                },
            ),
            {
                "rule-type": "transformation",
                "rule-id": "5",
                "rule-name": "5",
                "rule-target": "table",
                "object-locator": {"schema-name": "test", "table-name": "store_visit"},
                "rule-action": "rename",
                "value": f"{prefix}_visits",
            },
            {
                "rule-type": "transformation",
                "rule-id": "6",
                "rule-name": "6",
                "rule-target": "column",
                "object-locator": {
                    "schema-name": "test",
                    "table-name": "store_visit",
                    "column-name": "Notes",
                },
                "rule-action": "remove-column",
            },
            {
                "rule-type": "transformation",
                "rule-id": "7",
                "rule-name": "7",
                "rule-target": "column",
                "object-locator": {"schema-name": "test", "table-name": "store_visit", "column-name": "%"},
                "rule-action": "convert-lowercase",
            },
            {
                "rule-type": "transformation",
                "rule-id": "8",
                "rule-name": "8",
                "rule-target": "table",
                "object-locator": {"schema-name": "test", "table-name": "store_visit"},
                "rule-action": "define-primary-key",
                "primary-key-def": {"name": "visit_pk", "columns": ["VisitId"]},
            },
            {
                "rule-type": "transformation",
                "rule-id": "9",
                "rule-name": "9",
                "rule-target": "table",
                "object-locator": {"schema-name": "test", "table-name": "note"},
                "rule-action": "add-prefix",
                "value": f"{prefix}_",
            },
        ]
    }


def job_text(dsn: str, document: str, name: str, max_rejects: int = 0, tables: str = "") -> str:
    return f"""\
version: 1
name: {name}
sources:
  pg:
    type: postgres
    dsn: "{dsn}"
    dms: {{mapping: {document}, target: dynamo}}
{tables}targets:
  dynamo: {{type: dynamodb, endpoint_url: "{DYNAMODB_ENDPOINT}", region: us-east-1, create: if_missing}}
state: {{type: sqlite, path: .etl/state.sqlite}}
dead_letter: {{path: .etl/dead_letter.jsonl}}
validation: {{after_run: true, consistent_reads: true}}
report: {{dir: .etl/reports}}
max_rejects: {max_rejects}
"""


def items(client, table: str, key: str) -> list[dict]:
    """The table's items as DynamoDB holds them, in order of the partition key's text."""
    found = []
    for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        found.extend(page["Items"])
    return sorted(found, key=lambda item: json.dumps(item[key]))


def test_dms_documentation_examples_run_into_dynamodb_and_validate(
    pg_database, dynamodb_client, dynamodb_table_prefix, tmp_path
):
    with psycopg.connect(pg_database, autocommit=True) as connection:
        connection.execute(SOURCE)
    prefix = dynamodb_table_prefix
    (tmp_path / "table-mappings.json").write_text(json.dumps(rules(prefix), indent="\t"))
    job = tmp_path / "job.yaml"
    # test.note has no primary key: its key is given once, in the job file; the document maps it
    keyless = "    tables: {test.note: {mapping: table-mappings.json, key: [NoteId]}}\n"
    job.write_text(job_text(pg_database, "table-mappings.json", f"dms_{prefix}", tables=keyless))

    result = run_cli(job)

    assert result.returncode == 0, result.stdout + result.stderr
    randy_contact = (
        '{"Home": {"Address": "221B Baker Street", "Phone": "1234567890"}, '
        '"Work": {"Address": "31 Spooner Street, Quahog", "Phone": "9876543210"}}'
    )
    assert items(dynamodb_client, f"{prefix}_customer_t", "CustomerName") == [
        {
            "CustomerName": {"S": "Randy,Marsh"},
            "StoreId": {"S": "5"},
            "CustomerId": {"N": "1"},
            "ContactDetails": {"S": randy_contact},
            "DateOfBirth": {"S": "1988-02-29"},
        },
        # Sharon: the JSON-string template holds NULL columns, and DateOfBirth is NULL: both left out
        {"CustomerName": {"S": "Sharon,Marsh"}, "StoreId": {"S": "5"}, "CustomerId": {"N": "2"}},
    ]
    marsh = {"LastName": {"S": "Marsh"}, "StoreId": {"N": "5"}, "HomeAddress": {"S": "221B Baker Street"}}
    randy = {"CustomerId": {"N": "1"}, "FirstName": {"S": "Randy"}, **marsh,
             "WorkAddress": {"S": "31 Spooner Street, Quahog"}, "DateOfBirth": {"S": "1988-02-29"}}
    sharon = {"CustomerId": {"N": "2"}, "FirstName": {"S": "Sharon"}, **marsh}
    assert items(dynamodb_client, f"{prefix}_customer_docs", "CustomerName") == [
        {"CustomerName": {"S": "Randy,Marsh"}, "_doc": {"M": randy}},
        {"CustomerName": {"S": "Sharon,Marsh"}, "_doc": {"M": sharon}},
    ]
    # no object-mapping rule: the table copied whole under its renamed name, keyed by the
    # define-primary-key columns, column names lower-cased, `Notes` removed
    assert items(dynamodb_client, f"{prefix}_visits", "visitid") == [
        {"visitid": {"N": "10"}, "storeid": {"N": "5"}, "amount": {"N": "12.5"}},
        {"visitid": {"N": "11"}, "storeid": {"N": "5"}},
    ]
    keyless_items = [{"NoteId": {"N": "7"}, "Body": {"S": "keyless"}}]
    assert items(dynamodb_client, f"{prefix}_note", "NoteId") == keyless_items
    report = saved_report(result.stdout)
    assert [(t["table"], t["extracted"], t["loaded"], t["rejected"]) for t in report["tables"]] == [
        ("pg.test.note", 1, 1, 0), ("pg.test.customer", 2, 2, 0), ("pg.test.store_visit", 2, 2, 0)]
    again = run_cli(job)  # the same tables, the same columns: the job is already proven
    assert (again.returncode, saved_report(again.stdout)["status"]) == (0, "nothing to do")
    tables = dynamodb_client.list_tables()["TableNames"]
    assert sorted(t for t in tables if t.startswith(prefix)) == [
        f"{prefix}_customer_docs",
        f"{prefix}_customer_t",
        f"{prefix}_note",
        f"{prefix}_visits",
    ]


VERSIONED = """
CREATE SCHEMA test;
CREATE TABLE test.player (id integer PRIMARY KEY, name text, version integer NOT NULL);
INSERT INTO test.player VALUES (1, 'Ann', 1), (2, 'Bob', 1), (3, 'Cy', 1);
"""


def versioned_rules(prefix: str) -> dict:
    """The DMS guide's conditional write: never replace an item holding a newer version."""
    return {
        "rules": [
            selection("1", "player"),
            object_mapping("2", "2", "map-record-to-record", "player", f"{prefix}_players", {
                "partition-key-name": "id",
                "condition-expression": {
                    "expression": "attribute_not_exists(version) or version <= :record_version",
                    "expression-attribute-values": [
                        {"name": ":record_version", "value": {"N": "${version}"}}
                    ],
                },
            }),
        ]
    }


def test_a_write_the_condition_expression_refuses_is_a_counted_reject(
    pg_database, dynamodb_client, dynamodb_table_prefix, tmp_path
):
    with psycopg.connect(pg_database, autocommit=True) as connection:
        connection.execute(VERSIONED)
    prefix = dynamodb_table_prefix
    (tmp_path / "rules.json").write_text(json.dumps(versioned_rules(prefix)))
    first = tmp_path / "first.yaml"
    first.write_text(job_text(pg_database, "rules.json", f"dms_first_{prefix}"))
    assert run_cli(first).returncode == 0
    # the target moves on for Bob (version 9); the source moves on for Ann (version 2)
    dynamodb_client.put_item(
        TableName=f"{prefix}_players", Item={"id": {"N": "2"}, "name": {"S": "Robert"}, "version": {"N": "9"}}
    )
    with psycopg.connect(pg_database, autocommit=True) as connection:
        connection.execute("UPDATE test.player SET name = 'Anne', version = 2 WHERE id = 1")
    second = tmp_path / "second.yaml"
    second.write_text(job_text(pg_database, "rules.json", f"dms_second_{prefix}"))

    result = run_cli(second)

    # Bob's write is refused by the condition: a reject, so the default max_rejects 0 fails the run
    assert result.returncode == 3, result.stdout + result.stderr
    assert items(dynamodb_client, f"{prefix}_players", "id") == [
        {"id": {"N": "1"}, "name": {"S": "Anne"}, "version": {"N": "2"}},
        {"id": {"N": "2"}, "name": {"S": "Robert"}, "version": {"N": "9"}},
        {"id": {"N": "3"}, "name": {"S": "Cy"}, "version": {"N": "1"}},  # the same item again: written
    ]
    (letter,) = [
        json.loads(line) for line in (tmp_path / ".etl" / "dead_letter.jsonl").read_text().splitlines()
    ]
    assert (letter["source_key"], letter["stage"], letter["reason"]) == (
        "id=2",
        "load",
        "the table's condition-expression `attribute_not_exists(version) or version <= "
        ":record_version` refused the write and the item there differs",
    )
    # allowed by max_rejects, the refusal is a reject; the item the condition kept differs from Bob's
    # row, and validation says so
    third = tmp_path / "third.yaml"
    third.write_text(job_text(pg_database, "rules.json", f"dms_third_{prefix}", max_rejects=1))
    allowed = run_cli(third)
    assert allowed.returncode == 1, allowed.stdout + allowed.stderr
    assert "| dynamo." + prefix + "_players | DIFFERENT | 2 | 3 | 0 | 1 | 0 | 0 | 0 | 1 |" in allowed.stdout
