"""Values inside documents, through a real job into PostgreSQL jsonb and DynamoDB maps, then validated.

Each target stores some nested values in another form (datetimes and UUIDs as text, bytes as a
tagged jsonb object); validation compares the source's rows in the form the target stores them, so
correct data shows no difference and a changed stored value still does. A value a target cannot hold
is rejected before it is sent, with the reason and the path inside the document.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from bson import Binary, Decimal128

from tests.integration.dump_jobs import dump_job

pytestmark = pytest.mark.integration

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NUL = "PostgreSQL text cannot hold the NUL character U+0000"
DOCUMENTS = [
    # case 8: a datetime, a UUID and binary inside a sub-document; a date among the DMS `_doc` fields
    {"_id": 1, "name": "one", "visit_date": EPOCH,
     "doc": {"at": EPOCH, "id": Binary.from_uuid(uuid.UUID(int=1)), "raw": Binary(b"\x00\x01", 0),
             "when": datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)}},
    # case 10: a Decimal128 with a huge exponent inside a document
    {"_id": 2, "name": "two", "doc": {"n": Decimal128("1E+6144")}},
    # case 11: binary (and empty binary) inside jsonb; NUL in a nested string, in a list, in a text column
    {"_id": 3, "name": "three", "doc": {"b": Binary(b"\x00\x01", 0), "e": Binary(b"", 0)}},
    {"_id": 4, "name": "four", "doc": {"d": "a\x00b"}},
    {"_id": 5, "name": "five", "doc": {"items": [1, 2, {"x": "\x00"}]}},
    {"_id": 6, "name": "nul\x00name", "doc": {}},
]


@pytest.fixture
def job(tmp_path, pg_database, dynamodb_table_prefix):
    return dump_job(tmp_path, DOCUMENTS, pg_dsn=pg_database, dynamo_prefix=dynamodb_table_prefix,
                    name="nested")


def test_nested_values_load_as_documented_and_validate_equal(job, dynamodb_client):
    report = job.run()
    (table,) = report.tables
    # 1 and 3 reach both targets; 2 is refused by DynamoDB, 4, 5 and 6 by PostgreSQL
    assert (table.extracted, table.loaded, table.rejected, table.filtered) == (6, 2, 4, 0)
    rejects = sorted((d["source_key"], d["target"], d["stage"], d["field_path"], d["value_type"], d["reason"])
                     for d in job.dead_letters())
    assert rejects == [
        ("_id=2", f"dynamo.{job.dynamo_table}", "load", "doc.n", "Decimal",
         "number magnitude 1E6144 is outside DynamoDB's range 1E-130 .. 9.99E+125"),
        ("_id=4", f"pg.{job.pg_table}", "load", "doc.d", "str", f"column 'doc' at doc.d: {NUL}"),
        ("_id=5", f"pg.{job.pg_table}", "load", "doc.items[2].x", "str",
         f"column 'doc' at doc.items[2].x: {NUL}"),
        ("_id=6", f"pg.{job.pg_table}", "load", "name", "str", f"column 'name': {NUL}"),
    ]

    # what PostgreSQL holds: text for datetimes and UUIDs, tagged binary, every digit of 1E+6144
    assert job.pg_text("doc", 1) == (
        '{"at": "1970-01-01T00:00:00+00:00", "id": "00000000-0000-0000-0000-000000000001", '
        '"raw": {"$binary": {"base64": "AAE=", "subType": "00"}}, '
        '"when": "2024-05-06T07:08:09.123000+00:00"}')
    assert job.pg_text("_doc", 1) == '{"visit_date": "1970-01-01T00:00:00+00:00"}'
    assert job.pg_text("doc", 2) == '{"n": 1' + "0" * 6144 + "}"
    assert job.pg_text("doc", 3) == ('{"b": {"$binary": {"base64": "AAE=", "subType": "00"}}, '
                                     '"e": {"$binary": {"base64": "", "subType": "00"}}}')
    assert [job.pg_text("doc", key) for key in (4, 5, 6)] == [None, None, None]

    # what DynamoDB holds: ISO text with microseconds, the UUID's text, binary as B (empty included)
    item = dynamodb_client.get_item(TableName=job.dynamo_table, Key={"pk": {"N": "1"}},
                                    ConsistentRead=True)["Item"]
    assert item["doc"] == {"M": {
        "at": {"S": "1970-01-01T00:00:00.000000+00:00"}, "id": {"S": "00000000-0000-0000-0000-000000000001"},
        "raw": {"B": b"\x00\x01"}, "when": {"S": "2024-05-06T07:08:09.123000+00:00"}}}
    assert item["_doc"] == {"M": {"visit_date": {"S": "1970-01-01T00:00:00.000000+00:00"}}}
    item = dynamodb_client.get_item(TableName=job.dynamo_table, Key={"pk": {"N": "3"}},
                                    ConsistentRead=True)["Item"]
    assert item["doc"] == {"M": {"b": {"B": b"\x00\x01"}, "e": {"B": b""}}}
    item = dynamodb_client.get_item(TableName=job.dynamo_table, Key={"pk": {"N": "5"}},
                                    ConsistentRead=True)["Item"]
    assert item["doc"]["M"]["items"]["L"][2] == {"M": {"x": {"S": "\x00"}}}

    # correct data: no difference; the rows each target refused are rejects (the dead letters say
    # why), left out of both sides, not missing rows
    result = {(t.target, t.table): t for t in job.validate().tables}
    pg, dynamo = result[("pg", job.pg_table)], result[("dynamo", job.dynamo_table)]
    assert (pg.rows_source, pg.rows_target, pg.missing, pg.extra, pg.changed, pg.rejected) == (
        3, 3, 0, 0, 0, 3)
    assert (dynamo.rows_source, dynamo.rows_target, dynamo.missing, dynamo.extra, dynamo.changed,
            dynamo.rejected) == (5, 5, 0, 0, 0, 1)
    assert pg.differences == [] and dynamo.differences == []


def test_a_changed_nested_value_is_still_a_difference(job, dynamodb_client):
    job.run()
    with psycopg.connect(job.pg_dsn) as connection:
        connection.execute(f"""UPDATE "{job.pg_table}" SET doc = jsonb_set(doc, '{{at}}',
                               '"1970-01-01T00:00:00.000001+00:00"') WHERE id = 1""")  # noqa: S608
    dynamodb_client.update_item(TableName=job.dynamo_table, Key={"pk": {"N": "3"}},
                                UpdateExpression="SET doc.e = :v",
                                ExpressionAttributeValues={":v": {"S": ""}})
    result = {(t.target, t.table): t for t in job.validate().tables}
    pg, dynamo = result[("pg", job.pg_table)], result[("dynamo", job.dynamo_table)]
    changed = [(d.key["id"], [f.field for f in d.fields]) for d in pg.differences if d.kind == "changed"]
    assert (pg.changed, changed) == (1, [(1, ["doc"])])
    changed = [(d.key["pk"], [f.field for f in d.fields]) for d in dynamo.differences if d.kind == "changed"]
    assert (dynamo.changed, changed) == (1, [(3, ["doc"])])
