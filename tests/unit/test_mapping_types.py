"""Casts on BSON values: Decimal128 decodes exactly like bson's own decoder, including special forms."""

from __future__ import annotations

from decimal import Decimal

import bson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.mapping.types import CastError, decimal128_to_decimal, to_plain


@pytest.mark.parametrize(
    "text",
    [
        "0.99",
        "-1.98",
        "0",
        "-0",
        "-0.000",
        "1E+10",
        "1E-6176",
        "1.00",
        "123456789012345678901234567890.1234",
        "9.999999999999999999999999999999999E+6144",
        "NaN",
        "-Infinity",
    ],
)
def test_decimal128_known_values(text):
    value = bson.Decimal128(text)
    assert str(decimal128_to_decimal(value)) == str(value.to_decimal())


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=-(10**34) + 1, max_value=10**34 - 1), st.integers(min_value=-6176, max_value=6111)
)
def test_decimal128_matches_bson(coefficient, exponent):
    value = bson.Decimal128(Decimal(f"{coefficient}E{exponent}"))
    assert str(decimal128_to_decimal(value)) == str(value.to_decimal())


def test_to_plain_refuses_what_has_no_plain_equivalent():
    for value in (bson.Regex("^a"), bson.MinKey(), bson.Timestamp(1, 1), Decimal("NaN"), float("inf")):
        with pytest.raises(CastError):
            to_plain({"a": [value]})
    assert to_plain({"a": bson.Code("x")}) == {"a": "x"} and type(to_plain(bson.Code("x"))) is str
