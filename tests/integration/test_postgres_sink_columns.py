"""Column-wise rows (`ColumnRows`, as a flat mapping makes them) written by the PostgreSQL sink: the
same table, the same rejects (with the row as a dict) and the same de-duplication as rows of dicts."""

from decimal import Decimal

import psycopg
import pytest

from etl.records import Column, ColumnRows, TableRows, TableSpec
from etl.sinks import postgres

pytestmark = pytest.mark.integration

ITEMS = TableSpec("pg", "items", ("id",), (Column("id", "int"), Column("name", "string(5)"),
                                          Column("price", "decimal(6,2)")))


def open_sink(dsn):
    sink = postgres.open_sink("pg", postgres.Config(type="postgres", dsn=dsn, create="if_missing"))
    sink.prepare([ITEMS])
    return sink


def stored(dsn):
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT id, name, price FROM items ORDER BY id").fetchall()


def columns(ids, names, prices):
    return ColumnRows({"id": list(ids), "name": list(names), "price": list(prices)}, [f"id={i}" for i in ids])


def test_columns_are_written_without_building_rows(pg_database):
    sink = open_sink(pg_database)
    batch = columns([1, 2, 3], ["a", "b", None], [Decimal("1.50"), None, Decimal("-2")])
    assert sink.write({"items": batch}).loaded == {"items": 3}
    assert batch.columns is not None  # no dict was built
    assert stored(pg_database) == [(1, "a", Decimal("1.50")), (2, "b", None), (3, None, Decimal("-2.00"))]
    sink.close()


def test_refused_values_reject_their_rows_with_the_row_as_a_dict(pg_database):
    sink = open_sink(pg_database)
    batch = columns([1, 2, 3, 4], ["a", "toolong", "c", "d"],
                    [Decimal("1"), Decimal("2"), Decimal("0.125"), Decimal("4")])
    result = sink.write({"items": batch})
    assert result.loaded == {"items": 2}
    assert sorted((r.source_key, r.field_path, r.reason, repr(r.record)) for r in result.rejects) == [
        ("id=2", None, "PostgreSQL refused the row: 22001 value too long for type character varying(5)",
         "{'id': 2, 'name': 'toolong', 'price': Decimal('2')}"),
        ("id=3", "price", "column 'price': more than 2 decimal places; numeric(…,2) would round it",
         "{'id': 3, 'name': 'c', 'price': Decimal('0.125')}"),
    ]
    assert stored(pg_database) == [(1, "a", Decimal("1.00")), (4, "d", Decimal("4.00"))]
    sink.close()


def test_a_key_twice_or_null_goes_through_deduplication(pg_database):
    sink = open_sink(pg_database)
    batch = columns([1, 2, 1, None], ["a", "b", "later", "x"], [Decimal(1)] * 4)
    result = sink.write({"items": batch})
    assert result.loaded == {"items": 2}
    assert [(r.source_key, r.reason) for r in result.rejects] == [
        ("id=None", "key column 'id' is missing or null")]
    assert stored(pg_database) == [(1, "later", Decimal("1.00")), (2, "b", Decimal("1.00"))]
    sink.close()


def test_column_rows_become_dicts_once_and_equal_the_same_rows():
    rows = ColumnRows({"id": [1, 2], "name": ["a", "b"]}, ["k1", "k2"])
    assert rows == TableRows([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], ["k1", "k2"])
    assert rows.columns is None and rows.rows is rows.rows  # built once; the dicts are the rows now
    rows.rows.append({"id": 3, "name": "c"})
    assert rows.rows[-1] == {"id": 3, "name": "c"} and rows.columns is None
