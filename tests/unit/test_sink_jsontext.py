"""Lossless JSON text: Decimals keep every digit; what JSON cannot hold is refused or kept as text."""

import datetime as dt
import json
import uuid
from decimal import Decimal

import pytest

from etl.sinks.jsontext import dumps


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
