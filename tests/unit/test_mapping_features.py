"""Every feature of the mapping language, each with the exact rows it must produce."""

from __future__ import annotations

import datetime as dt
import textwrap
import uuid
from decimal import Decimal

import bson
import pytest

from etl.mapping import compile_mapping, parse_mapping
from etl.records import Reject

UTC = dt.UTC


def compiled(body: str, targets: str = "{pg: postgres}"):
    text = f"targets: {targets}\n" + textwrap.dedent(body)
    return compile_mapping(parse_mapping(text, "m.yaml", resolve=lambda text, where: "secret-key"))


def key_of(record: dict) -> str:
    return f"id={record.get('id')}"


def rows(mapping, records, table=("pg", "t")):
    batch = mapping.apply(records, key_of)
    assert batch.rejects == [], batch.rejects
    return batch.rows[table].rows


def one_column(spec: str, value, **record):
    mapping = compiled(f"""
        outputs:
          - target: pg
            table: t
            key: [id]
            columns:
              id: {{from: id, type: int}}
              v: {spec}
        """)
    return mapping.apply([{"id": 1, "v": value, **record}], key_of)


def cast_value(type_text: str, value, extra: str = ""):
    batch = one_column(f'{{from: v, type: "{type_text}"{extra}}}', value)
    assert batch.rejects == [], batch.rejects
    return batch.rows[("pg", "t")].rows[0]["v"]


def cast_reason(type_text: str, value, extra: str = "") -> tuple[str, str | None]:
    batch = one_column(f'{{from: v, type: "{type_text}"{extra}}}', value)
    assert batch.rows[("pg", "t")].rows == []
    (reject,) = batch.rejects
    return reject.reason, reject.value_type


def test_nested_paths_array_elements_and_whole_documents():
    mapping = compiled("""
        outputs:
          - target: pg
            table: t
            key: [id]
            columns:
              id: {from: id, type: int}
              city: address.city
              first_phone: phones[0].number
              last_phone: phones[-1].number
              missing_phone: phones[5].number
              address: {from: address, type: map}
              odd: "`odd key`.x"
        """)
    record = {
        "id": 1,
        "address": {"city": "Lyon", "zip": bson.Int64(69001), "geo": [Decimal("1.5")]},
        "phones": [{"number": "111"}, {"number": "222"}],
        "odd key": {"x": "y"},
    }
    assert rows(mapping, [record]) == [
        {
            "id": 1,
            "city": "Lyon",
            "first_phone": "111",
            "last_phone": "222",
            "missing_phone": None,
            "address": {"city": "Lyon", "zip": 69001, "geo": [Decimal("1.5")]},
            "odd": "y",
        }
    ]
    assert type(rows(mapping, [record])[0]["address"]["zip"]) is int


