"""PostgreSQL column types from mapping types, and values refused rather than rounded by the target."""

import datetime as dt
import re
import uuid
from decimal import Decimal

import pytest

from etl.coltypes import parse_type
from etl.sinks.postgres_types import (
    TargetColumn,
    ValueRefused,
    adapter,
    column_adapter,
    compatible_udts,
    ddl_type,
    planned_column,
)


@pytest.mark.parametrize(
    "mapping, ddl",
    [
        ("string", "text"), ("string(40)", "varchar(40)"), ("int", "bigint"),
        ("decimal(10,2)", "numeric(10,2)"), ("decimal", "numeric"), ("float", "double precision"),
        ("bool", "boolean"), ("date", "date"),
        ("timestamp(3)", "timestamp(3)"), ("timestamptz(6)", "timestamptz(6)"), ("uuid", "uuid"),
        ("bytes", "bytea"), ("json", "jsonb"), ("list", "jsonb"), ("list(int)", "bigint[]"),
        ("set(string)", "text[]"), ("set", "jsonb"),
    ],
)
def test_ddl_types(mapping, ddl):
    assert ddl_type(parse_type(mapping)) == ddl


def test_compatibility_refuses_lossy_columns():
    assert "float4" not in compatible_udts(parse_type("float"))  # would round doubles
    assert "int4" in compatible_udts(parse_type("int"))  # out-of-range values are refused per row
    assert compatible_udts(parse_type("list(int)")) >= {"_int8", "_int4", "jsonb"}
    assert "text" not in compatible_udts(parse_type("timestamptz"))


def adapt(udt, value, **kw):
    return adapter(TargetColumn("c", udt, **kw))(value)


def test_numeric_scale_is_checked_not_rounded():
    assert adapt("numeric", Decimal("1.10"), numeric_precision=10, numeric_scale=2) == Decimal("1.10")
    assert adapt("numeric", Decimal("1.100"), numeric_precision=10, numeric_scale=2) == Decimal("1.100")
    assert adapt("numeric", 5, numeric_precision=10, numeric_scale=2) == Decimal(5)
    assert adapt("numeric", 0.5, numeric_precision=10, numeric_scale=2) == Decimal("0.5")
    with pytest.raises(ValueRefused, match="more than 2 decimal places"):
        adapt("numeric", Decimal("1.999"), numeric_precision=10, numeric_scale=2)
    with pytest.raises(ValueRefused, match="too large for numeric"):
        adapt("numeric", Decimal("123456789"), numeric_precision=10, numeric_scale=2)
    assert adapt("numeric", Decimal("12345678.99"), numeric_precision=10, numeric_scale=2)


def test_timestamps_need_the_right_awareness_and_precision():
    aware = dt.datetime(2009, 1, 1, tzinfo=dt.UTC)
    assert adapt("timestamptz", aware) == aware
    with pytest.raises(ValueRefused, match="timezone-aware"):
        adapt("timestamptz", aware.replace(tzinfo=None))
    with pytest.raises(ValueRefused, match="naive"):
        adapt("timestamp", aware)
    with pytest.raises(ValueRefused, match="would round"):
        adapt("timestamptz", aware.replace(microsecond=1500), datetime_precision=3)
    assert adapt("timestamptz", aware.replace(microsecond=2000), datetime_precision=3).microsecond == 2000


def test_scalars_are_type_checked():
    assert adapt("int4", Decimal("7")) == 7
    with pytest.raises(ValueRefused, match="out of range"):
        adapt("int4", 2**31)
    with pytest.raises(ValueRefused, match="expected an integer"):
        adapt("int8", True)
    with pytest.raises(ValueRefused, match="expected a string"):
        adapt("text", 5)
    with pytest.raises(ValueRefused, match="expected a date"):
        adapt("date", dt.datetime(2020, 1, 1))
    assert adapt("uuid", "00000000-0000-0000-0000-000000000001") == uuid.UUID(int=1)
    with pytest.raises(ValueRefused, match="exactly"):
        adapt("float8", 2**53 + 1)
    assert adapt("text", None) is None


def test_arrays_and_json():
    assert adapt("_int8", {3, 1, 2}) == [1, 2, 3]
    with pytest.raises(ValueRefused, match="expected a list"):
        adapt("_text", "abc")
    assert adapt("jsonb", {"total": Decimal("2328.60")}) == '{"total":2328.60}'
    with pytest.raises(ValueRefused, match="^NaN or Infinity has no JSON number form$") as refused:
        adapt("jsonb", {"x": float("nan")})
    assert (refused.value.path, refused.value.value_type) == ("x", "float")


def column(udt, values, **kw):
    adapted, refused = column_adapter(TargetColumn("c", udt, **kw)).column(values)
    return adapted, {index: str(problem) for index, problem in refused.items()}


