"""Load the demo collection `chinook.customers` into MongoDB from the Chinook SQLite file.

One document per customer with its invoices embedded and each invoice's lines embedded in it
(docs/demo.md describes the shape). Re-running replaces the collection, so the demo always
starts from the same 59 documents / 412 invoices / 2,240 lines.

    python scripts/load_demo_data.py [--uri URI] [--database chinook] [--sqlite PATH]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pymongo
from bson.decimal128 import Decimal128

ROOT = Path(__file__).resolve().parent.parent
# The shared test data lives beside the project (../shared/data) unless ETL_SHARED_DATA says otherwise.
SHARED_DATA = Path(os.environ.get("ETL_SHARED_DATA", ROOT.parent / "shared" / "data"))
DEFAULT_SQLITE = SHARED_DATA / "chinook" / "Chinook_Sqlite.sqlite"
CENT = Decimal("0.01")


def money(value: float) -> Decimal128:
    """SQLite stores NUMERIC(10,2) as a double; its shortest repr is the exact cents value."""
    exact = Decimal(repr(value))
    cents = exact.quantize(CENT)
    if cents != exact:
        raise ValueError(f"{value!r} is not a whole number of cents")
    return Decimal128(cents)


def timestamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def build_documents(db: sqlite3.Connection) -> list[dict]:
    db.row_factory = sqlite3.Row
    track_names = {row["TrackId"]: row["Name"] for row in db.execute("SELECT TrackId, Name FROM Track")}
    lines_by_invoice: dict[int, list[dict]] = {}
    for row in db.execute("SELECT * FROM InvoiceLine ORDER BY InvoiceLineId"):
        lines_by_invoice.setdefault(row["InvoiceId"], []).append(
            {
                "invoice_line_id": row["InvoiceLineId"],
                "track_id": row["TrackId"],
                "track_name": track_names[row["TrackId"]],
                "unit_price": money(row["UnitPrice"]),
                "quantity": row["Quantity"],
            }
        )
    invoices_by_customer: dict[int, list[dict]] = {}
    for row in db.execute("SELECT * FROM Invoice ORDER BY InvoiceId"):
        invoices_by_customer.setdefault(row["CustomerId"], []).append(
            {
                "invoice_id": row["InvoiceId"],
                "invoice_date": timestamp(row["InvoiceDate"]),
                "billing": {
                    "address": row["BillingAddress"],
                    "city": row["BillingCity"],
                    "state": row["BillingState"],
                    "country": row["BillingCountry"],
                    "postal_code": row["BillingPostalCode"],
                },
                "total": money(row["Total"]),
                "lines": lines_by_invoice.get(row["InvoiceId"], []),
            }
        )
    documents = []
    for row in db.execute("SELECT * FROM Customer ORDER BY CustomerId"):
        document = {
            "_id": row["CustomerId"],
            "first_name": row["FirstName"],
            "last_name": row["LastName"],
            "company": row["Company"],  # present with null when there is none
            "address": {
                "street": row["Address"],
                "city": row["City"],
                "state": row["State"],
                "country": row["Country"],
                "postal_code": row["PostalCode"],
            },
            "phone": row["Phone"],
            "email": row["Email"],
            "support_rep_id": row["SupportRepId"],
            "invoices": invoices_by_customer.get(row["CustomerId"], []),
        }
        if row["Fax"] is not None:  # absent, not null: the demo keeps missing and null apart
            document["fax"] = row["Fax"]
        documents.append(document)
    return documents


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    port = os.environ.get("ETL_MONGO_PORT", "27017")
    parser.add_argument("--uri", default=os.environ.get(
        "ETL_MONGO_URI", f"mongodb://127.0.0.1:{port}/?directConnection=true"))
    parser.add_argument("--database", default="chinook")
    parser.add_argument("--collection", default="customers")
    parser.add_argument("--sqlite", type=Path, default=DEFAULT_SQLITE)
    args = parser.parse_args(argv)

    with sqlite3.connect(f"file:{args.sqlite}?mode=ro", uri=True) as db:
        documents = build_documents(db)
    client = pymongo.MongoClient(args.uri, serverSelectionTimeoutMS=10_000)
    try:
        collection = client[args.database][args.collection]
        collection.drop()
        collection.insert_many(documents)
        invoices = sum(len(d["invoices"]) for d in documents)
        lines = sum(len(i["lines"]) for d in documents for i in d["invoices"])
        print(f"loaded {len(documents)} customers, {invoices} invoices, {lines} invoice lines "
              f"into {args.database}.{args.collection}")
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
