"""The canonical encoding is injective over the accepted types, except for the documented
equivalences (values the target cannot tell apart), which it must collapse."""

from __future__ import annotations

import datetime as dt
import math
import struct
import uuid
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.checksum.canonical import MISSING, UnencodableValue, encode, number_text
from etl.checksum.tolerances import Tolerances

UTC = dt.UTC


# --- a reference equivalence, written independently of the byte layout -------------------------


def semantic(value: object, kind: str = "any") -> object:
    """What a value *means* in a column of `kind`; two values are alike iff these are equal."""
    if value is None:
        return ("null",)
    if value is MISSING:
        return ("missing",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float | Decimal):
        return semantic_number(value, kind)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, bytes):
        return ("bytes", value)
    if isinstance(value, uuid.UUID):
        return ("uuid", value.int)
    if isinstance(value, dt.date | dt.time | dt.timedelta):
        return semantic_temporal(value)
    if isinstance(value, dict):
        return ("map", frozenset((k, semantic(v)) for k, v in value.items()))
    if isinstance(value, frozenset | set):
        return ("set", frozenset(semantic(v) for v in value))
    if isinstance(value, list):
        return ("list", tuple(semantic(v) for v in value))
    raise TypeError(type(value))


def semantic_number(value: int | float | Decimal, kind: str) -> object:
    """What a number means: bits of a double in a float column, else its exact value (or NaN, +-inf)."""
    if kind == "float":
        number = float(value)
        return ("float", "nan") if math.isnan(number) else ("float", struct.pack(">d", number))
    if isinstance(value, float):
        if math.isnan(value):
            return ("num", "nan")
        if math.isinf(value):
            return ("num", "+inf" if value > 0 else "-inf")
        return ("num", Fraction(Decimal(repr(value))))
    if isinstance(value, Decimal) and value.is_nan():
        return ("num", "nan")
    if isinstance(value, Decimal) and value.is_infinite():
        return ("num", "+inf" if value > 0 else "-inf")
    return ("num", Fraction(value))


