"""Column-wise mapping (flat outputs, and outputs exploding one array of the record): the same rows,
source keys and rejects as mapping record by record, and every value that does not fit its column
still rejected, with the same reason."""

from __future__ import annotations

import datetime as dt
import textwrap
import uuid
from decimal import Decimal

from bson.tz_util import utc as bson_utc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.mapping import compile_mapping, parse_mapping

FLAT = textwrap.dedent("""\
    source: {key: [id]}
    targets: {pg: postgres, d: dynamodb}
    outputs:
      - target: pg
        table: wide
        key: [id]
        columns:
          id: {from: id, type: int}
          n: {from: n, type: int}
          amount: {from: amount, type: "decimal(12,2)"}
          rounded: {from: amount, type: "decimal(5,1)", round: half_even}
          exact: {from: amount, type: decimal}
          name: name
          score: {from: score, type: float}
          active: {from: active, type: bool}
          born: {from: born, type: date}
          admitted: {from: admitted, type: timestamp(6)}
          recorded: {from: recorded, type: timestamptz(3)}
          paris: {from: admitted, type: timestamptz(6), tz: Europe/Paris}
          needed: {from: n, type: int, required: true}
          fallback: {from: name, default: none}
          token: {from: token, type: uuid}
          raw: {from: raw, type: bytes}
          doc: {from: doc, type: json}
          seven: {const: 7}
      - target: d
        table: items
        key: [pk]
        columns:
          pk: {from: name}
          amount: {from: amount, type: "decimal(12,2)"}
    """)
MAPPING = compile_mapping(parse_mapping(FLAT, "flat.yaml"))


def key_text(record: dict) -> str:
    return f"id={record.get('id')!r}"


def exact(batch) -> tuple:
    """Everything a batch says, with the exact form of each value (Decimal('1.50') is not Decimal('1.5'))."""
    rows = {table: ([[(name, type(value), repr(value)) for name, value in row.items()] for row in rows.rows],
                    rows.source_keys)
            for table, rows in batch.rows.items()}
    rejects = [(r.table, r.source_key, r.reason, r.stage, r.field_path, r.value_type, repr(r.record))
               for r in batch.rejects]
    return rows, rejects, batch.filtered


UTC_TIMES = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1),
                         timezones=st.just(dt.UTC))
ANY = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(),
                st.text(max_size=5), st.decimals(allow_nan=True), st.datetimes(), UTC_TIMES, st.dates(),
                st.uuids(), st.binary(max_size=4))


