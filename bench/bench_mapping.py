"""Compiled mapping vs a hand-written Python function doing the same transformation, same run.

Both sides map the same synthetic Chinook-shaped customer documents (profile, one invoice with
two lines, BSON decimals, naive UTC datetimes) with mappings/chinook_customers.yaml semantics:
HMAC and masking of PII, key templates, decimal(10,2) checks that refuse rounding, timestamptz,
address as a map, invoices and lines exploded to child tables. The first batch's outputs are
compared row for row before timing, so the baseline is the same work, not less.

    python bench/bench_mapping.py --records 1000000 --goal 0.6

Exits 1 when compiled/hand-written speed is below the goal.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import sys
import time
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import bson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from etl.mapping import compile_mapping, load_mapping  # noqa: E402
from etl.records import TableRows  # noqa: E402

KEY = "bench-hmac-key"
UTC = dt.UTC
CENT = Decimal("0.01")
LIMIT = Decimal(10) ** 8


def make_batch(start: int, size: int) -> list[dict]:
    """Synthetic customer documents shaped like the demo collection."""
    batch = []
    for number in range(start, start + size):
        invoice = number * 10
        batch.append(
            {
                "_id": number,
                "first_name": f"First{number}",
                "last_name": f"Last{number}",
                "company": None if number % 3 else f"Company {number}",
                "address": {
                    "street": f"{number} Main St",
                    "city": "Lyon",
                    "state": None,
                    "country": "France",
                    "postal_code": "69001",
                },
                "phone": f"+33 4 78 {number % 100:02d} {number % 97:02d} 00",
                "email": f"user{number}@example.com",
                "support_rep_id": 3,
                "invoices": [
                    {
                        "invoice_id": invoice,
                        "invoice_date": dt.datetime(2010, 1, 1) + dt.timedelta(days=number % 1000),
                        "billing": {
                            "address": "x",
                            "city": "Lyon",
                            "state": None,
                            "country": "France",
                            "postal_code": None,
                        },
                        "total": bson.Decimal128("1.98"),
                        "lines": [
                            {
                                "invoice_line_id": invoice * 2,
                                "track_id": 1,
                                "track_name": "Track A",
                                "unit_price": bson.Decimal128("0.99"),
                                "quantity": 1,
                            },
                            {
                                "invoice_line_id": invoice * 2 + 1,
                                "track_id": 2,
                                "track_name": "Track B",
                                "unit_price": bson.Decimal128("0.99"),
                                "quantity": 1,
                            },
                        ],
                    }
                ],
            }
        )
    return batch


# ---- the hand-written baseline -------------------------------------------------------------


class Rejected(Exception):
    pass


def _decimal_10_2(value) -> Decimal:
    number = value.to_decimal() if isinstance(value, bson.Decimal128) else Decimal(value)
    if not number.is_finite():
        raise Rejected("not finite")
    fitted = number.quantize(CENT, rounding=ROUND_HALF_EVEN)
    if fitted != number or abs(fitted) >= LIMIT:
        raise Rejected("does not fit decimal(10,2)")
    return fitted


def _timestamptz(value) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise Rejected("not a timestamp")
    stamp = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if stamp.microsecond % 1000:
        raise Rejected("too precise")
    return stamp


def _int(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Rejected("not an int")
    return int(value)


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, bson.Decimal128):
        return value.to_decimal()
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _text(value):
    return value if value is None or isinstance(value, str) else str(value)


def hand_written(records: list[dict], key_text, secret: bytes) -> dict:
    out = {
        ("dynamo", "chinook_demo"): TableRows(),
        ("pg", "customers"): TableRows(),
        ("pg", "invoices"): TableRows(),
        ("pg", "invoice_lines"): TableRows(),
    }
    dynamo, customers, invoices_out, lines_out = out.values()
    rejects = []
    for record in records:
        try:
            email = record.get("email")
            if email is None:
                raise Rejected("email required")
            email_hmac = hmac.new(secret, email.encode(), hashlib.sha256).hexdigest()
            phone = record.get("phone")
            phone_masked = None if phone is None else "*" * (len(phone) - len(phone[-4:])) + phone[-4:]
            customer_id = record["_id"]
            address = record.get("address")
            city = address.get("city") if isinstance(address, dict) else None
            country = address.get("country") if isinstance(address, dict) else None
            address_map = None if address is None else _plain(address)
            rows = [
                (
                    dynamo,
                    {
                        "pk": f"CUSTOMER#{customer_id}",
                        "sk": "PROFILE",
                        "first_name": _text(record.get("first_name")),
                        "last_name": _text(record.get("last_name")),
                        "company": _text(record.get("company")),
                        "country": _text(country),
                        "city": _text(city),
                        "address": address_map,
                        "email_hmac": email_hmac,
                        "phone_masked": phone_masked,
                    },
                ),
                (
                    customers,
                    {
                        "customer_id": _int(customer_id),
                        "first_name": _text(record.get("first_name")),
                        "last_name": _text(record.get("last_name")),
                        "company": _text(record.get("company")),
                        "city": _text(city),
                        "country": _text(country),
                        "email_hmac": email_hmac,
                        "phone_masked": phone_masked,
                        "address": None if address is None else _plain(address),
                    },
                ),
            ]
            for invoice in record.get("invoices") or []:
                invoice_id = _int(invoice["invoice_id"])
                date = _timestamptz(invoice["invoice_date"])
                total = _decimal_10_2(invoice["total"])
                billing = invoice.get("billing")
                billing_country = _text(billing.get("country")) if isinstance(billing, dict) else None
                lines = invoice.get("lines")
                rows.append(
                    (
                        dynamo,
                        {
                            "pk": f"CUSTOMER#{customer_id}",
                            "sk": f"INVOICE#{invoice['invoice_date']:%Y-%m-%d}#{invoice['invoice_id']}",
                            "invoice_id": invoice_id,
                            "invoice_date": date,
                            "billing_country": billing_country,
                            "total": total,
                            "lines": None if lines is None else _plain(lines),
                        },
                    )
                )
                rows.append(
                    (
                        invoices_out,
                        {
                            "customer_id": customer_id,
                            "invoice_id": invoice_id,
                            "invoice_date": date,
                            "billing_country": billing_country,
                            "total": total,
                        },
                    )
                )
                for line in lines or []:
                    rows.append(
                        (
                            lines_out,
                            {
                                "invoice_id": invoice_id,
                                "invoice_line_id": _int(line["invoice_line_id"]),
                                "track_id": _int(line["track_id"]),
                                "track_name": _text(line.get("track_name")),
                                "unit_price": _decimal_10_2(line["unit_price"]),
                                "quantity": _int(line["quantity"]),
                            },
                        )
                    )
        except (Rejected, KeyError, TypeError, AttributeError) as exc:
            rejects.append((key_text(record), str(exc)))
            continue
        source_key = key_text(record)
        for table, row in rows:
            table.rows.append(row)
            table.source_keys.append(source_key)
    return out


# ---- the run ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records mapped by each side")
    parser.add_argument(
        "--batch", type=int, default=5000, help="records per batch (as the engine reads them)"
    )
    parser.add_argument("--goal", type=float, default=0.6, help="minimum compiled/hand-written speed ratio")
    options = parser.parse_args(argv)

    mapping = compile_mapping(
        load_mapping(ROOT / "mappings/chinook_customers.yaml", resolve=lambda text, where: KEY)
    )
    secret = KEY.encode()

    def key_text(record: dict) -> str:
        return f"_id={record['_id']}"

    first = make_batch(0, min(options.batch, options.records))
    compiled_rows = mapping.apply(first, key_text).rows
    hand_rows = hand_written(first, key_text, secret)
    if {k: (v.rows, v.source_keys) for k, v in compiled_rows.items()} != {
        k: (v.rows, v.source_keys) for k, v in hand_rows.items()
    }:
        print("the two sides produce different rows; the comparison would be meaningless", file=sys.stderr)
        return 2

    compiled_seconds = hand_seconds = 0.0
    rows = 0
    done = 0
    turn = 0
    while done < options.records:
        size = min(options.batch, options.records - done)
        batch = make_batch(done, size)
        sides = [
            ("compiled", lambda b=batch: mapping.apply(b, key_text)),
            ("hand", lambda b=batch: hand_written(b, key_text, secret)),
        ]
        if turn % 2:
            sides.reverse()
        for name, run in sides:
            started = time.perf_counter()
            result = run()
            elapsed = time.perf_counter() - started
            if name == "compiled":
                compiled_seconds += elapsed
                rows += sum(len(table.rows) for table in result.rows.values())
            else:
                hand_seconds += elapsed
        done += size
        turn += 1

    compiled_rate = options.records / compiled_seconds
    hand_rate = options.records / hand_seconds
    ratio = compiled_rate / hand_rate
    print(f"{'side':<22}{'records':>12}{'rows':>12}{'seconds':>10}{'records/s':>14}")
    print(
        f"{'hand-written Python':<22}{options.records:>12,}{rows:>12,}{hand_seconds:>10.2f}"
        f"{hand_rate:>14,.0f}"
    )
    print(
        f"{'compiled mapping':<22}{options.records:>12,}{rows:>12,}{compiled_seconds:>10.2f}"
        f"{compiled_rate:>14,.0f}"
    )
    print(
        f"ratio compiled/hand-written: {ratio:.2f}x (goal >= {options.goal:.2f}x): "
        f"{'met' if ratio >= options.goal else 'MISSED'}"
    )
    return 0 if ratio >= options.goal else 1


if __name__ == "__main__":
    sys.exit(main())
