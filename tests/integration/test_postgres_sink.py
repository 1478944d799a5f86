"""The PostgreSQL sink on a real server: exact round trips, children replaced, tables created and checked."""

import datetime as dt
import uuid
from decimal import Decimal

import psycopg
import pytest

from etl.errors import EtlError
from etl.records import Column, TableRows, TableSpec
from etl.sinks import postgres

pytestmark = pytest.mark.integration

CUSTOMERS = TableSpec(
    "pg",
    "customers",
    ("customer_id",),
    (
        Column("customer_id", "int"),
        Column("first_name", "string"),
        Column("company", "string"),
        Column("address", "json"),
        Column("tags", "set(string)"),
        Column("scores", "list(int)"),
        Column("photo", "bytes"),
        Column("token", "uuid"),
        Column("born", "date"),
        Column("ratio", "float"),
    ),
)
INVOICES = TableSpec(
    "pg",
    "invoices",
    ("invoice_id",),
    (
        Column("invoice_id", "int"),
        Column("customer_id", "int"),
        Column("invoice_date", "timestamptz(6)"),
        Column("billing_country", "string"),
        Column("total", "decimal(10,2)"),
    ),
    parent="customers",
    parent_key=("customer_id",),
)
LINES = TableSpec(
    "pg",
    "invoice_lines",
    ("invoice_line_id",),
    (
        Column("invoice_line_id", "int"),
        Column("invoice_id", "int"),
        Column("track_name", "string(20)"),
        Column("unit_price", "decimal(10,2)"),
        Column("quantity", "int"),
    ),
    parent="invoices",
    parent_key=("invoice_id",),
)
TABLES = [CUSTOMERS, INVOICES, LINES]


def customer(n, invoices=3, lines=2):
    """One source record mapped into the three tables (the shape of the Chinook demo)."""
    c = {
        "customer_id": n,
        "first_name": f"Name{n}",
        "company": None if n % 2 else f"Co{n}",
        "address": {"city": "Oslo", "postal_code": None, "lat": Decimal("59.913868")},
        "tags": {"vip", f"t{n}"},
        "scores": [n, n + 1],
        "photo": bytes([n % 256, 0]),
        "token": uuid.UUID(int=n),
        "born": dt.date(1980, 1, n % 28 + 1),
        "ratio": n / 3,
    }
    inv = [
        {
            "invoice_id": n * 100 + i,
            "customer_id": n,
            "invoice_date": dt.datetime(2009, 1, i + 1, tzinfo=dt.UTC),
            "billing_country": "Norway",
            "total": Decimal("1.98") * (i + 1),
        }
        for i in range(invoices)
    ]
    lns = [
        {
            "invoice_line_id": (n * 100 + i) * 100 + j,
            "invoice_id": n * 100 + i,
            "track_name": f"Track {j}",
            "unit_price": Decimal("0.99"),
            "quantity": 1,
        }
        for i in range(invoices)
        for j in range(lines)
    ]
    return c, inv, lns


def batch(*records):
    out = {"customers": TableRows(), "invoices": TableRows(), "invoice_lines": TableRows()}
    for c, inv, lns in records:
        key = f"_id={c['customer_id']}"
        for name, rows in (("customers", [c]), ("invoices", inv), ("invoice_lines", lns)):
            out[name].rows.extend(rows)
            out[name].source_keys.extend([key] * len(rows))
    return out


def open_sink(dsn, **options):
    return postgres.open_sink("pg", postgres.Config(type="postgres", dsn=dsn, create="if_missing", **options))


def rows_of(sink, spec, key):
    return sorted(sink.read_back(spec), key=lambda row: row[key])


