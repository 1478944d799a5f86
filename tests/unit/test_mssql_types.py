"""SQL Server rows as pyodbc returns them (DATETIMEOFFSET raw bytes, GUID text) -> canonical records."""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from decimal import Decimal

from etl.sources import mssql
from etl.sources.base import BatchLimits
from etl.sources.sql import SqlColumn, TableMeta

COLUMNS = (
    # sys.columns: name, TYPE_NAME(system_type_id), precision, scale, max_length (-1 = MAX -> None)
    SqlColumn("Id", "UNIQUEIDENTIFIER", 0, 0, 16, nullable=False),
    SqlColumn("Total", "NUMERIC", 10, 2, 5),
    SqlColumn("Fee", "MONEY", 19, 4, 8),
    SqlColumn("Score", "REAL", 24, 0, 4),
    SqlColumn("Active", "BIT", 1, 0, 1),
    SqlColumn("Created", "DATETIME", 23, 3, 8),
    SqlColumn("Measured", "DATETIME2", 27, 7, 8),
    SqlColumn("Seen", "DATETIMEOFFSET", 34, 7, 10),
    SqlColumn("Day", "DATE", 10, 0, 3),
    SqlColumn("At", "TIME", 16, 7, 5),
    SqlColumn("Code", "NCHAR", 0, 0, 10),
    SqlColumn("Notes", "NVARCHAR", 0, 0, None),
    SqlColumn("Scan", "VARBINARY", 0, 0, None),
    SqlColumn("Version", "TIMESTAMP", 0, 0, 8),
    SqlColumn("Doc", "XML", 0, 0, None),
    SqlColumn("Extra", "SQL_VARIANT", 0, 0, 8016),
)


def source_and_table():
    config = mssql.Config(type="mssql", server="db", tables={"dbo.Visit": {"mapping": "m"}})
    return mssql.MssqlSource("mss", config, BatchLimits()), TableMeta(
        "dbo.Visit", "dbo", "Visit", COLUMNS, ("Id",)
    )


def offset_bytes(*fields):
    """SQL_SS_TIMESTAMPOFFSET_STRUCT as pyodbc hands it to the -155 output converter."""
    return struct.pack("<6hI2h", *fields)


def test_selected_expressions():
    source, table = source_and_table()
    plan = source.read_plan(table, None)
    by_name = dict(zip(plan.names, plan.expressions, strict=False))
    assert by_name["Measured"] == "CONVERT(VARCHAR(27), [Measured], 126) AS [Measured]"
    assert by_name["At"] == "CONVERT(VARCHAR(16), [At]) AS [At]"
    assert by_name["Seen"] == "[Seen]"
    assert plan.measured == [11, 12, 14, 15]  # NVARCHAR(MAX), VARBINARY(MAX), XML, SQL_VARIANT


def test_driver_values_become_exact_canonical_values():
    source, table = source_and_table()
    plan = source.read_plan(table, None)
    row = (
        "6F9619FF-8B86-D011-B42D-00C04FC964FF",
        Decimal("2328.60"),
        Decimal("12.3400"),
        0.10000000149011612,  # REAL 0.1 as the float32 SQL Server stores
        True,
        dt.datetime(2021, 1, 1, 0, 0, 0, 3000),
        "2024-03-10T14:30:15.1234560",
        offset_bytes(2024, 3, 10, 14, 30, 15, 123456000, -5, 0),
        dt.date(2024, 3, 10),
        "14:30:15.5000000",
        "AB        ",
        "x" * 100_000,
        b"\x00" * 70_000,
        b"\x00\x00\x00\x00\x00\x00\x07\xd1",
        "<visit id='1'/>",
        "decimal|12.50",
    )
    batch = source.to_batch(table, plan, [row])
    assert batch.rejects == []
    assert batch.records == [
        {
            "Id": uuid.UUID("6f9619ff-8b86-d011-b42d-00c04fc964ff"),
            "Total": Decimal("2328.60"),
            "Fee": Decimal("12.3400"),
            "Score": 0.10000000149011612,
            "Active": True,
            "Created": dt.datetime(2021, 1, 1, 0, 0, 0, 3000),
            "Measured": dt.datetime(2024, 3, 10, 14, 30, 15, 123456),
            "Seen": dt.datetime(2024, 3, 10, 19, 30, 15, 123456, tzinfo=dt.UTC),
            "Day": dt.date(2024, 3, 10),
            "At": dt.time(14, 30, 15, 500000),
            "Code": "AB",
            "Notes": "x" * 100_000,
            "Scan": b"\x00" * 70_000,
            "Version": 2001,
            "Doc": "<visit id='1'/>",
            "Extra": {"type": "decimal", "value": "12.50"},
        }
    ]
    assert batch.resume_after == ["6F9619FF-8B86-D011-B42D-00C04FC964FF"]
    assert source.warnings == {}


def test_100_nanosecond_ticks_are_counted():
    source, table = source_and_table()
    plan = source.read_plan(table, None)
    row = [None] * len(COLUMNS)
    row[0] = "6F9619FF-8B86-D011-B42D-00C04FC964FF"
    row[6] = "2024-03-10T14:30:15.1234567"
    row[7] = offset_bytes(2024, 3, 10, 14, 30, 15, 123456700, 0, 0)
    row[9] = "14:30:15.0000001"
    batch = source.to_batch(table, plan, [tuple(row)])
    (record,) = batch.records
    assert record["Measured"] == dt.datetime(2024, 3, 10, 14, 30, 15, 123456)
    assert record["Seen"] == dt.datetime(2024, 3, 10, 14, 30, 15, 123456, tzinfo=dt.UTC)
    assert record["At"] == dt.time(14, 30, 15)
    assert source.warnings == {
        "dbo.Visit.Measured: sub-microsecond digits dropped": 1,
        "dbo.Visit.Seen: sub-microsecond digits dropped": 1,
        "dbo.Visit.At: sub-microsecond digits dropped": 1,
    }


def test_batches_split_by_bytes_of_unbounded_columns():
    config = mssql.Config(type="mssql", server="db", tables={"dbo.Visit": {"mapping": "m"}})
    source = mssql.MssqlSource("mss", config, BatchLimits(records=1000, bytes=250_000))
    table = TableMeta("dbo.Visit", "dbo", "Visit", COLUMNS, ("Id",))
    plan = source.read_plan(table, ["Notes"])
    rows = [(f"{i:08d}-8B86-D011-B42D-00C04FC964FF", "n" * 100_000) for i in range(5)]
    chunks = list(source._split_by_bytes(rows, plan, 1000))
    assert [len(chunk) for chunk in chunks] == [2, 2, 1]


def test_keys_with_100_nanosecond_ticks_are_refused():
    source, _ = source_and_table()
    assert not source.exact_key(SqlColumn("At", "DATETIME2", 27, 7, 8))
    assert not source.exact_key(SqlColumn("At", "DATETIMEOFFSET", 34, 7, 10))
    assert source.exact_key(SqlColumn("At", "DATETIME2", 26, 6, 8))
    assert source.exact_key(SqlColumn("Id", "UNIQUEIDENTIFIER", 0, 0, 16))
