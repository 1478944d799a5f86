"""Lossless JSON text: Decimals keep every digit; what JSON cannot hold is refused or kept as text."""

import datetime as dt
import json
import uuid
from decimal import Decimal

import pytest

from etl.sinks.jsontext import JsonRefused, dumps, loads, stored


def test_decimals_keep_every_digit_as_numbers():
    text = dumps({"a": Decimal("12345678901234567890.123456789"), "b": [1, 2.5, None, True]})
    assert text == '{"a":12345678901234567890.123456789,"b":[1,2.5,null,true]}'
    assert json.loads(text, parse_float=Decimal)["a"] == Decimal("12345678901234567890.123456789")


def test_dead_letter_form_keeps_exact_text():
    value = {
        "d": Decimal("1.10"), "nan": float("nan"), "b": b"\x00\xff",
        "t": dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "u": uuid.UUID(int=1), "s": {"y", "x"}, "day": dt.date(2020, 1, 2),
    }
    assert json.loads(dumps(value, decimals_as_strings=True)) == {
        "d": "1.10", "nan": "nan", "b": "AP8=", "t": "2020-01-02T03:04:05+00:00",
        "u": "00000000-0000-0000-0000-000000000001", "s": ["x", "y"], "day": "2020-01-02",
    }


@pytest.mark.parametrize("value", [float("nan"), float("inf"), Decimal("NaN"), object()])
def test_refuses_what_json_cannot_hold(value):
    with pytest.raises(ValueError):
        dumps({"x": value})


def test_bytes_are_tagged_and_read_back_as_bytes_the_empty_ones_included():
    text = dumps({"b": b"\x00\xff", "e": b"", "l": [b"a"]})
    assert text == ('{"b":{"$binary":{"base64":"AP8=","subType":"00"}},'
                    '"e":{"$binary":{"base64":"","subType":"00"}},'
                    '"l":[{"$binary":{"base64":"YQ==","subType":"00"}}]}')
    assert loads(text, binary=True) == {"b": b"\x00\xff", "e": b"", "l": [b"a"]}
    # without `binary` (a source reading jsonb) the tags stay as they are
    assert loads(text)["e"] == {"$binary": {"base64": "", "subType": "00"}}
    # other subtypes (a MongoDB MD5, kept as Extended JSON by the sources) are not bytes
    md5 = {"$binary": {"base64": "AAAA", "subType": "05"}}
    assert loads(dumps(md5), binary=True) == md5


def test_what_jsonb_reads_back_is_stored_of_the_value():
    value = {"t": dt.datetime(1970, 1, 1, tzinfo=dt.UTC), "u": uuid.UUID(int=1), "d": dt.date(2020, 1, 2),
             "n": Decimal("1E+6144"), "f": 1.5, "s": {"b", "a"}, "b": b""}
    assert stored(value) == {"t": "1970-01-01T00:00:00+00:00", "u": "00000000-0000-0000-0000-000000000001",
                             "d": "2020-01-02", "n": Decimal("1E+6144"), "f": Decimal("1.5"), "s": ["a", "b"],
                             "b": b""}


def test_integers_longer_than_python_reads_are_decimals_never_a_crash():
    digits = "1" + "0" * 6144  # how PostgreSQL prints the jsonb number 1E+6144
    value = loads('{"n":' + digits + ',"small":12}')
    assert value == {"n": Decimal("1E+6144"), "small": 12}
    assert type(value["small"]) is int
    assert loads("-" + "9" * 5000) == Decimal("-" + "9" * 5000)
    with pytest.raises(json.JSONDecodeError):
        loads('{"n": ' + digits)


@pytest.mark.parametrize(("value", "path", "reason"), [
    ({"d": "a\x00"}, "d", "PostgreSQL text cannot hold the NUL character U+0000"),
    ({"items": [1, 2, {"x": "\x00"}]}, "items[2].x", "PostgreSQL text cannot hold the NUL character U+0000"),
    ({"k\x00": 1}, "k\\u0000", "PostgreSQL text cannot hold the NUL character U+0000 (in a key)"),
    ({"": {"x": Decimal("NaN")}}, '"".x', "NaN or Infinity has no JSON number form"),
    ({"a.b": [float("-inf")]}, "a.b[0]", "NaN or Infinity has no JSON number form"),
])
def test_refusals_name_the_path_and_the_cause(value, path, reason):
    with pytest.raises(JsonRefused) as refused:
        dumps(value)
    problem = refused.value
    assert (problem.field_path, problem.reason, str(problem)) == (path, reason, f"{path}: {reason}")


def test_an_escaped_backslash_u0000_is_text_not_a_nul():
    assert dumps({"s": "\\u0000"}) == '{"s":"\\\\u0000"}'
    assert stored({"s": "\\u0000"}) == {"s": "\\u0000"}
