"""Oracle rows as python-oracledb returns them (fetch_decimals=True, LOB objects) -> canonical records."""

from __future__ import annotations

import datetime as dt
import types
import uuid
from decimal import Decimal

import oracledb
import pytest

from etl.errors import EtlError
from etl.sources import oracle
from etl.sources.base import BatchLimits
from etl.sources.sql import Params, TableMeta


class Lob:
    """python-oracledb's LOB interface: `read()` returns the whole CLOB/BLOB content."""

    def __init__(self, content):
        self._content = content

    def read(self, offset: int = 1, amount: int | None = None):
        return (
            self._content[offset - 1 :] if amount is None else self._content[offset - 1 : offset - 1 + amount]
        )


CATALOG = [
    # ALL_TAB_COLUMNS: COLUMN_NAME, DATA_TYPE, DATA_PRECISION, DATA_SCALE, DATA_LENGTH, NULLABLE
    ("ID", "NUMBER", 10, 0, 22, "N"),
    ("AMOUNT", "NUMBER", 10, 2, 22, "Y"),
    ("RATIO", "NUMBER", None, None, 22, "Y"),
    ("NOTE", "CLOB", None, None, 4000, "Y"),
    ("PHOTO", "BLOB", None, None, 4000, "Y"),
    ("CODE", "CHAR", None, None, 5, "Y"),
    ("GUID", "RAW", None, None, 16, "Y"),
    ("TAKEN", "TIMESTAMP(9)", None, 9, 11, "Y"),
    ("SEEN", "TIMESTAMP(6) WITH TIME ZONE", None, 6, 13, "Y"),
    ("BORN", "DATE", None, None, 7, "Y"),
    ("WEIGHT", "BINARY_DOUBLE", None, None, 8, "Y"),
    ("TERM", "INTERVAL YEAR(2) TO MONTH", 2, 0, 5, "Y"),
    ("STAY", "INTERVAL DAY(2) TO SECOND(6)", 2, 6, 11, "Y"),
    ("NICK", "VARCHAR2", None, None, 40, "Y"),
]


def source_and_table():
    config = oracle.Config(type="oracle", dsn="h/s", user="u", password="p", tables={"P": {"mapping": "m"}})
    source = oracle.OracleSource("ora", config, BatchLimits())
    columns = tuple(oracle.oracle_column(*row) for row in CATALOG)
    return source, TableMeta("P", "HR", "P", columns, ("ID",))


def driver_row(identifier, amount, taken):
    return (
        Decimal(identifier),
        amount,
        Decimal("3.14159265358979323846264338327950288"),
        Lob("Theodor-Heuss-Straße " * 10_000),
        Lob(b"\x89PNG" + bytes(70_000)),
        "AB   ",
        bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F0"),
        taken,
        dt.datetime(2024, 6, 30, 22, 0, 0, 5),  # SYS_EXTRACT_UTC(SEEN): naive UTC
        dt.datetime(1980, 2, 29, 13, 45, 10),  # DATE has a time part
        0.1,
        oracledb.IntervalYM(years=1, months=2),
        dt.timedelta(days=3, seconds=7, microseconds=9),
        None,  # '' is NULL in Oracle
    )


def test_catalog_types_are_read_with_their_sizes():
    _, table = source_and_table()
    taken = table.column("TAKEN")
    assert (taken.type, taken.scale) == ("TIMESTAMP", 9)
    seen = table.column("SEEN")
    assert (seen.type, seen.scale) == ("TIMESTAMP WITH TIME ZONE", 6)
    assert table.column("TERM").type == "INTERVAL YEAR TO MONTH"
    assert table.column("NOTE").length is None and table.column("NICK").length == 40


def test_driver_values_become_exact_canonical_values():
    source, table = source_and_table()
    plan = source.read_plan(table, None)
    assert plan.expressions[7] == 'TO_CHAR("TAKEN", \'YYYY-MM-DD"T"HH24:MI:SS.FF9\') AS "TAKEN"'
    assert plan.expressions[8] == 'SYS_EXTRACT_UTC("SEEN") AS "SEEN"'
    batch = source.to_batch(table, plan, [driver_row(7, Decimal("1.5"), "2024-02-29T08:00:00.123456000")])
    assert batch.rejects == []
    (record,) = batch.records
    assert record == {
        "ID": 7,
        "AMOUNT": Decimal("1.50"),
        "RATIO": Decimal("3.14159265358979323846264338327950288"),
        "NOTE": "Theodor-Heuss-Straße " * 10_000,
        "PHOTO": b"\x89PNG" + bytes(70_000),
        "CODE": "AB",
        "GUID": uuid.UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
        "TAKEN": dt.datetime(2024, 2, 29, 8, 0, 0, 123456),
        "SEEN": dt.datetime(2024, 6, 30, 22, 0, 0, 5, tzinfo=dt.UTC),
        "BORN": dt.datetime(1980, 2, 29, 13, 45, 10),
        "WEIGHT": 0.1,
        "TERM": "P1Y2M",
        "STAY": dt.timedelta(days=3, seconds=7, microseconds=9),
        "NICK": None,
    }
    assert type(record["ID"]) is int
    assert str(record["AMOUNT"]) == "1.50"
    assert batch.resume_after == [{"$decimal": "7"}]
    assert source.warnings == {}