def test_round_trip_replay_and_shrinking_arrays(pg_database):
    sink = open_sink(pg_database)
    sink.prepare(TABLES)
    records = [customer(n) for n in range(1, 60)]
    result = sink.write(batch(*records))
    assert result.loaded == {"customers": 59, "invoices": 177, "invoice_lines": 354} and result.rejects == []
    assert sink.write(batch(*records)).loaded == result.loaded  # replay: same rows, nothing doubled
    assert rows_of(sink, CUSTOMERS, "customer_id") == [c for c, _, _ in records]
    assert rows_of(sink, INVOICES, "invoice_id") == [i for _, inv, _ in records for i in inv]
    assert rows_of(sink, LINES, "invoice_line_id") == sorted(
        (ln for _, _, lns in records for ln in lns), key=lambda r: r["invoice_line_id"]
    )
    # customer 5 now has one invoice with one line: its other invoices and lines disappear
    shrunk = customer(5, invoices=1, lines=1)
    assert sink.write(batch(shrunk)).loaded == {"customers": 1, "invoices": 1, "invoice_lines": 1}
    invoices = rows_of(sink, INVOICES, "invoice_id")
    assert len(invoices) == 177 - 2 and [i["invoice_id"] for i in invoices if i["customer_id"] == 5] == [500]
    assert [
        ln["invoice_line_id"]
        for ln in rows_of(sink, LINES, "invoice_line_id")
        if ln["invoice_id"] // 100 == 5
    ] == [50000]
    assert len(rows_of(sink, LINES, "invoice_line_id")) == 354 - 5
    # a customer with no invoices left: its children are all deleted even though none are sent
    assert sink.write({"customers": TableRows([customer(6)[0]], ["_id=6"])}).loaded == {"customers": 1}
    assert not [i for i in rows_of(sink, INVOICES, "invoice_id") if i["customer_id"] == 6]
    assert not [ln for ln in rows_of(sink, LINES, "invoice_line_id") if ln["invoice_id"] // 100 == 6]
    sink.close()


def test_same_key_twice_in_a_batch_the_later_wins(pg_database):
    sink = open_sink(pg_database)
    sink.prepare(TABLES)
    first, later = customer(1), customer(1)
    later[0]["first_name"] = "Later"
    result = sink.write(batch(first, later))
    assert result.loaded == {"customers": 1, "invoices": 3, "invoice_lines": 6} and result.rejects == []
    assert [c["first_name"] for c in sink.read_back(CUSTOMERS)] == ["Later"]
    sink.close()


def test_tables_are_created_with_types_and_primary_keys(pg_database):
    open_sink(pg_database, schema="sales").prepare(TABLES)
    with psycopg.connect(pg_database) as conn:
        types = dict(
            conn.execute(
                "SELECT column_name, format_type(atttypid, atttypmod) FROM information_schema.columns c"
                " JOIN pg_attribute a ON a.attrelid = 'sales.customers'::regclass"
                " AND a.attname = c.column_name"
                " WHERE table_schema = 'sales' AND table_name = 'customers'"
            ).fetchall()
        )
        assert types == {
            "customer_id": "bigint",
            "first_name": "text",
            "company": "text",
            "address": "jsonb",
            "tags": "text[]",
            "scores": "bigint[]",
            "photo": "bytea",
            "token": "uuid",
            "born": "date",
            "ratio": "double precision",
        }
        lines = dict(
            conn.execute(
                "SELECT column_name, format_type(atttypid, atttypmod) FROM pg_attribute a JOIN"
                " information_schema.columns c ON c.column_name = a.attname"
                " WHERE a.attrelid = 'sales.invoice_lines'::regclass AND c.table_schema = 'sales'"
                " AND c.table_name = 'invoice_lines'"
            ).fetchall()
        )
        assert lines["unit_price"] == "numeric(10,2)" and lines["track_name"] == "character varying(20)"
        pk = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'sales.invoices'::regclass AND contype = 'p'"
        ).fetchone()[0]
        assert pk == "PRIMARY KEY (invoice_id)"
        date_type = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'sales.invoices'::regclass AND attname = 'invoice_date'"
        ).fetchone()
        assert date_type == ("timestamp(6) with time zone",)


@pytest.mark.parametrize(
    "ddl, message",
    [
        (
            "CREATE TABLE invoices (invoice_id bigint PRIMARY KEY, customer_id bigint,"
            " invoice_date timestamptz, total numeric(10,2))",
            "PostgreSQL table public.invoices has no column 'billing_country' (the mapping writes it)",
        ),
        (
            "CREATE TABLE invoices (invoice_id bigint PRIMARY KEY, customer_id bigint, invoice_date text,"
            " billing_country text, total numeric(10,2))",
            "PostgreSQL table public.invoices, column 'invoice_date': type text cannot hold the mapping's"
            " timestamptz(6) without loss",
        ),
        (
            "CREATE TABLE invoices (invoice_id bigint, customer_id bigint, invoice_date timestamptz,"
            " billing_country text, total numeric(10,2))",
            "PostgreSQL table public.invoices has no primary key or unique index on (invoice_id)",
        ),
    ],
)
def test_an_existing_table_that_differs_fails_before_anything_is_created(pg_database, ddl, message):
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(ddl)
    with pytest.raises(EtlError) as caught:
        open_sink(pg_database).prepare(TABLES)
    assert caught.value.message == message
    with psycopg.connect(pg_database) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (1,)


