"""The Oracle and SQL Server sources against real servers, when one is available.

Runs when `ETL_TEST_ORACLE_DSN` (`user/password@host:port/service`, the user may create tables)
or `ETL_TEST_MSSQL_DSN` (an ODBC connection string of a login that may create databases) is set,
or when a Docker engine answers (testcontainers: gvenzl/oracle-free, mcr.microsoft.com/mssql/server).
Each loads the Chinook script of its engine, reads every table with 1 and 4 partitions and
compares counts, keys and Invoice totals with Chinook loaded into PostgreSQL.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from etl.sources import mssql, oracle
from etl.sources.base import BatchLimits
from etl.sources.postgres import Config as PostgresConfig
from etl.sources.postgres import open_source as open_postgres

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from load_chinook_postgres import CHINOOK_DIR, load_chinook  # noqa: E402

pytestmark = pytest.mark.integration

CHINOOK_COUNTS = {
    "Album": 347,
    "Artist": 275,
    "Customer": 59,
    "Employee": 8,
    "Genre": 25,
    "Invoice": 412,
    "InvoiceLine": 2240,
    "MediaType": 5,
    "Playlist": 18,
    "PlaylistTrack": 8715,
    "Track": 3503,
}


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no usable Docker engine"
        return False


@pytest.fixture(scope="module")
def oracle_dsn() -> Iterator[str]:
    if dsn := os.environ.get("ETL_TEST_ORACLE_DSN"):
        yield dsn
        return
    if not docker_available():
        pytest.skip(
            "no Oracle server: ETL_TEST_ORACLE_DSN (user/password@host:port/service) is not set"
            " and no Docker engine is available for testcontainers"
        )
    from testcontainers.oracle import OracleDbContainer

    with OracleDbContainer("gvenzl/oracle-free:23-slim-faststart") as container:
        yield f"system/{container.oracle_password}@{container.get_container_host_ip()}:" + (
            f"{container.get_exposed_port(1521)}/FREEPDB1"
        )


@pytest.fixture(scope="module")
def mssql_dsn() -> Iterator[str]:
    if dsn := os.environ.get("ETL_TEST_MSSQL_DSN"):
        yield dsn
        return
    if not docker_available():
        pytest.skip(
            "no SQL Server: ETL_TEST_MSSQL_DSN (an ODBC connection string) is not set"
            " and no Docker engine is available for testcontainers"
        )
    from testcontainers.mssql import SqlServerContainer

    with SqlServerContainer("mcr.microsoft.com/mssql/server:2022-latest") as container:
        yield (
            f"DRIVER={{FreeTDS}};SERVER={container.get_container_host_ip()};"
            f"PORT={container.get_exposed_port(1433)};UID=sa;PWD={{{container.password}}};TDS_Version=7.4"
        )


def oracle_statements() -> Iterator[str]:
    """Chinook_Oracle.sql without its GRANT/CONNECT/exit lines, one statement at a time."""
    text = (CHINOOK_DIR / "Chinook_Oracle.sql").read_text(encoding="utf-8")
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    for statement in text.split(";\n"):
        statement = statement.strip().rstrip(";")
        if statement and not statement.upper().startswith(("GRANT", "CONNECT", "EXIT", "COMMIT")):
            yield statement


def mssql_batches() -> Iterator[str]:
    """Chinook_SqlServer.sql split on its GO lines (GO is a client-side separator)."""
    text = (CHINOOK_DIR / "Chinook_SqlServer.sql").read_text(encoding="utf-8")
    for batch in re.split(r"^\s*GO\s*$", text, flags=re.M):
        if batch.strip():
            yield batch


def postgres_expectations(pg_dsn: str) -> dict[str, set[tuple]]:
    """Keys of every Chinook table in PostgreSQL, by the Oracle/SQL Server table name."""
    pg_names = {name: re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower() for name in CHINOOK_COUNTS}
    source = open_postgres(
        "pg",
        PostgresConfig(type="postgres", dsn=pg_dsn, tables={t: {"mapping": "m"} for t in pg_names.values()}),
        BatchLimits(),
    )
    try:
        return {name: set(source.keys(pg_name)) for name, pg_name in pg_names.items()}
    finally:
        source.close()


def read_everything(source) -> None:
    for table, count in CHINOOK_COUNTS.items():
        key = source.describe(table).key
        for partitions in (1, 4):
            keys = [
                tuple(int(record[name]) for name in key)
                for partition in source.plan(table, partitions)
                for batch in source.read(partition)
                for record in batch.records
            ]
            assert len(keys) == count and len(set(keys)) == count, (table, partitions)
    # Oracle folds unquoted names to upper case (TOTAL); SQL Server keeps Total.
    (total,) = [c.name for c in source.describe("Invoice").columns if c.name.lower() == "total"]
    totals = [r[total] for b in source.read(source.plan("Invoice", 1)[0]) for r in b.records]
    assert sum(Decimal(total) for total in totals) == Decimal("2328.60")


def test_oracle_chinook(oracle_dsn, pg_database):
    import oracledb

    credentials, _, address = oracle_dsn.rpartition("@")
    user, _, password = credentials.partition("/")
    with oracledb.connect(user=user, password=password, dsn=address) as connection:
        cursor = connection.cursor()
        for table in CHINOOK_COUNTS:
            try:
                cursor.execute(f"DROP TABLE {table} CASCADE CONSTRAINTS PURGE")
            except oracledb.DatabaseError:
                pass  # not there yet
        for statement in oracle_statements():
            cursor.execute(statement)
        connection.commit()
    config = oracle.Config(
        type="oracle",
        dsn=address,
        user=user,
        password=password,
        tables={table: {"mapping": "m.yaml"} for table in CHINOOK_COUNTS},
    )
    source = oracle.open_source("chinook", config, BatchLimits(records=1000))
    try:
        source.check()
        read_everything(source)
        load_chinook(pg_database)
        expected = postgres_expectations(pg_database)
        for table in CHINOOK_COUNTS:
            got = {tuple(int(v) for v in key) for key in source.keys(table)}
            assert got == expected[table], table
        assert source.warnings == {}
    finally:
        source.close()


def test_sql_server_chinook(mssql_dsn, pg_database):
    import pyodbc

    with pyodbc.connect(mssql_dsn, autocommit=True) as connection:
        for batch in mssql_batches():
            connection.execute(batch)
        connection.execute("ALTER DATABASE [Chinook] SET ALLOW_SNAPSHOT_ISOLATION ON")
    config = mssql.Config(
        type="mssql",
        dsn=f"{mssql_dsn};DATABASE=Chinook",
        tables={table: {"mapping": "m.yaml"} for table in CHINOOK_COUNTS},
    )
    source = mssql.open_source("chinook", config, BatchLimits(records=1000))
    try:
        source.check()
        read_everything(source)
        load_chinook(pg_database)
        expected = postgres_expectations(pg_database)
        for table in CHINOOK_COUNTS:
            assert set(source.keys(table)) == expected[table], table
    finally:
        source.close()