def test_nanoseconds_are_counted_not_hidden():
    source, table = source_and_table()
    plan = source.read_plan(table, None)
    rows = [
        driver_row(1, None, "2024-02-29T08:00:00.123456789"),
        driver_row(2, None, "2024-02-29T08:00:00.000000001"),
        driver_row(3, None, "2024-02-29T08:00:00.100000000"),
    ]
    batch = source.to_batch(table, plan, rows)
    assert [record["TAKEN"] for record in batch.records] == [
        dt.datetime(2024, 2, 29, 8, 0, 0, 123456),
        dt.datetime(2024, 2, 29, 8, 0, 0),
        dt.datetime(2024, 2, 29, 8, 0, 0, 100000),
    ]
    assert source.warnings == {"P.TAKEN: sub-microsecond digits dropped": 2}


def test_a_value_that_does_not_fit_its_declared_scale_is_rejected_with_its_key_only():
    source, table = source_and_table()
    plan = source.read_plan(table, None)
    batch = source.to_batch(
        table, plan, [driver_row(1, Decimal("2.5"), None), driver_row(2, Decimal("1.005"), None)]
    )
    assert [record["ID"] for record in batch.records] == [1]
    (reject,) = batch.rejects
    assert reject.table == "P"
    assert reject.source_key == "ID=2"
    assert reject.reason == "column AMOUNT: value has more than 2 decimal places"
    assert reject.stage == "extract" and reject.field_path == "AMOUNT" and reject.value_type == "Decimal"
    assert "1.005" not in repr(reject)
    assert batch.extracted == 2


class RaisingCursor:
    """A cursor whose execute fails the way python-oracledb reports a server error."""

    def __init__(self, code: int) -> None:
        self.code = code

    def execute(self, sql, parameters=None, **options):
        error = types.SimpleNamespace(
            code=self.code, full_code=f"ORA-{self.code:05d}", message="server error"
        )
        raise oracledb.DatabaseError(error)


def test_a_plan_older_than_undo_retention_asks_to_replan():
    source, _ = source_and_table()
    with pytest.raises(EtlError) as failure:
        source.execute(RaisingCursor(1555), "SELECT 1 FROM DUAL", Params(source.placeholder))
    assert str(failure.value) == (
        "Oracle source 'ora': the plan's SCN is no longer readable (ORA-01555: undo data for that point"
        " in time is gone)\n  hint: plan the job again so that it reads at a new SCN"
        " (a catch-up: run a full load),"
        " or raise UNDO_RETENTION"
    )
    with pytest.raises(oracledb.DatabaseError):
        source.execute(RaisingCursor(942), "SELECT 1 FROM MISSING", Params(source.placeholder))


def test_a_nanosecond_key_is_refused():
    config = oracle.Config(
        type="oracle", dsn="h/s", user="u", password="p", tables={"EVENTS": {"mapping": "m", "key": ["AT"]}}
    )

    class Catalog(oracle.OracleSource):
        """The ALL_* answers for one table, as python-oracledb returns them."""

        def find_tables(self, connection, schema, table):
            return [("HR", "EVENTS")]

        def columns(self, connection, schema, table):
            return [oracle.oracle_column("AT", "TIMESTAMP(9)", None, 9, 11, "N")]

        def _metadata_connection(self):
            return None

    with pytest.raises(EtlError) as failure:
        Catalog("ora", config, BatchLimits()).describe("EVENTS")
    assert str(failure.value) == (
        "Oracle source 'ora', table 'EVENTS': key column(s) AT hold more precision than Python keeps"
        " (sub-microsecond time), so pages could repeat rows\n  hint: set `key:` to columns of another type"
    )


def test_restore_verification_hashes_a_float_number_as_a_decimal_and_binary_double_as_a_float():
    """Oracle's FLOAT is a decimal NUMBER: hashed as a float, two values rounding to one double
    would compare equal. The spec takes the type the reader reads each column as."""
    from etl.checksum import RowHasher, Tolerances
    from etl.restore.cli import table_spec

    source, meta = source_and_table()
    number = oracle.oracle_column("F", "FLOAT", 126, None, 22, "Y")
    source.describe = lambda table: TableMeta(  # the catalog of CATALOG plus a FLOAT(126) column
        meta.name, meta.schema, meta.table, (*meta.columns, number), meta.key)
    spec = table_spec(source, "P")
    types = {column.name: column.type for column in spec.columns}
    assert (types["F"], types["WEIGHT"], types["RATIO"]) == ("decimal", "float", "decimal")
    hasher = RowHasher(spec, Tolerances())
    close = {"F": Decimal("0.1000000000000000001"), "WEIGHT": 0.5}
    assert hasher.row_hash({**close, "ID": 1}) != hasher.row_hash({**close, "ID": 1, "F": Decimal("0.1")})