def test_rows_the_target_refuses_are_found_and_rejected_alone(pg_database):
    sink = open_sink(pg_database)
    sink.prepare(TABLES)
    records = [customer(n) for n in range(1, 21)]
    records[3][2][1]["track_name"] = "x" * 21  # too long for varchar(20): refused by PostgreSQL
    records[7][1][0]["total"] = Decimal("1.999")  # numeric(10,2) would round it: refused before sending
    records[9][1][2]["invoice_date"] = dt.datetime(2009, 1, 1)  # naive in a timestamptz column
    del records[11][2][0]["invoice_line_id"]  # no key: two such rows must not collapse into one
    records[11][2][1]["invoice_line_id"] = None
    result = sink.write(batch(*records))
    # The lines of the two refused invoices are rejected with them: no child row without its parent.
    assert result.loaded == {"customers": 20, "invoices": 58, "invoice_lines": 113}
    reasons = sorted((r.table, r.source_key, r.field_path, r.reason) for r in result.rejects)
    assert reasons == [
        ("invoice_lines", "_id=10", None, "its parent row in invoices was refused"),
        ("invoice_lines", "_id=10", None, "its parent row in invoices was refused"),
        ("invoice_lines", "_id=12", "invoice_line_id", "key column 'invoice_line_id' is missing or null"),
        ("invoice_lines", "_id=12", "invoice_line_id", "key column 'invoice_line_id' is missing or null"),
        (
            "invoice_lines",
            "_id=4",
            None,
            "PostgreSQL refused the row: 22001 value too long for type character varying(20)",
        ),
        ("invoice_lines", "_id=8", None, "its parent row in invoices was refused"),
        ("invoice_lines", "_id=8", None, "its parent row in invoices was refused"),
        (
            "invoices",
            "_id=10",
            "invoice_date",
            "column 'invoice_date': timestamptz needs a timezone-aware datetime, got a naive one",
        ),
        (
            "invoices",
            "_id=8",
            "total",
            "column 'total': more than 2 decimal places; numeric(…,2) would round it",
        ),
    ]
    assert all(r.stage == "load" and r.record is not None for r in result.rejects)
    orphaned = sorted((r.record["invoice_id"], r.record["invoice_line_id"]) for r in result.rejects
                      if r.reason == "its parent row in invoices was refused")
    refused_invoices = sorted(r.record["invoice_id"] for r in result.rejects if r.table == "invoices")
    assert sorted({invoice for invoice, _ in orphaned}) == refused_invoices
    assert all(r.target == "pg.invoice_lines" for r in result.rejects if r.table == "invoice_lines")
    lines = list(sink.read_back(LINES))
    assert len(lines) == 113
    assert not {line["invoice_id"] for line in lines} & set(refused_invoices)
    sink.close()


def test_hostile_identifiers_are_quoted(pg_database):
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE y (id int)")
    table = 'x"; DROP TABLE y; --'
    spec = TableSpec(
        "pg", table, ('id"--',), (Column('id"--', "int"), Column("select", "string"), Column("a b;", "json"))
    )
    sink = open_sink(pg_database, schema='s"; DROP TABLE y; --')
    sink.prepare([spec])
    rows = [{'id"--': n, "select": f"v{n}", "a b;": {"k": n}} for n in range(5)]
    assert sink.write({table: TableRows(rows, [str(n) for n in range(5)])}).loaded == {table: 5}
    assert sink.delete(spec, [{'id"--': 0}]) == 1
    assert sorted(sink.read_back(spec), key=lambda r: r['id"--']) == rows[1:]
    sink.close()
    with psycopg.connect(pg_database) as conn:
        assert conn.execute("SELECT to_regclass('public.y') IS NOT NULL").fetchone() == (True,)


def test_delete_removes_rows_and_their_children(pg_database):
    sink = open_sink(pg_database)
    sink.prepare(TABLES)
    sink.write(batch(*[customer(n) for n in range(1, 6)]))
    assert sink.delete(CUSTOMERS, [{"customer_id": 2}, {"customer_id": 4}, {"customer_id": 99}]) == 2
    assert [c["customer_id"] for c in rows_of(sink, CUSTOMERS, "customer_id")] == [1, 3, 5]
    assert {i["customer_id"] for i in sink.read_back(INVOICES)} == {1, 3, 5}
    assert len(list(sink.read_back(LINES))) == 3 * 3 * 2
    sink.close()


def test_create_never_needs_the_table(pg_database):
    sink = postgres.open_sink("pg", postgres.Config(type="postgres", dsn=pg_database))
    with pytest.raises(EtlError, match="PostgreSQL table public.customers does not exist"):
        sink.prepare(TABLES)


def test_reading_back_a_table_that_does_not_exist_says_so(pg_database):
    sink = postgres.open_sink("pg", postgres.Config(type="postgres", dsn=pg_database))
    with pytest.raises(EtlError) as raised:
        list(sink.read_back(TABLES[0]))
    assert str(raised.value) == (
        "PostgreSQL target 'pg': cannot read table 'customers' back: "
        'relation "public.customers" does not exist'
        "\n  hint: run the job (or create the table) before validating it"
    )
