"""The demo mapping (mappings/chinook_customers.yaml) on a hand-built customer document: exact rows."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from decimal import Decimal
from pathlib import Path

import bson

from etl.mapping import compile_mapping, load_mapping

ROOT = Path(__file__).resolve().parents[2]
KEY = "demo-key-0123456789"
UTC = dt.UTC


def resolve(text: str, where: str) -> str:
    assert text == "${env:ETL_DEMO_HMAC_KEY}"
    return KEY


def customer() -> dict:
    return {
        "_id": 16,
        "first_name": "Frank",
        "last_name": "Harris",
        "company": None,
        "address": {
            "street": "1600 Amphitheatre Parkway",
            "city": "Mountain View",
            "state": "CA",
            "country": "USA",
            "postal_code": "94043-1351",
        },
        "phone": "+1 (650) 253-0000",
        "email": "fharris@google.com",
        "support_rep_id": 4,
        "invoices": [
            {
                "invoice_id": 57,
                "invoice_date": dt.datetime(2009, 9, 6),
                "billing": {
                    "address": "1600 Amphitheatre Parkway",
                    "city": "Mountain View",
                    "state": "CA",
                    "country": "USA",
                    "postal_code": "94043-1351",
                },
                "total": bson.Decimal128("1.98"),
                "lines": [
                    {
                        "invoice_line_id": 301,
                        "track_id": 1020,
                        "track_name": "Bad Boy Boogie",
                        "unit_price": bson.Decimal128("0.99"),
                        "quantity": bson.Int64(1),
                    },
                    {
                        "invoice_line_id": 302,
                        "track_id": 1022,
                        "track_name": "Hell Ain't A Bad Place To Be",
                        "unit_price": bson.Decimal128("0.99"),
                        "quantity": 1,
                    },
                ],
            },
            {
                "invoice_id": 68,
                "invoice_date": dt.datetime(2009, 10, 17, tzinfo=UTC),
                "billing": {
                    "address": "x",
                    "city": "Mountain View",
                    "state": None,
                    "country": "USA",
                    "postal_code": None,
                },
                "total": bson.Decimal128("13.86"),
                "lines": [],
            },
        ],
    }


def digest(text: str) -> str:
    return hmac.new(KEY.encode(), text.encode(), hashlib.sha256).hexdigest()


def test_demo_mapping_exact_rows():
    mapping = compile_mapping(load_mapping(ROOT / "mappings/chinook_customers.yaml", resolve=resolve))
    batch = mapping.apply([customer()], lambda record: f"_id={record['_id']}")
    assert batch.rejects == [] and batch.filtered == 0
    address = {
        "street": "1600 Amphitheatre Parkway",
        "city": "Mountain View",
        "state": "CA",
        "country": "USA",
        "postal_code": "94043-1351",
    }
    lines = [
        {
            "invoice_line_id": 301,
            "track_id": 1020,
            "track_name": "Bad Boy Boogie",
            "unit_price": Decimal("0.99"),
            "quantity": 1,
        },
        {
            "invoice_line_id": 302,
            "track_id": 1022,
            "track_name": "Hell Ain't A Bad Place To Be",
            "unit_price": Decimal("0.99"),
            "quantity": 1,
        },
    ]
    assert batch.rows[("dynamo", "chinook_demo")].rows == [
        {
            "pk": "CUSTOMER#16",
            "sk": "PROFILE",
            "first_name": "Frank",
            "last_name": "Harris",
            "company": None,
            "country": "USA",
            "city": "Mountain View",
            "address": address,
            "email_hmac": digest("fharris@google.com"),
            "phone_masked": "*************0000",
        },
        {
            "pk": "CUSTOMER#16",
            "sk": "INVOICE#2009-09-06#57",
            "invoice_id": 57,
            "invoice_date": dt.datetime(2009, 9, 6, tzinfo=UTC),
            "billing_country": "USA",
            "total": Decimal("1.98"),
            "lines": lines,
        },
        {
            "pk": "CUSTOMER#16",
            "sk": "INVOICE#2009-10-17#68",
            "invoice_id": 68,
            "invoice_date": dt.datetime(2009, 10, 17, tzinfo=UTC),
            "billing_country": "USA",
            "total": Decimal("13.86"),
            "lines": [],
        },
    ]
    assert batch.rows[("dynamo", "chinook_demo")].source_keys == ["_id=16"] * 3
    assert batch.rows[("pg", "customers")].rows == [
        {
            "customer_id": 16,
            "first_name": "Frank",
            "last_name": "Harris",
            "company": None,
            "city": "Mountain View",
            "country": "USA",
            "email_hmac": digest("fharris@google.com"),
            "phone_masked": "*************0000",
            "address": address,
        },
    ]
    assert batch.rows[("pg", "invoices")].rows == [
        {
            "customer_id": 16,
            "invoice_id": 57,
            "invoice_date": dt.datetime(2009, 9, 6, tzinfo=UTC),
            "billing_country": "USA",
            "total": Decimal("1.98"),
        },
        {
            "customer_id": 16,
            "invoice_id": 68,
            "invoice_date": dt.datetime(2009, 10, 17, tzinfo=UTC),
            "billing_country": "USA",
            "total": Decimal("13.86"),
        },
    ]
    assert batch.rows[("pg", "invoice_lines")].rows == [
        {"invoice_id": 57, **lines[0]},
        {"invoice_id": 57, **lines[1]},
    ]
    # The raw PII is nowhere in the output.
    assert "fharris@google.com" not in repr(batch) and "253-0000" not in repr(batch)


def test_demo_mapping_tables_and_projection():
    mapping = compile_mapping(load_mapping(ROOT / "mappings/chinook_customers.yaml", resolve=resolve))
    specs = {(table.target, table.table): table for table in mapping.tables}
    assert sorted(specs) == [
        ("dynamo", "chinook_demo"),
        ("pg", "customers"),
        ("pg", "invoice_lines"),
        ("pg", "invoices"),
    ]
    dynamo = specs[("dynamo", "chinook_demo")]
    assert dynamo.key == ("pk", "sk") and dynamo.parent is None
    assert [c.name for c in dynamo.columns] == [
        "pk",
        "sk",
        "first_name",
        "last_name",
        "company",
        "country",
        "city",
        "address",
        "email_hmac",
        "phone_masked",
        "invoice_id",
        "invoice_date",
        "billing_country",
        "total",
        "lines",
    ]
    assert dynamo.column("total").type == "decimal(10,2)" and dynamo.column("email_hmac").pii == "hmac"
    invoices = specs[("pg", "invoices")]
    assert (invoices.key, invoices.parent, invoices.parent_key) == (
        ("invoice_id",),
        "customers",
        ("customer_id",),
    )
    assert [(c.name, c.type, c.nullable) for c in invoices.columns] == [
        ("customer_id", "int", False),
        ("invoice_id", "int", False),
        ("invoice_date", "timestamptz(3)", False),
        ("billing_country", "string", True),
        ("total", "decimal(10,2)", False),
    ]
    lines = specs[("pg", "invoice_lines")]
    assert (lines.key, lines.parent, lines.parent_key) == (("invoice_line_id",), "invoices", ("invoice_id",))
    assert specs[("pg", "customers")].column("phone_masked").pii == "mask"
    assert mapping.fields == [
        "_id",
        "address",
        "company",
        "email",
        "first_name",
        "invoices",
        "last_name",
        "phone",
    ]
    assert mapping.source_key == ["_id"]


def test_demo_mapping_on_the_whole_chinook_data_set():
    """The 59 customer documents built from the Chinook SQLite file, as scripts/load_demo_data.py
    builds them for MongoDB: 471 DynamoDB items, 59 + 412 + 2240 PostgreSQL rows, totals 2328.60."""
    import importlib.util
    import sqlite3

    spec = importlib.util.spec_from_file_location("load_demo_data", ROOT / "scripts/load_demo_data.py")
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)
    with sqlite3.connect(loader.DEFAULT_SQLITE) as db:
        documents = loader.build_documents(db)
    mapping = compile_mapping(load_mapping(ROOT / "mappings/chinook_customers.yaml", resolve=resolve))
    batch = mapping.apply(documents, lambda record: f"_id={record['_id']}")
    assert (len(documents), len(batch.rejects), batch.filtered) == (59, 0, 0)
    assert {table: len(rows.rows) for table, rows in batch.rows.items()} == {
        ("dynamo", "chinook_demo"): 471,
        ("pg", "customers"): 59,
        ("pg", "invoices"): 412,
        ("pg", "invoice_lines"): 2240,
    }
    assert sum(row["total"] for row in batch.rows[("pg", "invoices")].rows) == Decimal("2328.60")
    lines = batch.rows[("pg", "invoice_lines")].rows
    assert sum(row["unit_price"] * row["quantity"] for row in lines) == Decimal("2328.60")
    items = batch.rows[("dynamo", "chinook_demo")].rows
    assert len({(item["pk"], item["sk"]) for item in items}) == 471
    assert all("email" not in row and "phone" not in row for rows in batch.rows.values() for row in rows.rows)
