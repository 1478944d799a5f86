"""Dead letters kept in a PostgreSQL table: the same entries as the file, committed by flush()."""

from decimal import Decimal

import psycopg
import pytest

from etl.records import Reject
from etl.sinks.deadletter import DeadLetterConfig, open_dead_letters

pytestmark = pytest.mark.integration


def test_entries_are_committed_on_flush(pg_database):
    config = DeadLetterConfig(type="postgres", dsn=pg_database, schema="etl", table="dead")
    store = open_dead_letters(config, job="demo")
    reason = "column 'total': more than 2 decimal places"
    rejects = [
        Reject(
            table="invoices",
            source_key=f"_id={n}",
            reason=reason,
            stage="load",
            field_path="total",
            value_type="Decimal",
            record={"invoice_id": n, "total": Decimal("1.999")},
            target="invoices",
        )
        for n in range(3)
    ]
    assert store.add(rejects) == 3
    with psycopg.connect(pg_database) as other:
        assert other.execute("SELECT count(*) FROM etl.dead").fetchone() == (0,)  # not committed yet
    store.flush()
    with psycopg.connect(pg_database) as other:
        entries = [row[0] for row in other.execute("SELECT entry FROM etl.dead ORDER BY id")]
    assert [(e["source_key"], e["record"]) for e in entries] == [
        ("_id=0", {"invoice_id": 0, "total": "1.999"}),
        ("_id=1", {"invoice_id": 1, "total": "1.999"}),
        ("_id=2", {"invoice_id": 2, "total": "1.999"}),
    ]
    assert {(e["job"], e["stage"], e["field_path"], e["target"]) for e in entries} == {
        ("demo", "load", "total", "invoices")
    }
    store.close()
