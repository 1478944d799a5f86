"""New keys are COPYed straight into the table; an existing key sends the batch through staging, so
the table ends exactly as after upserts; tables where COPY is not INSERT never take that path."""

from decimal import Decimal

import psycopg
import pytest

from etl.records import Column, TableRows, TableSpec
from etl.sinks import postgres

pytestmark = pytest.mark.integration

ITEMS = TableSpec("pg", "items", ("id",), (Column("id", "int"), Column("name", "string(5)"),
                                          Column("price", "decimal(6,2)")))


def open_sink(dsn):
    return postgres.open_sink("pg", postgres.Config(type="postgres", dsn=dsn, create="if_missing"))


def rows(ids, name="n"):
    return {"items": TableRows([{"id": i, "name": f"{name}{i % 10}", "price": Decimal(i) / 4} for i in ids],
                               [f"id={i}" for i in ids])}


def stored(dsn):
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT id, name, price FROM items ORDER BY id").fetchall()


def expected(ids_and_names):
    return [(i, f"{name}{i % 10}", Decimal(i) / 4) for i, name in sorted(ids_and_names.items())]


def test_existing_keys_are_upserted_and_new_ones_copied(pg_database):
    sink = open_sink(pg_database)
    sink.prepare([ITEMS])
    assert sink._tables["items"].copy_direct is not None
    assert sink.write(rows(range(1, 11))).loaded == {"items": 10}
    assert sink._tables["items"].copy_direct is not None  # all new: copied straight in
    result = sink.write(rows(range(6, 16), name="u"))  # 6..10 exist: COPY refused, upserted instead
    assert result.loaded == {"items": 10} and result.rejects == []
    assert sink._tables["items"].copy_direct is None  # from now on through staging
    assert sink.write(rows(range(16, 18), name="v")).loaded == {"items": 2}
    assert stored(pg_database) == expected({**{i: "n" for i in range(1, 6)}, **{i: "u" for i in range(6, 16)},
                                            16: "v", 17: "v"})
    sink.close()


def test_a_row_the_table_refuses_is_rejected_alone_and_the_rest_copied(pg_database):
    sink = open_sink(pg_database)
    sink.prepare([ITEMS])
    batch = rows(range(1, 9))
    batch["items"].rows[4]["name"] = "toolong"  # varchar(5)
    result = sink.write(batch)
    assert result.loaded == {"items": 7}
    assert [(r.source_key, r.reason) for r in result.rejects] == [
        ("id=5", "PostgreSQL refused the row: 22001 value too long for type character varying(5)")]
    assert sink._tables["items"].copy_direct is not None  # only a conflict turns copying straight off
    assert stored(pg_database) == expected({i: "n" for i in (1, 2, 3, 4, 6, 7, 8)})
    sink.close()


def test_a_table_with_a_rule_is_never_copied_straight(pg_database):
    """COPY would skip the rule; the upsert is what PostgreSQL refuses there, as it always was."""
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, name varchar(5), price numeric(6,2))")
        conn.execute("CREATE TABLE audit (id bigint)")
        conn.execute("CREATE RULE audited AS ON INSERT TO items DO ALSO INSERT INTO audit VALUES (NEW.id)")
    sink = open_sink(pg_database)
    sink.prepare([ITEMS])
    assert sink._tables["items"].copy_direct is None
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        sink.write(rows(range(1, 4)))
    assert stored(pg_database) == []
    sink.close()


def test_a_table_with_row_level_security_is_never_copied_straight(pg_database):
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, name varchar(5), price numeric(6,2))")
        conn.execute("ALTER TABLE items ENABLE ROW LEVEL SECURITY")
    sink = open_sink(pg_database)
    sink.prepare([ITEMS])
    assert sink._tables["items"].copy_direct is None
    assert sink.write(rows(range(1, 3))).loaded == {"items": 2}
    assert stored(pg_database) == expected({1: "n", 2: "n"})
    sink.close()