def test_string_casts():
    oid = bson.ObjectId("65a1b2c3d4e5f60718293a4b")
    assert cast_value("string", oid) == "65a1b2c3d4e5f60718293a4b"
    assert cast_value("string", 42) == "42"
    assert cast_value("string", bson.Decimal128("1.10")) == "1.10"
    assert cast_value("string", True) == "true"
    assert cast_value("string", dt.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05"
    assert cast_reason("string", {"a": 1}) == (
        "`v` as string: a dict cannot become text (use type json for documents and arrays)",
        "dict",
    )


def test_int_casts():
    assert cast_value("int", bson.Int64(7)) == 7 and type(cast_value("int", bson.Int64(7))) is int
    assert cast_value("int", "12") == 12
    assert cast_value("int", bson.Decimal128("5.00")) == 5
    assert cast_value("int", 3.0) == 3
    assert cast_reason("int", 2.5) == (
        "`v` as int: the number has a fractional part; an integer column would lose it",
        "float",
    )
    assert cast_reason("int", True)[0] == "`v` as int: a bool is not an integer (use type bool)"
    assert cast_reason("int", 2**63)[0] == "`v` as int: the integer does not fit in 64 bits"


def test_decimal_casts_never_round_silently():
    assert cast_value("decimal(10,2)", bson.Decimal128("0.99")) == Decimal("0.99")
    assert str(cast_value("decimal(10,2)", 3)) == "3.00"
    assert str(cast_value("decimal(10,2)", 1.1)) == "1.10"
    assert str(cast_value("decimal(10,2)", "12.5")) == "12.50"
    reason, value_type = cast_reason("decimal(10,2)", Decimal("1.005"))
    assert reason == (
        "`v` as decimal(10,2): the number has more than 2 decimal places; decimal(10,2) would "
        "round it (add `round: half_even` to allow rounding)"
    )
    assert value_type == "Decimal"
    assert str(cast_value("decimal(10,2)", Decimal("1.005"), ", round: half_even")) == "1.00"
    assert str(cast_value("decimal(10,2)", Decimal("1.015"), ", round: half_even")) == "1.02"
    assert cast_reason("decimal(4,2)", Decimal("100.00"))[0] == (
        "`v` as decimal(4,2): the number has more than 2 digits before the point "
        "and does not fit decimal(4,2)"
    )
    assert cast_reason("decimal(10,2)", bson.Decimal128("NaN")) == (
        "`v` as decimal(10,2): NaN and infinity cannot be stored as a decimal",
        "bson.Decimal128",
    )
    assert cast_value("decimal", bson.Decimal128("1.23456789012345678901234567890123")) == Decimal(
        "1.23456789012345678901234567890123"
    )


def test_float_bool_date_casts():
    assert cast_value("float", Decimal("2.5")) == 2.5
    assert cast_reason("float", float("nan"))[0] == (
        "`v` as float: the number is not finite (NaN or infinity, or too large for a float)"
    )
    # a signalling NaN, which float() refuses with ValueError, is rejected like any NaN
    signalling_nans = ((Decimal("sNaN"), "Decimal"), (bson.Decimal128("sNaN"), "bson.Decimal128"))
    for signalling, value_type in signalling_nans:
        assert cast_reason("float", signalling) == (
            "`v` as float: the number is not finite (NaN or infinity, or too large for a float)", value_type
        )
    assert cast_value("bool", "yes") is True and cast_value("bool", 0) is False
    assert cast_reason("bool", "maybe")[0] == "`v` as bool: the text is not one of true/false/yes/no/1/0"
    assert cast_value("date", dt.datetime(2020, 5, 17)) == dt.date(2020, 5, 17)
    assert cast_value("date", "2020-05-17") == dt.date(2020, 5, 17)
    assert cast_reason("date", dt.datetime(2020, 5, 17, 10, 30))[0].startswith(
        "`v` as date: the timestamp has a time of day"
    )


def test_timestamp_precision_and_time_zone():
    naive = dt.datetime(2024, 3, 1, 12, 0, 0, 123000)
    assert cast_value("timestamptz(3)", naive) == dt.datetime(2024, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert cast_value("timestamptz(3)", naive, ", tz: Europe/Paris") == dt.datetime(
        2024, 3, 1, 11, 0, 0, 123000, tzinfo=UTC
    )
    assert cast_value("timestamptz", "2024-03-01T12:00:00+02:00") == dt.datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert cast_value("timestamp(0)", dt.datetime(2024, 3, 1, 12, tzinfo=UTC)) == dt.datetime(2024, 3, 1, 12)
    assert cast_value("timestamptz(3)", bson.Timestamp(1700000000, 1)) == dt.datetime(
        2023, 11, 14, 22, 13, 20, tzinfo=UTC
    )
    assert cast_reason("timestamptz(0)", naive)[0] == (
        "`v` as timestamptz(0): the timestamp has more than 0 fractional digits; "
        "add `round: half_even` to allow rounding"
    )
    assert cast_value("timestamptz(1)", dt.datetime(2024, 1, 1, 0, 0, 0, 150000), ", round: half_even") == (
        dt.datetime(2024, 1, 1, 0, 0, 0, 200000, tzinfo=UTC)
    )
    assert cast_value("timestamptz(1)", dt.datetime(2024, 1, 1, 0, 0, 0, 250000), ", round: half_even") == (
        dt.datetime(2024, 1, 1, 0, 0, 0, 200000, tzinfo=UTC)
    )


@pytest.mark.parametrize(("value", "path", "value_type", "reason"), [
    ({"d": bson.Decimal128("NaN")}, "v.d", "bson.Decimal128",
     "NaN and infinity cannot be stored as a decimal"),
    ({"items": [1, 2, {"x": Decimal("-Infinity")}]}, "v.items[2].x", "Decimal",
     "NaN and infinity cannot be stored"),
    ([{"": float("nan")}], 'v[0].""', "float", "NaN and infinity cannot be stored"),
])
def test_nan_inside_a_document_rejects_the_record_naming_its_path(value, path, value_type, reason):
    """JSON has no NaN or Infinity (neither jsonb nor DynamoDB can hold one): the json cast refuses the
    record, and the reject names the member at fault, not only the column."""
    batch = one_column('{from: v, type: "json"}', value)
    (reject,) = batch.rejects
    assert (reject.field_path, reject.reason, reject.value_type) == (
        path, f"`v` as json, at {path}: {reason}", value_type)


def test_uuid_bytes_json_list_set_casts():
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert cast_value("uuid", bson.Binary(value.bytes, 4)) == value
    assert cast_value("uuid", str(value)) == value
    assert cast_value("bytes", bson.Binary(b"\x00\x01", 0)) == b"\x00\x01"
    assert type(cast_value("bytes", bson.Binary(b"\x00\x01", 0))) is bytes
    assert cast_value(
        "json",
        {
            "a": bson.Decimal128("1.5"),
            "b": [bson.ObjectId("65a1b2c3d4e5f60718293a4b")],
            "c": dt.datetime(2020, 1, 1),
        },
    ) == {"a": Decimal("1.5"), "b": ["65a1b2c3d4e5f60718293a4b"], "c": dt.datetime(2020, 1, 1, tzinfo=UTC)}
    assert cast_reason("json", {"r": bson.Regex("^a")}) == (
        "`v` as json, at v.r: a bson.Regex has no plain equivalent (see docs/types.md)",
        "bson.Regex",
    )
    assert cast_value("list", [1, "a", None]) == [1, "a", None]
    assert cast_value("list", ["1", "2"], ", items: int") == [1, 2]
    assert cast_value("set", ["b", "a", "b"]) == {"a", "b"}
    assert cast_reason("list", "abc")[0] == "`v` as list: a str is not an array"


def test_defaults_constants_required():
    mapping = compiled("""
        outputs:
          - target: pg
            table: t
            key: [id]
            columns:
              id: {from: id, type: int}
              status: {from: status, default: active}
              score: {from: score, type: "decimal(5,1)", default: 0}
              source: {const: mongo}
              version: {const: 3}
              name: {from: name, required: true}
        """)
    batch = mapping.apply(
        [
            {"id": 1, "name": "a"},
            {"id": 2, "status": None, "name": "b", "score": 2},
            {"id": 3, "name": None},
            {"id": 4},
        ],
        key_of,
    )
    assert batch.rows[("pg", "t")].rows == [
        {"id": 1, "status": "active", "score": Decimal("0.0"), "source": "mongo", "version": 3, "name": "a"},
        {"id": 2, "status": "active", "score": Decimal("2.0"), "source": "mongo", "version": 3, "name": "b"},
    ]
    assert [(r.source_key, r.field_path, r.reason, r.value_type, r.stage) for r in batch.rejects] == [
        ("id=3", "name", "required field `name` is null", None, "map"),
        ("id=4", "name", "required field `name` is missing", None, "map"),
    ]
    assert batch.rejects[1].record == {"id": 4}


def test_missing_and_null_differ_only_where_asked():
    mapping = compiled("""
        outputs:
          - target: pg
            table: t
            key: [id]
            columns:
              id: {from: id, type: int}
              fax: fax
              has_fax: {expr: "not is_null(fax)", type: bool}
        """)
    assert rows(mapping, [{"id": 1}, {"id": 2, "fax": None}, {"id": 3, "fax": "1"}]) == [
        {"id": 1, "fax": None, "has_fax": False},
        {"id": 2, "fax": None, "has_fax": False},
        {"id": 3, "fax": "1", "has_fax": True},
    ]


def test_filters_are_counted_and_output_where_skips_rows_only():
    mapping = compiled("""
        where: "status != 'deleted'"
        outputs:
          - target: pg
            table: t
            key: [id]
            columns:
              id: {from: id, type: int}
          - target: pg
            table: big
            key: [id]
            where: "amount > 100"
            columns:
              id: {from: id, type: int}
        """)
    batch = mapping.apply(
        [
            {"id": 1, "status": "ok", "amount": 5},
            {"id": 2, "status": "deleted"},
            {"id": 3, "amount": bson.Decimal128("100.01")},
        ],
        key_of,
    )
    assert batch.filtered == 1 and batch.rejects == []
    assert batch.rows[("pg", "t")].rows == [{"id": 1}, {"id": 3}]
    assert batch.rows[("pg", "big")].rows == [{"id": 3}]
    assert batch.rows[("pg", "big")].source_keys == ["id=3"]


def test_key_templates_with_format_specs():
    mapping = compiled(
        """
        outputs:
          - target: dyn
            table: t
            key: [pk, sk]
            columns:
              pk: {template: "CUSTOMER#{customer_id}"}
              sk: {template: "INVOICE#{invoice_date:%Y-%m-%d}#{invoice_id:06d}#{{x}}"}
              amount: {template: "{total:.2f}"}
        """,
        targets="{dyn: dynamodb}",
    )
    record = {
        "customer_id": 7,
        "invoice_date": dt.datetime(2021, 2, 3, 4, 5),
        "invoice_id": 42,
        "total": bson.Decimal128("3.5"),
    }
    assert rows(mapping, [record], ("dyn", "t")) == [
        {"pk": "CUSTOMER#7", "sk": "INVOICE#2021-02-03#000042#{x}", "amount": "3.50"}
    ]
    batch = mapping.apply([{"invoice_date": dt.datetime(2021, 1, 1), "invoice_id": 1, "total": 1}], key_of)
    assert [(r.field_path, r.reason) for r in batch.rejects] == [
        ("customer_id", "column `pk`: template field `customer_id` is missing")
    ]


def test_dynamodb_key_limits_are_rejects():
    mapping = compiled(
        """
        outputs:
          - target: dyn
            table: t
            key: [pk]
            columns:
              pk: {from: name}
        """,
        targets="{dyn: dynamodb}",
    )
    batch = mapping.apply(
        [{"id": 1, "name": "x" * 2049}, {"id": 2, "name": ""}, {"id": 3, "name": "ok"}], key_of
    )
    assert [(r.source_key, r.reason) for r in batch.rejects] == [
        ("id=1", "key attribute `pk` is 2049 bytes; DynamoDB allows 2048"),
        ("id=2", "key attribute `pk` is empty text; DynamoDB refuses it"),
    ]
    assert batch.rows[("dyn", "t")].rows == [{"pk": "ok"}]


NESTED = """
    outputs:
      - target: pg
        table: orders
        key: [order_id]
        columns:
          order_id: {from: id, type: int}
      - target: pg
        table: items
        explode: items[]
        parent: orders
        columns:
          sku: sku
      - target: pg
        table: parts
        explode: items[].parts[]
        parent: items
        columns:
          part: name
          sku: {from: $parent.sku}
          order_note: {from: $root.note}
    """


def test_explode_default_key_is_parent_key_plus_ordinal_and_nests():
    mapping = compiled(NESTED)
    record = {
        "id": 9,
        "note": "n",
        "items": [
            {"sku": "A", "parts": [{"name": "p1"}, {"name": "p2"}]},
            {"sku": "B"},
            {"sku": "C", "parts": [{"name": "p3"}]},
        ],
    }
    batch = mapping.apply([record], key_of)
    assert batch.rejects == []
    assert batch.rows[("pg", "orders")].rows == [{"order_id": 9}]
    assert batch.rows[("pg", "items")].rows == [
        {"order_id": 9, "ordinal": 0, "sku": "A"},
        {"order_id": 9, "ordinal": 1, "sku": "B"},
        {"order_id": 9, "ordinal": 2, "sku": "C"},
    ]
    assert batch.rows[("pg", "parts")].rows == [
        {"order_id": 9, "ordinal": 0, "parts_ordinal": 0, "part": "p1", "sku": "A", "order_note": "n"},
        {"order_id": 9, "ordinal": 0, "parts_ordinal": 1, "part": "p2", "sku": "A", "order_note": "n"},
        {"order_id": 9, "ordinal": 2, "parts_ordinal": 0, "part": "p3", "sku": "C", "order_note": "n"},
    ]
    specs = {table.table: table for table in mapping.tables}
    assert (specs["items"].key, specs["items"].parent_key) == (("order_id", "ordinal"), ("order_id",))
    assert (specs["parts"].key, specs["parts"].parent_key, specs["parts"].parent) == (
        ("order_id", "ordinal", "parts_ordinal"),
        ("order_id", "ordinal"),
        "items",
    )


def test_explode_reject_names_the_element_and_rejects_whole_record():
    mapping = compiled(NESTED.replace("part: name", "part: {from: name, required: true}"))
    batch = mapping.apply(
        [{"id": 1, "items": [{"sku": "A", "parts": [{"name": "x"}, {}]}]}, {"id": 2, "items": "oops"}], key_of
    )
    assert [(r.source_key, r.field_path, r.reason, r.value_type) for r in batch.rejects] == [
        ("id=1", "items[0].parts[1].name", "required field `name` is missing", None),
        ("id=2", "items", "`items` is exploded but is not an array", "str"),
    ]
    assert all(not table_rows.rows for table_rows in batch.rows.values())


def test_flatten_and_multiple_targets():
    mapping = compiled(
        """
        outputs:
          - target: pg
            table: t
            key: [id]
            columns:
              id: {from: id, type: int}
              addr: {flatten: address, prefix: addr_, fields: {city: string, zip: int, geo.lat: float}}
          - target: dyn
            table: d
            key: [pk]
            columns:
              pk: {template: "ID#{id}"}
              address: {from: address, type: map}
        """,
        targets="{pg: postgres, dyn: dynamodb}",
    )
    batch = mapping.apply(
        [{"id": 1, "address": {"city": "Oslo", "zip": "150", "geo": {"lat": 59.9}}}], key_of
    )
    assert batch.rows[("pg", "t")].rows == [
        {"id": 1, "addr_city": "Oslo", "addr_zip": 150, "addr_geo_lat": 59.9}
    ]
    assert batch.rows[("dyn", "d")].rows == [
        {"pk": "ID#1", "address": {"city": "Oslo", "zip": "150", "geo": {"lat": 59.9}}}
    ]


def test_computed_fields():
    mapping = compiled("""
        outputs:
          - target: pg
            table: t
            key: [id]
            columns:
              id: {from: id, type: int}
              full_name: {expr: "first + ' ' + upper(last)"}
              line_total: {expr: "price * qty", type: "decimal(10,2)"}
              band: {expr: "if qty >= 10 then 'bulk' else 'single'"}
              year: {expr: "year(born)", type: int}
              tags: {expr: "split(tag_text, ',')", type: list}
        """)
    record = {
        "id": 1,
        "first": "Ada",
        "last": "Lovelace",
        "price": bson.Decimal128("0.99"),
        "qty": 12,
        "born": dt.datetime(1815, 12, 10),
        "tag_text": "a,b",
    }
    assert rows(mapping, [record]) == [
        {
            "id": 1,
            "full_name": "Ada LOVELACE",
            "line_total": Decimal("11.88"),
            "band": "bulk",
            "year": 1815,
            "tags": ["a", "b"],
        }
    ]
    batch = mapping.apply([{**record, "first": 5}], key_of)
    assert [(r.field_path, r.reason, r.value_type) for r in batch.rejects] == [
        (
            "full_name",
            "column `full_name`: cannot add a int and a str (use concat() or str() to join text)",
            "int",
        )
    ]


def test_pii_transforms_never_leak_raw_values():
    mapping = compiled("""
        pii:
          email: {hmac: "${secret:pii_key}"}
          phone: {mask: 2}
          ssn: redact
          birth_date: year
          notes: drop
          contacts[].email: {hmac: {key: "${secret:pii_key}"}}
        outputs:
          - target: pg
            table: t
            key: [id]
            columns:
              id: {from: id, type: int}
              email: email
              phone: phone
              ssn: ssn
              birth_year: {from: birth_date, type: int}
              notes: notes
              contacts: {from: contacts, type: json}
              total: {from: total, type: "decimal(4,2)"}
        """)
    import hashlib
    import hmac

    def mac(text):
        return hmac.new(b"secret-key", text.encode(), hashlib.sha256).hexdigest()

    record = {
        "id": 1,
        "email": "a@b.c",
        "phone": "5551234",
        "ssn": "123-45-6789",
        "birth_date": dt.datetime(1980, 7, 1),
        "notes": "private",
        "contacts": [{"email": "x@y.z"}],
        "total": "1",
    }
    assert rows(mapping, [record]) == [
        {
            "id": 1,
            "email": mac("a@b.c"),
            "phone": "*****34",
            "ssn": "[REDACTED]",
            "birth_year": 1980,
            "notes": None,
            "contacts": [{"email": mac("x@y.z")}],
            "total": Decimal("1.00"),
        }
    ]
    assert record["email"] == "a@b.c"  # the caller's record is not changed
    batch = mapping.apply([{**record, "total": "123.456"}], key_of)
    (reject,) = batch.rejects
    assert reject.record == {
        "id": 1,
        "email": mac("a@b.c"),
        "phone": "*****34",
        "ssn": "[REDACTED]",
        "birth_date": 1980,
        "contacts": [{"email": mac("x@y.z")}],
        "total": "123.456",
    }
    for raw in ("a@b.c", "5551234", "123-45-6789", "private", "x@y.z", "1980-07-01"):
        assert raw not in repr(batch) and raw not in repr(mapping.preview([record]))
    assert "secret-key" not in repr(mapping.spec)


def test_pii_failure_rejects_with_field_dropped():
    mapping = compiled("""
        pii:
          birth_date: year
        outputs:
          - target: pg
            table: t
            key: [id]
            columns:
              id: {from: id, type: int}
        """)
    batch = mapping.apply([{"id": 1, "birth_date": "not a date"}], key_of)
    assert batch.rejects == [
        Reject(
            "",
            "id=1",
            "pii `year` cannot apply: year-only needs a date, a timestamp or ISO date text",
            "map",
            "birth_date",
            "str",
            {"id": 1},
        )
    ]


def test_map_from_several_columns_and_rest():
    mapping = compiled(
        """
        outputs:
          - target: dyn
            table: t
            key: [pk]
            columns:
              pk: {template: "{last},{first}"}
              contact: {map: {home: {phone: home_phone, street: home_street}, work: {phone: work_phone},
                              since: {from: since, type: int}}}
              _doc: {rest: true, exclude: [secret]}
        """,
        targets="{dyn: dynamodb}",
    )
    record = {
        "first": "Ann",
        "last": "Lee",
        "home_phone": "1",
        "home_street": "Main",
        "work_phone": "2",
        "since": "2001",
        "secret": "s",
        "age": bson.Int64(40),
        "city": "Rome",
    }
    assert rows(mapping, [record], ("dyn", "t")) == [
        {
            "pk": "Lee,Ann",
            "contact": {"home": {"phone": "1", "street": "Main"}, "work": {"phone": "2"}, "since": 2001},
            "_doc": {"age": 40, "city": "Rome"},
        }
    ]
    assert mapping.fields is None


def test_every_record_is_mapped_filtered_or_rejected_once():
    mapping = compiled("""
        where: "kind != 'skip'"
        outputs:
          - target: pg
            table: t
            key: [id]
            columns:
              id: {from: id, type: int}
              n: {from: n, type: int}
        """)
    records = [{"id": 1, "n": 1}, {"id": 2, "kind": "skip"}, {"id": 3, "n": "x"}, {"id": 4, "n": 4}]
    batch = mapping.apply(records, key_of)
    assert (len(batch.rows[("pg", "t")].rows), batch.filtered, len(batch.rejects)) == (2, 1, 1)
    assert batch.rejects[0].field_path == "n" and batch.rejects[0].value_type == "str"


def test_preview_shows_safe_record_beside_rows():
    mapping = compiled("""
        pii: {email: {mask: 3}}
        outputs:
          - target: pg
            table: t
            key: [id]
            columns:
              id: {from: id, type: int}
              email: email
        """)
    (preview,) = mapping.preview([{"id": 1, "email": "abcdef"}], key_of)
    assert preview.record == {"id": 1, "email": "***def"}
    assert preview.rows == {("pg", "t"): [{"id": 1, "email": "***def"}]}
    assert preview.rejects == [] and preview.filtered is False


@pytest.mark.parametrize("value", [None, [], {}, "x", 0])
def test_odd_explode_values(value):
    mapping = compiled(NESTED)
    batch = mapping.apply([{"id": 1, "items": value}], key_of)
    assert len(batch.rows[("pg", "orders")].rows) + len(batch.rejects) == 1


def test_safe_record_never_raises_and_drops_what_cannot_be_protected():
    mapping = compiled("""
        pii: {birth_date: year, email: {mask: 2}}
        outputs:
          - target: pg
            table: t
            key: [id]
            columns:
              id: {from: id, type: int}
        """)
    assert mapping.safe_record({"id": 1, "birth_date": "soon", "email": "abcd"}) == {"id": 1, "email": "**cd"}