def test_whole_columns_take_the_fast_path_and_find_the_odd_value_out():
    good = [Decimal("1.10"), None, Decimal("2")]
    assert column("numeric", good, numeric_precision=10, numeric_scale=2) == (good, {})
    values, refused = column("numeric", [Decimal("1.10"), Decimal("1.999"), 3, Decimal("NaN")],
                             numeric_precision=10, numeric_scale=2)
    assert values == [Decimal("1.10"), None, Decimal(3), None]
    assert refused == {1: "more than 2 decimal places; numeric(…,2) would round it",
                       3: "NaN or Infinity in a numeric column with a precision"}
    assert column("int4", [1, None, 2**31, True])[1] == {2: "integer out of range for the column",
                                                         3: "expected an integer, got bool"}
    aware = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    assert column("timestamptz", [aware, aware.replace(tzinfo=None)])[1] == {
        1: "timestamptz needs a timezone-aware datetime, got a naive one"}
    dates = [dt.date(2020, 1, 1), dt.datetime(2020, 1, 1)]
    assert column("date", dates)[1] == {1: "expected a date, got datetime"}
    assert column("text", ["a", None, 1])[1] == {2: "expected a string, got int"}
    assert column("jsonb", [{"a": Decimal("1.5")}, None, [float("inf")]]) == (
        ['{"a":1.5}', None, None], {2: "NaN or Infinity has no JSON number form"})


NUL = "PostgreSQL text cannot hold the NUL character U+0000"


def test_nul_is_refused_in_text_arrays_and_json_naming_where():
    """Both the whole-column path and the value-by-value path refuse U+0000 before PostgreSQL is asked,
    and a value inside an array or a document is named by its path inside the column."""
    for udt in ("text", "varchar", "bpchar", "citext", "name"):
        adapted, refused = column_adapter(TargetColumn("c", udt)).column(["a", None, "b\x00c", "\\u0000"])
        assert adapted == ["a", None, None, "\\u0000"]
        assert {index: (str(p), p.path) for index, p in refused.items()} == {2: (NUL, "")}
    with pytest.raises(ValueRefused, match=re.escape(NUL)) as array:
        adapt("_text", ["a", "b", "\x00"])
    assert (array.value.path, array.value.value_type) == ("[2]", "str")
    adapted, refused = column_adapter(TargetColumn("c", "jsonb")).column(
        [{"d": "x\x00"}, {"items": [1, 2, {"x": "\x00"}]}, {"k\x00": 1}, {"s": "\\u0000"}])
    assert adapted == [None, None, None, '{"s":"\\\\u0000"}']
    assert {index: (str(p), p.path, p.value_type) for index, p in refused.items()} == {
        0: (NUL, "d", "str"), 1: (NUL, "items[2].x", "str"), 2: (NUL + " (in a key)", "k\\u0000", "str")}


def test_the_fast_path_and_the_value_by_value_path_agree():
    cases = [
        ("numeric", [Decimal("1.5"), Decimal("12345678.99"), None],
         {"numeric_precision": 10, "numeric_scale": 2}),
        ("int8", [0, -(2**63), 2**63 - 1], {}),
        ("timestamptz", [dt.datetime(2020, 1, 1, 0, 0, 0, 1000, tzinfo=dt.UTC)], {"datetime_precision": 3}),
        ("float8", [0.1, None], {}),
        ("bool", [True, False, None], {}),
        ("uuid", [uuid.UUID(int=3)], {}),
    ]
    for udt, values, kw in cases:
        fast, refused = column(udt, values, **kw)
        assert refused == {}
        assert fast == [adapt(udt, value, **kw) for value in values]


@pytest.mark.parametrize("text", ["string", "string(20)", "int", "decimal", "decimal(10,2)", "float", "bool",
                                  "date", "time", "timestamp(3)", "timestamptz", "uuid", "bytes", "json",
                                  "list", "list(int)", "list(timestamp)", "set(string)"])
def test_the_planned_column_is_the_one_ddl_type_creates(text):
    """`--profile` checks values against `planned_column` before a table exists: it has the udt, scale,
    precision and time precision PostgreSQL reports for the column `ddl_type` creates."""
    column = parse_type(text)
    planned = planned_column("c", column)
    assert planned.udt in compatible_udts(column)
    ddl = ddl_type(column)
    if "numeric(" in ddl:
        precision, scale = ddl[ddl.index("(") + 1:ddl.index(")")].split(",")
        assert (planned.numeric_precision, planned.numeric_scale) == (int(precision), int(scale))
    if "timestamp" in ddl:
        assert planned.datetime_precision == (int(ddl[ddl.index("(") + 1]) if "(" in ddl else 6)
