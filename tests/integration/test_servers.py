"""Each local server is reachable and is what it claims to be."""

from __future__ import annotations

import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import MONGO_URI, pg_dsn, unique_name

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_postgres_is_15_with_the_project_databases():
    import psycopg

    with psycopg.connect(pg_dsn("postgres")) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()[0]
        databases = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert version.startswith("15")
    assert {"etl_demo", "etl_test"} <= databases


def test_services_script_reports_all_three_up_and_up_is_idempotent():
    subprocess.run([ROOT / "scripts" / "services.sh", "up"], check=True, capture_output=True)
    status = subprocess.run(
        [ROOT / "scripts" / "services.sh", "status"], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    assert [line[16:].split()[0] for line in status] == ["up", "up", "up"]


@pytest.fixture
def dynamodb_table(dynamodb_client, dynamodb_table_prefix):
    name = f"{dynamodb_table_prefix}_probe"
    dynamodb_client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def test_dynamodb_local_rejects_26_item_batches_like_aws(dynamodb_client, dynamodb_table):
    items = [{"PutRequest": {"Item": {"pk": {"S": str(i)}}}} for i in range(26)]
    with pytest.raises(ClientError) as raised:
        dynamodb_client.batch_write_item(RequestItems={dynamodb_table: items})
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    accepted = dynamodb_client.batch_write_item(RequestItems={dynamodb_table: items[:25]})
    assert accepted["UnprocessedItems"] == {}
    assert dynamodb_client.scan(TableName=dynamodb_table, Select="COUNT")["Count"] == 25


def test_dynamodb_local_rejects_39_digit_numbers(dynamodb_client, dynamodb_table):
    too_precise = "1" * 39
    with pytest.raises(ClientError) as raised:
        dynamodb_client.put_item(TableName=dynamodb_table, Item={"pk": {"S": "n"}, "v": {"N": too_precise}})
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    dynamodb_client.put_item(TableName=dynamodb_table, Item={"pk": {"S": "n"}, "v": {"N": "1" * 38}})
    stored = dynamodb_client.get_item(TableName=dynamodb_table, Key={"pk": {"S": "n"}})["Item"]["v"]["N"]
    assert Decimal(stored) == Decimal("1" * 38)


def test_mongodb_server_round_trips_bson_types_and_keeps_null_apart_from_missing(mongo_db):
    import uuid
    from datetime import UTC, datetime

    from bson import Binary, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
    from bson.codec_options import CodecOptions, UuidRepresentation

    options = CodecOptions(tz_aware=True, tzinfo=UTC, uuid_representation=UuidRepresentation.STANDARD)
    collection = mongo_db.get_collection(unique_name("c"), codec_options=options)
    document = {
        "_id": ObjectId(),
        "nothing": None,
        "big": Int64(2**62),
        "money": Decimal128("12345678901234567890.123456789"),
        "when": datetime(1969, 7, 20, 20, 17, 40, 123000, tzinfo=UTC),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "legacy": Binary(b"0123456789abcdef", 3),
        "pattern": Regex("^a.*z$", "i"),
        "ts": Timestamp(1700000000, 7),
        "low": MinKey(),
        "high": MaxKey(),
        "nested": {"list": [1, 2.5, "three"]},
    }
    collection.insert_one(document)
    stored = collection.find_one({"_id": document["_id"]})
    assert stored == document
    assert "missing" not in stored and stored["nothing"] is None
    assert collection.count_documents({"nothing": None}) == 1
    assert collection.count_documents({"missing": {"$exists": True}}) == 0


def test_mongodb_uri_answers_ping():
    import pymongo

    client = pymongo.MongoClient(MONGO_URI, serverSelectionTimeoutMS=5000)
    try:
        assert client.admin.command("ping")["ok"] == 1.0
    finally:
        client.close()