def field(good: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly values of the column's own type (so whole columns take the bulk cast), sometimes anything
    (one in four: `one_of` would flatten ANY's branches and pick `good` one time in twelve)."""
    return st.integers(min_value=0, max_value=3).flatmap(lambda pick: ANY if pick == 0 else good)


RECORD = st.fixed_dictionaries(
    {"id": field(st.integers(min_value=-(2**63), max_value=2**63 - 1))},
    optional={
        "n": field(st.integers(min_value=-(2**64), max_value=2**64)),
        "amount": field(st.decimals(min_value=-(10**11), max_value=10**11, places=2)
                        | st.decimals(allow_nan=False, allow_infinity=True, places=3)),
        "name": field(st.text(max_size=8)),
        "score": field(st.floats(allow_nan=True, allow_infinity=True)),
        "active": field(st.booleans()),
        "born": field(st.dates()),
        "admitted": field(st.datetimes(min_value=dt.datetime(1900, 1, 1))),
        "recorded": field(UTC_TIMES | st.datetimes(min_value=dt.datetime(1900, 1, 1))),
        "token": field(st.uuids()),
        "raw": field(st.binary(max_size=4)),
        "doc": field(st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)),
    },
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(RECORD, max_size=12))
def test_column_wise_is_exactly_record_by_record(records):
    assert_both_ways_alike(MAPPING, records)


def assert_both_ways_alike(mapping, records: list[dict]) -> None:
    assert mapping.by_column
    assert exact(mapping.apply(records, key_text, source_table="t")) == exact(
        mapping.apply_by_record(records, key_text, source_table="t"))


def good(number: int, **changes) -> dict:
    record = {
        "id": number, "n": number, "amount": Decimal("12.34"), "name": f"p{number}", "score": 0.5,
        "active": True, "born": dt.date(1950, 1, 2), "admitted": dt.datetime(2020, 1, 1, 0, 0, 1),
        "recorded": dt.datetime(2020, 1, 1, 0, 1, tzinfo=dt.UTC), "token": uuid.UUID(int=number),
        "raw": b"x", "doc": {"a": 1},
    }
    return record | changes


def test_values_that_do_not_fit_are_rejected_and_the_rest_mapped():
    records = [
        good(1),
        good(2, amount=Decimal("1.005")),  # a third decimal place: decimal(12,2) would round it
        good(3, amount=Decimal("1E10")),  # 11 digits before the point
        good(4, amount=Decimal("1.5")),  # fits: becomes exactly 1.50
        good(5, n=2**63),  # beyond 64 bits
        good(6, recorded=dt.datetime(2020, 1, 1, 0, 1, 0, 123456, tzinfo=dt.UTC)),  # > timestamptz(3)
        good(7, score=float("nan")),
        good(8, n=None),  # required
        {key: value for key, value in good(9).items() if key != "n"},  # required and missing
        good(10, active=1),  # converted by the per-value cast: 1 is true
    ]
    batch = MAPPING.apply(records, key_text, source_table="wide")
    assert exact(batch) == exact(MAPPING.apply_by_record(records, key_text, source_table="wide"))
    rows = batch.rows[("pg", "wide")]
    assert [row["id"] for row in rows.rows] == [1, 4, 10] and rows.source_keys == ["id=1", "id=4", "id=10"]
    assert str(rows.rows[1]["amount"]) == "1.50" and str(rows.rows[1]["rounded"]) == "1.5"
    assert str(rows.rows[1]["exact"]) == "1.5" and rows.rows[2]["active"] is True
    assert rows.rows[0]["paris"] == dt.datetime(2019, 12, 31, 23, 0, 1, tzinfo=dt.UTC)
    assert rows.rows[0]["seven"] == 7 and rows.rows[0]["fallback"] == "p1"
    assert [(r.source_key, r.field_path, r.reason) for r in batch.rejects] == [
        ("id=2", "amount", "`amount` as decimal(12,2): the number has more than 2 decimal places; "
                           "decimal(12,2) would round it (add `round: half_even` to allow rounding)"),
        ("id=3", "amount", "`amount` as decimal(12,2): the number has more than 10 digits before the point "
                           "and does not fit decimal(12,2)"),
        ("id=5", "n", "`n` as int: the integer does not fit in 64 bits"),
        ("id=6", "recorded", "`recorded` as timestamptz(3): the timestamp has more than 3 fractional digits; "
                             "add `round: half_even` to allow rounding"),
        ("id=7", "score",
         "`score` as float: the number is not finite (NaN or infinity, or too large for a float)"),
        ("id=8", "n", "required field `n` is null"),
        ("id=9", "n", "required field `n` is missing"),
    ]
    assert [r.value_type for r in batch.rejects] == ["Decimal", "Decimal", "int", "datetime", "float",
                                                     None, None]


def test_a_null_key_and_an_oversized_dynamodb_key_are_rejected():
    records = [good(1), good(2, id=None), good(3, name="k" * 2049)]
    batch = MAPPING.apply(records, key_text, source_table="wide")
    assert exact(batch) == exact(MAPPING.apply_by_record(records, key_text, source_table="wide"))
    assert [row["id"] for row in batch.rows[("pg", "wide")].rows] == [1]
    assert [(r.source_key, r.reason) for r in batch.rejects] == [
        ("id=None", "key column `id` is null"),
        ("id=3", "key attribute `pk` is 2049 bytes; DynamoDB allows 2048"),
    ]


def test_naive_and_aware_timestamps_become_what_the_column_holds():
    aware = dt.datetime(2020, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC)
    batch = MAPPING.apply([good(1, admitted=aware.replace(tzinfo=None), recorded=aware.replace(tzinfo=None))],
                          key_text)
    row = batch.rows[("pg", "wide")].rows[0]
    assert repr(row["admitted"]) == repr(aware.replace(tzinfo=None)) and repr(row["recorded"]) == repr(aware)
    batch = MAPPING.apply([good(1, admitted=aware, recorded=aware)], key_text)
    row = batch.rows[("pg", "wide")].rows[0]
    assert repr(row["admitted"]) == repr(aware.replace(tzinfo=None)) and repr(row["recorded"]) == repr(aware)


def test_mappings_that_are_not_flat_map_record_by_record():
    def mapping(extra: str, columns: str = "id: {from: id, type: int}") -> bool:
        text = f"targets: {{pg: postgres}}\n{extra}\noutputs:\n  - {{target: pg, table: t, key: [id], " \
               f"columns: {{{columns}}}}}\n"
        return compile_mapping(parse_mapping(text, "m.yaml")).by_column

    assert mapping("") and mapping("", "id: {from: id, type: int}, c: {const: 1}")
    assert not mapping("where: id > 1")
    assert not mapping("pii: {id: redact}")
    assert mapping("", "id: {from: id, type: int}, x: a.b")
    assert not mapping("", "id: {from: id, type: int}, x: 'a[0]'")
    # columns that are not paths are made row by row with the row path's functions, the rest in bulk
    assert mapping("", "id: {from: id, type: int}, x: {template: 'x{id}'}")
    assert mapping("", "id: {from: id, type: int}, x: {expr: 'id + 1'}")


NESTED = compile_mapping(parse_mapping(textwrap.dedent("""\
    source: {key: [id]}
    targets: {pg: postgres, d: dynamodb}
    outputs:
      - target: pg
        table: customers
        key: [customer_id]
        columns:
          customer_id: {from: id, type: int}
          city: address.city
          zip: {from: address.zip, type: int}
          created: {from: created, type: timestamptz(3), required: true}
          balance: {from: balance, type: "decimal(12,2)"}
      - target: pg
        table: orders
        explode: orders[]
        parent: customers
        key: [order_id]
        columns:
          order_id: {from: order_id, type: int}
          amount: {from: amount, type: "decimal(12,2)", required: true}
          status: status
          home: $root.address.city
          note: meta.note
      - target: pg
        table: tags
        explode: tags[]
        parent: customers
        columns: {tag: name}
      - target: d
        table: lines
        explode: orders[]
        key: [pk]
        columns:
          pk: {from: status}
          quantity: {from: quantity, type: int}
    """), "nested.yaml"))
INTEGER = st.integers(min_value=-(2**63), max_value=2**63 - 1)
BSON_UTC_TIMES = UTC_TIMES.map(lambda time: time.replace(tzinfo=bson_utc))
"""As pymongo decodes a BSON date: in its own UTC zone (`bson.tz_util.utc`), not `datetime.UTC`."""
TEXT = st.text(max_size=6)
DECIMAL = st.decimals(min_value=-(10**9), max_value=10**9, places=2)
ORDER = field(st.fixed_dictionaries({
    "order_id": field(INTEGER), "amount": field(DECIMAL), "status": field(st.text(min_size=1, max_size=6)),
}, optional={
    "quantity": field(INTEGER),
    "meta": field(st.fixed_dictionaries({}, optional={"note": field(TEXT)})),
}))
ADDRESS = st.fixed_dictionaries({}, optional={"city": field(TEXT), "zip": field(INTEGER)})
TAG = st.fixed_dictionaries({"name": field(TEXT)})
# Mostly records the mapping takes, so that many batches hold rows of several records and elements.
NESTED_RECORD = st.fixed_dictionaries({
    "id": field(INTEGER),
    "created": field(st.one_of(UTC_TIMES, BSON_UTC_TIMES).map(
        lambda time: time.replace(microsecond=time.microsecond // 1000 * 1000))),
    "orders": field(st.lists(ORDER, max_size=4)),
    "tags": field(st.lists(field(TAG), max_size=3)),
}, optional={"address": field(ADDRESS), "balance": field(DECIMAL)})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(NESTED_RECORD, max_size=10))
def test_exploded_outputs_column_wise_are_exactly_record_by_record(records):
    assert_both_ways_alike(NESTED, records)


def customer(number: int, **changes) -> dict:
    record = {"id": number, "address": {"city": f"c{number}", "zip": number},
              "created": dt.datetime(2020, 1, number, tzinfo=dt.UTC), "balance": Decimal("1.50"),
              "orders": [{"order_id": 10 * number + i, "amount": Decimal(i), "status": f"s{i}", "quantity": i,
                          "meta": {"note": f"n{i}"}} for i in range(2)],
              "tags": [{"name": "a"}, "not a document"]}
    return record | changes


def test_child_rows_carry_the_parent_key_and_a_record_failing_anywhere_is_rejected_whole():
    bad_amount = customer(3)
    bad_amount["orders"][1]["amount"] = "x"
    records = [customer(1), customer(2, orders="not an array"), bad_amount, customer(4, orders=None)]
    batch = NESTED.apply(records, key_text, source_table="customers")
    assert exact(batch) == exact(NESTED.apply_by_record(records, key_text, source_table="customers"))
    assert [row["customer_id"] for row in batch.rows[("pg", "customers")].rows] == [1, 4]
    assert batch.rows[("pg", "orders")].rows == [
        {"customer_id": 1, "order_id": 10 + i, "amount": Decimal(f"{i}.00"), "status": f"s{i}", "home": "c1",
         "note": f"n{i}"} for i in range(2)]
    assert batch.rows[("pg", "orders")].source_keys == ["id=1", "id=1"]
    assert batch.rows[("pg", "tags")].rows == [{"customer_id": 1, "ordinal": 0, "tag": "a"},
                                               {"customer_id": 1, "ordinal": 1, "tag": None},
                                               {"customer_id": 4, "ordinal": 0, "tag": "a"},
                                               {"customer_id": 4, "ordinal": 1, "tag": None}]
    assert [(r.source_key, r.field_path, r.reason) for r in batch.rejects] == [
        ("id=2", "orders", "`orders` is exploded but is not an array"),
        ("id=3", "orders[1].amount", "`amount` as decimal(12,2): the text is not a number"),
    ]


def test_a_child_of_an_exploded_parent_maps_record_by_record():
    text = textwrap.dedent("""\
        source: {key: [id]}
        targets: {pg: postgres}
        outputs:
          - {target: pg, table: c, key: [id], columns: {id: {from: id, type: int}}}
          - {target: pg, table: o, explode: "o[]", parent: c, columns: {n: n}}
          - {target: pg, table: i, explode: "o[].i[]", parent: o, columns: {m: m}}
        """)
    assert not compile_mapping(parse_mapping(text, "m.yaml")).by_column


SINGLE_TABLE = compile_mapping(parse_mapping(textwrap.dedent("""\
    source: {key: [id]}
    targets: {d: dynamodb}
    outputs:
      - target: d
        table: shop
        key: [pk, sk]
        columns:
          pk: {template: "CUSTOMER#{id}"}
          sk: {const: PROFILE}
          city: address.city
          created: {from: created, type: timestamptz(3), required: true}
          balance: {from: balance, type: "decimal(12,2)"}
          next: {expr: "id + 1", type: int}
          home: {map: {town: address.city, code: address.zip}}
          other: {rest: true, exclude: [orders]}
      - target: d
        table: shop
        explode: orders[]
        key: [pk, sk]
        columns:
          pk: {template: "CUSTOMER#{$root.id}"}
          sk: {template: "ORDER#{order_id}"}
          order_id: {from: order_id, type: int}
          amount: {from: amount, type: "decimal(12,2)", required: true}
          status: status
      - target: d
        table: tags
        explode: tags[]
        key: [name]
        columns: {name: name}
    """), "single-table.yaml"))
"""A DynamoDB single-table design: two outputs, one made from each record and one from each of its
orders, write one table, with templates, a constant, an expression, a map and the remaining fields."""


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(NESTED_RECORD, max_size=10))
def test_outputs_sharing_a_table_column_wise_are_exactly_record_by_record(records):
    assert_both_ways_alike(SINGLE_TABLE, records)


def test_a_shared_table_holds_each_records_rows_in_the_row_paths_order():
    bad_amount = customer(2)
    bad_amount["orders"][0]["amount"] = "x"
    records = [customer(1, tags=[]), bad_amount | {"tags": []}, customer(3, orders=[], tags=[])]
    batch = SINGLE_TABLE.apply(records, key_text, source_table="customers")
    assert exact(batch) == exact(SINGLE_TABLE.apply_by_record(records, key_text, source_table="customers"))
    shop = batch.rows[("d", "shop")]
    assert [(row["pk"], row["sk"]) for row in shop.rows] == [
        ("CUSTOMER#1", "PROFILE"), ("CUSTOMER#1", "ORDER#10"), ("CUSTOMER#1", "ORDER#11"),
        ("CUSTOMER#3", "PROFILE")]
    assert shop.rows[0] == {"pk": "CUSTOMER#1", "sk": "PROFILE", "city": "c1",
                            "created": dt.datetime(2020, 1, 1, tzinfo=dt.UTC), "balance": Decimal("1.50"),
                            "next": 2, "home": {"town": "c1", "code": 1}, "other": {"tags": []}}
    assert shop.rows[2] == {"pk": "CUSTOMER#1", "sk": "ORDER#11", "order_id": 11, "amount": Decimal("1.00"),
                            "status": "s1"}
    assert shop.source_keys == ["id=1", "id=1", "id=1", "id=3"]
    assert [(r.source_key, r.field_path, r.reason) for r in batch.rejects] == [
        ("id=2", "orders[0].amount", "`amount` as decimal(12,2): the text is not a number")]


def test_a_mapping_with_a_shared_table_and_a_child_table_maps_record_by_record():
    text = textwrap.dedent("""\
        source: {key: [id]}
        targets: {pg: postgres, d: dynamodb}
        outputs:
          - {target: d, table: s, key: [pk], columns: {pk: {template: "C#{id}"}}}
          - {target: d, table: s, key: [pk], explode: "o[]", columns: {pk: {template: "O#{n}"}}}
          - {target: pg, table: c, key: [id], columns: {id: {from: id, type: int}}}
          - {target: pg, table: o, explode: "o[]", parent: c, columns: {n: n}}
        """)
    assert not compile_mapping(parse_mapping(text, "m.yaml")).by_column
    assert compile_mapping(parse_mapping(text.split("  - {target: pg")[0], "m.yaml")).by_column
