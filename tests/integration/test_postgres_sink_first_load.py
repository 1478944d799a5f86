"""A first load deletes no children, every other write still replaces them exactly, and a parent row
the sink or PostgreSQL refuses takes its child rows down with it, so no child row is ever written
without its parent row (what makes skipping the first load's deletes safe). DELETE statements are
counted by a statement-level trigger, which fires even when a statement deletes nothing."""

from decimal import Decimal

import psycopg
import pytest

from tests.integration.run_helpers import note_delete_statements
from tests.integration.test_postgres_sink import (
    CUSTOMERS,
    INVOICES,
    LINES,
    TABLES,
    batch,
    customer,
    open_sink,
    rows_of,
)

pytestmark = pytest.mark.integration

PARENT_REFUSED = {"invoices": "its parent row in customers was refused",
                  "invoice_lines": "its parent row in invoices was refused"}


def deletes(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT table_name, count(*) FROM delete_statements GROUP BY 1").fetchall())


def first_load_sink(dsn: str):
    """A sink prepared as a run's partition is: told which child tables were empty as the run began."""
    empty = open_sink(dsn).prepare(TABLES)
    assert empty == {"invoices", "invoice_lines"}
    note_delete_statements(dsn, ["invoices", "invoice_lines"])
    sink = open_sink(dsn)
    assert sink.prepare(TABLES, empty_at_start=empty) == empty
    return sink


def invoices_of(sink, customer_id):
    return [row["invoice_id"] for row in rows_of(sink, INVOICES, "invoice_id")
            if row["customer_id"] == customer_id]


def lines_of(sink, customer_id):
    return [row["invoice_line_id"] for row in rows_of(sink, LINES, "invoice_line_id")
            if row["invoice_id"] // 100 == customer_id]


def test_prepare_reports_the_child_tables_that_hold_no_row(pg_database):
    assert open_sink(pg_database).prepare(TABLES) == {"invoices", "invoice_lines"}
    sink = open_sink(pg_database)
    sink.prepare(TABLES)
    written = sink.write(batch(customer(1, invoices=2, lines=0))).loaded
    assert written == {"customers": 1, "invoices": 2, "invoice_lines": 0}
    assert open_sink(pg_database).prepare(TABLES) == {"invoice_lines"}
    sink.write(batch(customer(2)))
    assert open_sink(pg_database).prepare(TABLES) == frozenset()


def test_a_first_load_deletes_no_children(pg_database):
    sink = first_load_sink(pg_database)
    first, second = [customer(n) for n in range(1, 11)], [customer(n) for n in range(11, 21)]
    assert sink.write(batch(*first)).loaded == {"customers": 10, "invoices": 30, "invoice_lines": 60}
    assert sink.write(batch(*second)).loaded == {"customers": 10, "invoices": 30, "invoice_lines": 60}
    assert deletes(pg_database) == {}
    records = first + second
    assert rows_of(sink, CUSTOMERS, "customer_id") == [c for c, _, _ in records]
    assert rows_of(sink, INVOICES, "invoice_id") == [i for _, inv, _ in records for i in inv]
    assert [row["invoice_line_id"] for row in rows_of(sink, LINES, "invoice_line_id")] == sorted(
        ln["invoice_line_id"] for _, _, lns in records for ln in lns)


def test_a_parent_key_written_again_in_a_first_load_replaces_its_children(pg_database):
    sink = first_load_sink(pg_database)
    sink.write(batch(*[customer(n) for n in range(1, 11)]))
    assert deletes(pg_database) == {}
    # customer 5 again, now with one invoice of one line: its key exists, so the batch goes through
    # staging and the children it had are deleted first
    again = sink.write(batch(*[customer(n) for n in range(11, 16)], customer(5, invoices=1, lines=1)))
    assert again.loaded == {"customers": 6, "invoices": 16, "invoice_lines": 31} and again.rejects == []
    assert deletes(pg_database) == {"invoices": 1, "invoice_lines": 1}
    assert invoices_of(sink, 5) == [500] and lines_of(sink, 5) == [50000]
    # another partition's sink, told the same, writes customer 3 again: its COPY meets the key too
    other = open_sink(pg_database)
    other.prepare(TABLES, empty_at_start=frozenset({"invoices", "invoice_lines"}))
    other.write(batch(customer(3, invoices=2, lines=1)))
    assert invoices_of(sink, 3) == [300, 301] and lines_of(sink, 3) == [30000, 30100]
    assert len(rows_of(sink, INVOICES, "invoice_id")) == 15 * 3 - 2 - 1
    assert len(rows_of(sink, LINES, "invoice_line_id")) == 15 * 6 - 5 - 4


def test_a_sink_not_told_the_tables_were_empty_deletes_children_as_before(pg_database):
    open_sink(pg_database).prepare(TABLES)
    note_delete_statements(pg_database, ["invoices", "invoice_lines"])
    sink = open_sink(pg_database)
    sink.prepare(TABLES)
    sink.write(batch(*[customer(n) for n in range(1, 11)]))
    assert deletes(pg_database) == {"invoices": 1, "invoice_lines": 1}
    assert len(rows_of(sink, LINES, "invoice_line_id")) == 60


def test_a_refused_parent_row_rejects_its_children_down_the_tree(pg_database):
    sink = first_load_sink(pg_database)
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("ALTER TABLE customers ADD CONSTRAINT not_refused CHECK (first_name <> 'refused')")
    records = [customer(n) for n in range(1, 11)]
    records[6][0]["first_name"] = "refused"  # customer 7: refused by PostgreSQL
    records[7][1][1]["total"] = Decimal("1.999")  # invoice 801: refused before sending
    pre_send = sorted((r.table, r.source_key, r.reason) for r in sink.check(TABLES, batch(*records)).rejects)
    assert pre_send == [
        ("invoice_lines", "_id=8", PARENT_REFUSED["invoice_lines"]),
        ("invoice_lines", "_id=8", PARENT_REFUSED["invoice_lines"]),
        ("invoices", "_id=8", "column 'total': more than 2 decimal places; numeric(…,2) would round it"),
    ]
    result = sink.write(batch(*records))
    assert result.loaded == {"customers": 9, "invoices": 30 - 3 - 1, "invoice_lines": 60 - 6 - 2}
    rejected = sorted((r.table, r.source_key, r.reason) for r in result.rejects)
    refusal = ("customers", "_id=7", "PostgreSQL refused the row: 23514 new row for relation \"customers\""
               " violates check constraint \"not_refused\"")
    assert rejected == sorted([
        refusal, *[("invoices", "_id=7", PARENT_REFUSED["invoices"])] * 3, *pre_send,
        *[("invoice_lines", "_id=7", PARENT_REFUSED["invoice_lines"])] * 6,
    ])
    by_reason = {(r.table, r.record["invoice_id"]) for r in result.rejects
                 if r.reason in PARENT_REFUSED.values()}
    assert by_reason == {("invoices", 700), ("invoices", 701), ("invoices", 702), ("invoice_lines", 700),
                         ("invoice_lines", 701), ("invoice_lines", 702), ("invoice_lines", 801)}
    assert all(r.stage == "load" and r.target == f"pg.{r.table}" for r in result.rejects)
    assert invoices_of(sink, 7) == [] and lines_of(sink, 7) == []
    assert invoices_of(sink, 8) == [800, 802] and lines_of(sink, 8) == [80000, 80001, 80200, 80201]
    # customer 7 comes back valid in a later batch of the same load: exactly its new children
    assert sink.write(batch(customer(7, invoices=1, lines=1))).rejects == []
    assert invoices_of(sink, 7) == [700] and lines_of(sink, 7) == [70000]
    with psycopg.connect(pg_database) as conn:
        orphans = conn.execute("SELECT count(*) FROM invoice_lines l WHERE NOT EXISTS"
                               " (SELECT FROM invoices i WHERE i.invoice_id = l.invoice_id)").fetchone()[0]
    assert orphans == 0
