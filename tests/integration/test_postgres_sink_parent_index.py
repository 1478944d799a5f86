"""Child tables and their parent key: an index created with the table (so replacing a batch's children
costs index lookups, not a scan of a table that keeps growing), a warning with the statement for an
existing table without one, and the delete kept on that index while the table has no statistics."""

from __future__ import annotations

import logging

import psycopg
import pytest

from etl.records import Column, TableSpec
from etl.sinks.base import TableRows
from tests.integration.test_postgres_sink import INVOICES, LINES, TABLES, batch, customer, open_sink, rows_of

pytestmark = pytest.mark.integration

ORDINAL_CHILD = TableSpec(
    "pg", "phones", ("customer_id", "ordinal"),
    (Column("customer_id", "int"), Column("ordinal", "int"), Column("number", "string")),
    parent="customers", parent_key=("customer_id",),
)


def index_columns(dsn: str, table: str) -> list[list[str]]:
    """Columns of every index of public.`table`, in index order, sorted by the first column."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT array(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n)"
            " FROM pg_index i WHERE i.indrelid = %s::regclass", (f"public.{table}",)).fetchall()
    return sorted(row[0] for row in rows)


def test_created_child_tables_get_an_index_on_their_parent_key(pg_database, caplog):
    with caplog.at_level(logging.WARNING, logger="etl.sinks.postgres"):
        open_sink(pg_database).prepare([*TABLES, ORDINAL_CHILD])
    assert index_columns(pg_database, "customers") == [["customer_id"]]
    assert index_columns(pg_database, "invoices") == [["customer_id"], ["invoice_id"]]
    assert index_columns(pg_database, "invoice_lines") == [["invoice_id"], ["invoice_line_id"]]
    # keyed by (parent key, ordinal): the primary key's index already leads with the parent key
    assert index_columns(pg_database, "phones") == [["customer_id", "ordinal"]]
    assert [r.message for r in caplog.records] == []
    # preparing again (another worker, a resumed run) adds nothing
    open_sink(pg_database).prepare([*TABLES, ORDINAL_CHILD])
    assert index_columns(pg_database, "invoices") == [["customer_id"], ["invoice_id"]]


def test_an_existing_child_table_without_the_index_is_named_with_the_statement(pg_database, caplog):
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (invoice_id bigint PRIMARY KEY, customer_id bigint, invoice_date"
                     " timestamptz, billing_country text, total numeric(10,2))")
        # an index that does not lead with the parent key does not count
        conn.execute("CREATE INDEX ON invoices (billing_country, customer_id)")
    with caplog.at_level(logging.WARNING, logger="etl.sinks.postgres"):
        sink = open_sink(pg_database)
        sink.prepare(TABLES)
    assert [r.getMessage() for r in caplog.records] == [
        "PostgreSQL table public.invoices has no index on its parent key (customer_id): every batch that"
        " replaces children scans the whole table, a cost that grows with the table. Create one before"
        ' loading: CREATE INDEX ON "public"."invoices" ("customer_id")'
    ]
    # the sink does not add indexes to a table it did not create, and still replaces children
    assert index_columns(pg_database, "invoices") == [["billing_country", "customer_id"], ["invoice_id"]]
    sink.write(batch(customer(1), customer(2)))
    sink.write(batch(customer(1, invoices=1, lines=1)))
    assert [i["invoice_id"] for i in rows_of(sink, INVOICES, "invoice_id")] == [100, 200, 201, 202]
    sink.close()
    caplog.clear()
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute('CREATE INDEX ON "public"."invoices" ("customer_id")')
    with caplog.at_level(logging.WARNING, logger="etl.sinks.postgres"):
        open_sink(pg_database).prepare(TABLES)
    assert [r.message for r in caplog.records] == []


def test_children_are_found_through_the_index_while_the_table_has_no_statistics(pg_database):
    """The planner, with no statistics on a child table a load is filling, would scan all of it for
    each batch's parents; the sink keeps the delete on the parent-key index (and puts the planner
    setting back for the rest of the transaction)."""
    sink = open_sink(pg_database)
    sink.prepare(TABLES)
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("INSERT INTO invoices SELECT 1000000 + i, i / 5, now(), 'Norway', 1"
                     " FROM generate_series(1, 200000) i")
    table = sink._table("invoices")
    query, params = sink._delete_statement(table, ("customer_id",), [(n,) for n in range(100_000, 101_000)],
                                           returning=False)
    connection = sink._acquire()
    try:
        with connection.conn.transaction():
            plan = sink._execute_by_index(connection.conn, table, psycopg.sql.SQL("EXPLAIN ") + query,
                                          params).fetchall()
            after = connection.conn.execute("SHOW enable_seqscan").fetchone()[0]
        plan_text = "\n".join(row[0] for row in plan)
        # one index condition on the parent key: no scan of the table, no join over all of it
        assert "Seq Scan" not in plan_text and "Join" not in plan_text, plan_text
        assert "Index Cond: (customer_id = ANY (" in plan_text, plan_text
        assert after == "on"
    finally:
        sink._release(connection)
    # and the real write replaces exactly the children of its parents
    sink.write(batch(customer(7, invoices=2, lines=1)))
    with psycopg.connect(pg_database) as conn:
        assert conn.execute("SELECT count(*) FROM invoices WHERE customer_id = 7").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM invoices").fetchone()[0] == 200000 - 5 + 2
    assert len(rows_of(sink, LINES, "invoice_line_id")) == 2
    sink.close()


def test_a_write_with_no_children_still_deletes_them_through_the_index(pg_database):
    sink = open_sink(pg_database)
    sink.prepare(TABLES)
    sink.write(batch(customer(3)))
    assert sink.write({"customers": TableRows([customer(3)[0]], ["_id=3"])}).loaded == {"customers": 1}
    assert rows_of(sink, INVOICES, "invoice_id") == [] and rows_of(sink, LINES, "invoice_line_id") == []
    sink.close()
