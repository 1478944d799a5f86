"""Driver values -> canonical values, and key positions through JSON, for the relational sources."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import pytest

from etl.sources.sqltypes import (
    MONEY_SCALE,
    Truncated,
    ValueRejected,
    datetimeoffset,
    decimal_with_scale,
    decode_key,
    encode_key,
    iso_interval,
    json_loads_exact,
    parse_timestamp,
    raw_guid,
    read_lob,
    rowversion,
    sql_variant,
    strip_char_padding,
    to_date,
    to_decimal,
    to_int,
    to_time,
    uniqueidentifier,
    utc_timestamp,
    year_month_interval,
)

UTC = dt.UTC


class Lob:
    """The interface of an oracledb LOB (CLOB/NCLOB/BLOB): `read()` returns the whole value."""

    def __init__(self, content):
        self._content = content
        self.reads = 0

    def size(self):
        return len(self._content)

    def read(self, offset: int = 1, amount: int | None = None):
        self.reads += 1
        start = offset - 1
        return self._content[start:] if amount is None else self._content[start : start + amount]


def test_lobs_are_read_whole():
    text = "Straße " * 200_000  # 1.4 million characters
    clob = Lob(text)
    assert read_lob(clob) == text and clob.reads == 1
    blob = Lob(bytes(range(256)) * 4096)
    assert read_lob(blob) == bytes(range(256)) * 4096
    assert read_lob("already text") == "already text"


def test_decimal_scale_is_restored_and_never_rounded():
    two_places = decimal_with_scale(2)
    assert str(two_places(Decimal("1.5"))) == "1.50"
    assert str(two_places(Decimal("0.99"))) == "0.99"
    assert str(two_places(Decimal("-12345678.1"))) == "-12345678.10"
    assert str(two_places(0.1)) == "0.10"  # a float is taken by its repr, not its binary value
    with pytest.raises(ValueRejected, match="more than 2 decimal places"):
        two_places(Decimal("1.005"))


def test_number_without_scale_stays_exact():
    assert to_decimal(Decimal("123456789012345678901234567890.123456789")) == Decimal(
        "123456789012345678901234567890.123456789"
    )
    assert to_int(Decimal("12345678901234567890123456789012345678")) == 12345678901234567890123456789012345678
    with pytest.raises(ValueRejected):
        to_int(Decimal("1.5"))


def test_money_has_four_places():
    assert str(MONEY_SCALE(Decimal("12.34"))) == "12.3400"
    assert str(MONEY_SCALE(12.34)) == "12.3400"
    assert str(MONEY_SCALE(Decimal("-922337203685477.5808"))) == "-922337203685477.5808"


def test_char_padding_is_removed():
    assert strip_char_padding("AB   ") == "AB"
    assert strip_char_padding(" A ") == " A"
    assert strip_char_padding("    ") == ""


def test_nanosecond_timestamps_report_the_loss():
    assert parse_timestamp("2024-02-29T23:59:59.123456000", aware=False) == dt.datetime(
        2024, 2, 29, 23, 59, 59, 123456
    )
    with pytest.raises(Truncated) as loss:
        parse_timestamp("2024-02-29T23:59:59.123456789", aware=False)
    assert loss.value.value == dt.datetime(2024, 2, 29, 23, 59, 59, 123456)
    assert parse_timestamp("2024-01-01T00:00:00", aware=True) == dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_timestamp("2024-01-01 05:30:00.5 +05:30", aware=True) == dt.datetime(
        2024, 1, 1, 0, 0, 0, 500000, tzinfo=UTC
    )


def test_utc_timestamps_are_aware():
    assert utc_timestamp(dt.datetime(2024, 5, 1, 12, 0)) == dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert utc_timestamp(dt.datetime(2024, 5, 1, 12, 0)).tzinfo is UTC
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert utc_timestamp(dt.datetime(2024, 5, 1, 12, 0, tzinfo=plus_two)).hour == 10


def test_datetimeoffset_raw_bytes():
    # 2024-03-10 14:30:15.1234567 +05:30, as SQL_SS_TIMESTAMPOFFSET_STRUCT (little-endian).
    import struct

    raw = struct.pack("<6hI2h", 2024, 3, 10, 14, 30, 15, 123456700, 5, 30)
    with pytest.raises(Truncated) as loss:
        datetimeoffset(raw)
    assert loss.value.value == dt.datetime(2024, 3, 10, 9, 0, 15, 123456, tzinfo=UTC)
    exact = struct.pack("<6hI2h", 1999, 12, 31, 23, 0, 0, 500000000, -8, 0)
    assert datetimeoffset(exact) == dt.datetime(2000, 1, 1, 7, 0, 0, 500000, tzinfo=UTC)
    negative_minutes = struct.pack("<6hI2h", 2024, 1, 1, 0, 0, 0, 0, -3, -30)
    assert datetimeoffset(negative_minutes) == dt.datetime(2024, 1, 1, 3, 30, tzinfo=UTC)
    assert datetimeoffset("2024-03-10 14:30:15.1234560 +05:30") == dt.datetime(
        2024, 3, 10, 9, 0, 15, 123456, tzinfo=UTC
    )


def test_uniqueidentifier_text_and_mixed_endian_bytes():
    expected = uuid.UUID("6F9619FF-8B86-D011-B42D-00C04FC964FF")
    assert uniqueidentifier("6F9619FF-8B86-D011-B42D-00C04FC964FF") == expected
    assert uniqueidentifier("{6f9619ff-8b86-d011-b42d-00c04fc964ff}") == expected
    # SQL Server stores the first three groups little-endian: FF19966F-868B-11D0-...
    stored = bytes.fromhex("FF19966F868B11D0B42D00C04FC964FF")
    assert uniqueidentifier(stored) == expected
    assert uniqueidentifier(expected) is expected


def test_raw16_guid_is_in_byte_order():
    assert raw_guid(bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F0")) == uuid.UUID(
        "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    )


def test_intervals():
    assert iso_interval("P3DT4H5M6.5S") == dt.timedelta(days=3, hours=4, minutes=5, seconds=6.5)
    assert iso_interval("P-3DT-4H") == dt.timedelta(days=-3, hours=-4)
    assert iso_interval("PT0S") == dt.timedelta(0)
    with pytest.raises(ValueRejected, match="year/month"):
        iso_interval("P1Y2M3DT4H5M6.5S")
    import oracledb

    assert year_month_interval(oracledb.IntervalYM(years=1, months=2)) == "P1Y2M"


def test_dates_and_times_from_text_drivers():
    assert to_date("2024-02-29") == dt.date(2024, 2, 29)
    assert to_date(dt.datetime(2024, 2, 29, 0, 0)) == dt.date(2024, 2, 29)
    assert to_time("23:59:59.1234560") == dt.time(23, 59, 59, 123456)
    with pytest.raises(Truncated) as loss:
        to_time("23:59:59.1234567")
    assert loss.value.value == dt.time(23, 59, 59, 123456)


def test_rowversion_variant_and_json():
    assert rowversion(b"\x00\x00\x00\x00\x00\x00\x07\xd1") == 2001
    assert sql_variant("decimal|12.50") == {"type": "decimal", "value": "12.50"}
    assert sql_variant("nvarchar|a|b") == {"type": "nvarchar", "value": "a|b"}
    assert json_loads_exact('{"dose": 1.10, "n": 3}') == {"dose": Decimal("1.10"), "n": 3}


@pytest.mark.parametrize(
    "text",
    ['{"a": [1, 2.50]}', ' {"a": 1} \n', "3.0", '"x"', "null", '{"a": 1} x', "", "[1,", " ", "1 2"],
)
def test_json_without_and_with_surrounding_space_reads_as_the_decoder_does(text):
    decoder = json.JSONDecoder(parse_float=Decimal)

    def outcome(parse):
        try:
            value = parse(text)
        except json.JSONDecodeError as error:
            return ("error", str(error))
        return ("value", repr(value))

    assert outcome(json_loads_exact) == outcome(decoder.decode)
    assert outcome(lambda t: json_loads_exact(t.encode())) == outcome(decoder.decode)


def test_key_positions_survive_json_exactly():
    key = (
        Decimal("10.50"),
        dt.datetime(2024, 1, 2, 3, 4, 5, 6),
        dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        dt.date(2024, 1, 2),
        uuid.UUID("6f9619ff-8b86-d011-b42d-00c04fc964ff"),
        b"\x00\xffraw",
        "text",
        12345678901234567890,
        0.1,
        dt.time(1, 2, 3, 4),
        dt.timedelta(days=-1, microseconds=5),
    )
    decoded = decode_key(json.loads(json.dumps(encode_key(key))))
    assert decoded == key
    assert [type(value) for value in decoded] == [type(value) for value in key]
    assert str(decoded[0]) == "10.50"