def semantic_temporal(value: dt.date | dt.time | dt.timedelta) -> object:
    """What a timestamp (an instant, or a naive one), date, time of day or interval means."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            return ("utc", value.astimezone(UTC).replace(tzinfo=None))
        return ("naive", value.replace(fold=0))
    if isinstance(value, dt.date):
        return ("date", value.toordinal())
    if isinstance(value, dt.time):
        return ("time", value.replace(tzinfo=None, fold=0), value.utcoffset())
    return ("interval", value)


offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)
decimals = st.decimals(allow_nan=True, allow_infinity=True, places=None)
# Values whose payloads coincide across types (empty, zero, epoch...), so that a collision
# between two types' encodings would be found quickly.
scalar_look_alikes = st.sampled_from(
    [
        "",
        b"",
        "a",
        b"a",
        "\x00",
        b"\x00",
        0,
        0.0,
        -0.0,
        False,
        True,
        1,
        Decimal("0"),
        Decimal("1.0"),
        dt.date(1970, 1, 1),
        dt.datetime(1970, 1, 1),
        dt.datetime(1970, 1, 1, tzinfo=UTC),
        dt.time(0),
        dt.time(0, tzinfo=UTC),
        dt.timedelta(0),
        uuid.UUID(int=0),
        "0",
        "1",
        "NaN",
        Decimal("NaN"),
        frozenset(),
        frozenset({0}),
        frozenset({""}),
        MISSING,
    ]
)
look_alikes = st.one_of(
    scalar_look_alikes,
    st.sampled_from(
        [
            math.nan,
            [],
            {},
            frozenset(),
            [None],
            [""],
            [b""],
            {"": None},
            {"a": 0},
            frozenset({0}),
            frozenset({""}),
            ["a", "b"],
            ["ab"],
            [["a"], "b"],
            ["a", ["b"]],
        ]
    ),
)
# Strings made of tag letters: without length prefixes, ["as", "b"] and ["a", "sb"] would collide.
tag_letter_lists = st.lists(st.text(alphabet="sab", max_size=3), max_size=3)
scalars = st.one_of(
    look_alikes,
    look_alikes,
    tag_letter_lists,
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, 1, -1, 10, 100]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 0.1, math.inf, -math.inf, math.nan]),
    decimals,
    st.sampled_from([Decimal("1"), Decimal("1.00"), Decimal("-0"), Decimal("0E+3"), Decimal("1E+2")]),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.uuids(),
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=offsets),
    st.times(),
    st.times(timezones=offsets),
    st.timedeltas(),
)
hashable_scalars = st.one_of(
    scalar_look_alikes,
    st.integers(),
    st.text(max_size=3),
    st.binary(max_size=3),
    st.floats(allow_nan=False),
    st.dates(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=4), inner, max_size=3),
        st.frozensets(hashable_scalars, max_size=3),
    ),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(values, min_size=2, max_size=6))
def test_encodings_equal_exactly_when_values_are_alike(items: list[object]) -> None:
    codes = [encode(v) for v in items]
    meanings = [semantic(v) for v in items]
    for i in range(len(items)):
        for j in range(len(items)):
            assert (codes[i] == codes[j]) == (meanings[i] == meanings[j]), (items[i], items[j])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(), st.sampled_from([0.0, -0.0, math.nan, -math.nan, 5e-324])),
        min_size=2,
        max_size=6,
    )
)
def test_float_columns_compare_bits_with_one_nan(items: list[float]) -> None:
    codes = [encode(v, "float") for v in items]
    meanings = [semantic(v, "float") for v in items]
    for i in range(len(items)):
        for j in range(len(items)):
            assert (codes[i] == codes[j]) == (meanings[i] == meanings[j])


def test_numbers_the_target_cannot_tell_apart_encode_alike() -> None:
    for column_type in ("decimal(10,2)", "number", "int", "json"):
        assert encode(1, column_type) == encode(1.0, column_type) == encode(Decimal("1.00"), column_type)
    assert encode(Decimal("-0"), "number") == encode(0, "number") == encode(-0.0, "number")
    assert encode(Decimal("1E+2"), "number") == encode(100, "number")
    assert encode(Decimal("0.1"), "number") == encode(0.1, "number")
    assert encode(Decimal("1.5"), "number") != encode(Decimal("1.50001"), "number")


def test_number_text_matches_postgresql_trim_scale() -> None:
    assert number_text(Decimal("1.500")) == "1.5"
    assert number_text(Decimal("100")) == "100"
    assert number_text(Decimal("1E+2")) == "100"
    assert number_text(Decimal("-0.00100")) == "-0.001"
    assert number_text(Decimal("-0")) == "0"
    assert number_text(Decimal("1E+5000")) == "1E5000"


def test_float_column_values() -> None:
    assert encode(0.0, "float") != encode(-0.0, "float")
    assert encode(math.nan, "float") == encode(-math.nan, "float")
    assert encode(math.inf, "float") != encode(-math.inf, "float")
    assert encode(Decimal("0.1"), "float") == encode(0.1, "float")  # a reader returning Decimal
    assert encode(1.0, "float") != encode(1.0000000000000002, "float")
    with pytest.raises(UnencodableValue, match="too large for a float column"):
        encode(10**400, "float")


def test_bool_is_not_a_number_and_null_is_not_missing() -> None:
    assert encode(True, "int") != encode(1, "int")
    assert encode(False, "number") != encode(0, "number")
    assert encode(None) != encode(MISSING)
    assert encode(None) != encode("")
    assert encode([]) != encode(None) != encode({})


def test_timestamps() -> None:
    instant = dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    paris = instant.astimezone(dt.timezone(dt.timedelta(hours=2)))
    assert encode(instant) == encode(paris)
    assert encode(instant) != encode(instant.replace(tzinfo=None))  # aware vs naive
    later = instant + dt.timedelta(microseconds=1)
    assert encode(instant) != encode(later)
    assert encode(instant, tolerances=Tolerances(timestamp_precision=5)) == encode(
        later.replace(microsecond=123459), tolerances=Tolerances(timestamp_precision=5)
    )
    assert encode(instant, tolerances=Tolerances(timestamp_precision=3)) != encode(
        instant.replace(microsecond=124000), tolerances=Tolerances(timestamp_precision=3)
    )
    before_epoch = dt.datetime(1969, 12, 31, 23, 59, 59, 999999)
    assert encode(before_epoch, tolerances=Tolerances(timestamp_precision=0)) == encode(
        dt.datetime(1969, 12, 31, 23, 59, 59)
    )


def test_string_tolerances() -> None:
    composed, decomposed = "Stra\u00dfe caf\u00e9", "Stra\u00dfe cafe\u0301"
    assert encode(composed) != encode(decomposed)
    assert encode(composed, tolerances=Tolerances(unicode_nfc=True)) == encode(
        decomposed, tolerances=Tolerances(unicode_nfc=True)
    )
    assert encode("AB  ") != encode("AB")
    assert encode("AB  ", tolerances=Tolerances(rstrip_char=True)) == encode(
        "AB", tolerances=Tolerances(rstrip_char=True)
    )
    assert encode(" AB", tolerances=Tolerances(rstrip_char=True)) != encode(
        "AB", tolerances=Tolerances(rstrip_char=True)
    )
    folded = Tolerances(case_insensitive_keys=True)
    assert encode("Ab", tolerances=folded, is_key=True) == encode("aB", tolerances=folded, is_key=True)
    assert encode("Ab", tolerances=folded) != encode("aB", tolerances=folded)  # only keys fold


def test_maps_sets_and_lists() -> None:
    assert encode({"a": 1, "b": 2}) == encode({"b": 2, "a": 1.0})
    assert encode([1, 2]) != encode([2, 1])
    assert encode({1, 2}) == encode(frozenset({2, 1}))
    assert encode([2, 1, 1], "set") == encode({1, 2}, "set")  # a set column read back as a list
    assert encode([1, 2]) != encode({1, 2})
    assert encode({"a": None}) != encode({})
    assert encode(["ab"]) != encode(["a", "b"])


def test_unaccepted_types_name_the_type_not_the_value() -> None:
    with pytest.raises(UnencodableValue, match="type object") as error:
        encode(object())
    with pytest.raises(UnencodableValue, match="map key of type int"):
        encode({1: "secret-value"})
    assert "secret-value" not in str(error.value)


SMALL_SCALARS = [
    None,
    MISSING,
    False,
    True,
    0,
    1,
    -1,
    0.0,
    -0.0,
    1.0,
    0.5,
    math.nan,
    math.inf,
    Decimal("1.00"),
    Decimal("NaN"),
    "",
    "a",
    "b",
    "s",
    "as",
    "sb",
    "ab",
    "0",
    "1",
    "\x00",
    b"",
    b"a",
    b"\x00",
    b"s",
    dt.date(1970, 1, 1),
    dt.date(1970, 1, 2),
    dt.datetime(1970, 1, 1),
    dt.datetime(1970, 1, 1, tzinfo=UTC),
    dt.datetime(1970, 1, 1, 0, 0, 0, 1),
    dt.time(0),
    dt.time(0, 0, 0, 1),
    dt.time(0, tzinfo=UTC),
    dt.timedelta(0),
    dt.timedelta(microseconds=1),
    uuid.UUID(int=0),
    uuid.UUID(int=1),
]


def _universe() -> list[object]:
    hashable = [v for v in SMALL_SCALARS if not (isinstance(v, float) and math.isnan(v))]
    few = ["a", "b", "s", "as", "sb", 0, 1.0, None, b"a", [], {}]
    out: list[object] = list(SMALL_SCALARS)
    out += [[x] for x in few] + [[x, y] for x in few for y in few]
    out += [[[x], y] for x in few[:5] for y in few[:5]] + [[x, [y]] for x in few[:5] for y in few[:5]]
    out += [{"a": x} for x in few] + [{k: x} for k in ("", "b", "as") for x in few[:4]]
    out += [{"a": x, "b": y} for x in few[:5] for y in few[:5]]
    out += [frozenset({x}) for x in hashable] + [
        frozenset({x, y}) for x in hashable[:12] for y in hashable[:12]
    ]
    return out


def test_no_collisions_in_a_universe_of_look_alikes() -> None:
    """Every pair of a few thousand look-alike values: same encoding exactly when alike."""
    by_code: dict[bytes, object] = {}
    by_meaning: dict[object, bytes] = {}
    for value in _universe():
        code, meaning = encode(value), semantic(value)
        if code in by_code:
            assert semantic(by_code[code]) == meaning, (by_code[code], value)
        by_code[code] = value
        assert by_meaning.setdefault(meaning, code) == code, value
