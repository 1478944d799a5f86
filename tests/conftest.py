"""Endpoints of the real local servers (started by scripts/services.sh) and per-test scratch space.

Endpoints come from the same environment variables the services script reads. Each fixture
gives a test its own database / table prefix so tests never see each other's data.
"""

from __future__ import annotations

import os
import socket
import uuid

import pytest

PG_HOST = os.environ.get("ETL_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("ETL_PG_PORT", "5432"))
PG_USER = os.environ.get("ETL_PG_USER", "postgres")
DYNAMODB_PORT = int(os.environ.get("ETL_DYNAMODB_PORT", "8001"))
MONGO_PORT = int(os.environ.get("ETL_MONGO_PORT", "27017"))

DYNAMODB_ENDPOINT = f"http://127.0.0.1:{DYNAMODB_PORT}"
MONGO_URI = f"mongodb://127.0.0.1:{MONGO_PORT}/?directConnection=true"


def pg_dsn(database: str) -> str:
    return f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname={database}"


def free_port() -> int:
    """A TCP port nothing listens on now (for a server a test starts itself)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def pg_database():
    """DSN of a fresh, empty PostgreSQL database, dropped after the test."""
    import psycopg

    name = unique_name("etl_t")
    with psycopg.connect(pg_dsn("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_dsn(name)
    finally:
        with psycopg.connect(pg_dsn("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def dynamodb_local_client(**options):
    """A new boto3 DynamoDB client for DynamoDB Local (dummy credentials: Local accepts any); new,
    so handlers a test installs on it reach no other client."""
    import boto3

    return boto3.client(
        "dynamodb",
        endpoint_url=DYNAMODB_ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - DynamoDB Local ignores credentials
        **options,
    )


@pytest.fixture
def dynamodb_client():
    return dynamodb_local_client()


@pytest.fixture
def dynamodb_table_prefix(dynamodb_client):
    """A unique table-name prefix; every table starting with it is deleted after the test."""
    prefix = unique_name("t")
    yield prefix
    for page in dynamodb_client.get_paginator("list_tables").paginate():
        for table in page["TableNames"]:
            if table.startswith(prefix):
                dynamodb_client.delete_table(TableName=table)


@pytest.fixture
def mongo_db():
    """A pymongo Database with a unique name on the local MongoDB server, dropped after the test."""
    import pymongo

    client = pymongo.MongoClient(MONGO_URI, serverSelectionTimeoutMS=5000)
    name = unique_name("etl_t")
    try:
        yield client[name]
    finally:
        client.drop_database(name)
        client.close()
