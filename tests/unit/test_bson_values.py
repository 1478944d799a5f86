"""Every BSON type decodes to the canonical value docs/types.md promises; bad dates are rejects."""

from __future__ import annotations

import datetime
import gc
import math
import re
import uuid
from decimal import Decimal

import bson
import pytest
from bson import Binary, Code, DBRef, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.datetime_ms import DatetimeMS
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.errors import EtlError
from etl.records import Reject
from etl.sources.base import BatchLimits
from etl.sources.bson_values import (
    NATIVE_CODEC,
    ObjectIdText,
    RunCutter,
    decode_run,
    frame,
    framing_fault,
    gc_paused,
    id_from_json,
    id_to_json,
    key_text,
    project,
    projection,
)

UTC = datetime.UTC
OID = ObjectId("5f1d7a2b9c8e4d3a2b1c0f9e")
UID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def encode(document: dict) -> bytes:
    return bson.encode(document, codec_options=NATIVE_CODEC)


def refuse(offset: int, error: Exception) -> Reject:
    raise EtlError(f"corrupt at {offset}")


def decode_one(document: dict) -> dict:
    records, rejects = decode_run(encode(document), "t", refuse)
    assert rejects == []
    return records[0]


def test_every_bson_type_becomes_its_documented_canonical_value():
    record = decode_one({
        "_id": OID,
        "double": 1.5, "nan": float("nan"), "negzero": -0.0, "inf": float("-inf"),
        "string": "Straße", "doc": {"a": {"b": 1}}, "array": [1, "x", None],
        "bin0": Binary(b"\x00\x01", 0), "bin2": Binary(b"\x02", 2),
        "uuid4": UID, "uuid3": Binary(UID.bytes, 3),
        "bin1": Binary(b"f", 1), "bin5": Binary(b"\x05" * 16, 5), "bin6": Binary(b"e", 6),
        "bin7": Binary(b"c", 7), "bin8": Binary(b"s", 8), "bin128": Binary(b"u", 128),
        "oid": OID, "true": True, "false": False,
        "date": datetime.datetime(2024, 2, 29, 12, 30, 1, 123000, tzinfo=UTC),
        "before1970": datetime.datetime(1901, 12, 13, 20, 45, 52, tzinfo=UTC),
        "null": None,
        "regex": Regex("^a.c$", "im"),
        "js": Code("function () { return 1; }"), "jsscope": Code("x + y", {"y": 2}),
        "ts": Timestamp(1_700_000_000, 7),
        "int32": 2_147_483_647, "int64": Int64(9_223_372_036_854_775_807),
        "dec": Decimal128("1234567890.123456789012345678901234"), "decnan": Decimal128("NaN"),
        "decinf": Decimal128("-Infinity"), "decexp": Decimal128("1E+6144"),
        "min": MinKey(), "max": MaxKey(),
        "ref": DBRef("patients", OID, "clinic"),
    })
    assert type(record["_id"]) is ObjectIdText and record["_id"] == str(OID)
    assert record["double"] == 1.5 and math.isnan(record["nan"])
    assert math.copysign(1, record["negzero"]) == -1.0 and record["inf"] == float("-inf")
    assert record["string"] == "Straße" and record["doc"] == {"a": {"b": 1}}
    assert record["array"] == [1, "x", None]
    assert record["bin0"] == b"\x00\x01" and type(record["bin0"]) is bytes and record["bin2"] == b"\x02"
    assert record["uuid4"] == UID
    assert record["uuid3"] == {"$binary": {"base64": "EjRWeBI0VngSNFZ4EjRWeA==", "subType": "03"}}
    assert record["bin5"]["$binary"]["subType"] == "05" and record["bin128"]["$binary"]["subType"] == "80"
    assert [record[f"bin{n}"]["$binary"]["subType"] for n in (1, 6, 7, 8)] == ["01", "06", "07", "08"]
    assert record["oid"] == "5f1d7a2b9c8e4d3a2b1c0f9e" and record["true"] is True and record["false"] is False
    assert record["date"] == datetime.datetime(2024, 2, 29, 12, 30, 1, 123000, tzinfo=UTC)
    assert record["before1970"] == datetime.datetime(1901, 12, 13, 20, 45, 52, tzinfo=UTC)
    assert "null" in record and record["null"] is None and "missing" not in record
    assert record["regex"] == {"$regularExpression": {"pattern": "^a.c$", "options": "im"}}
    assert record["js"] == {"$code": "function () { return 1; }"}
    assert record["jsscope"] == {"$code": "x + y", "$scope": {"y": 2}}
    assert record["ts"] == {"$timestamp": {"t": 1_700_000_000, "i": 7}}
    assert record["int32"] == 2_147_483_647 and type(record["int64"]) is int
    assert record["int64"] == 9_223_372_036_854_775_807
    assert record["dec"] == Decimal("1234567890.123456789012345678901234") and type(record["dec"]) is Decimal
    assert record["decnan"].is_nan() and record["decinf"] == Decimal("-Infinity")
    assert record["decexp"] == Decimal("1E+6144")
    assert record["min"] == {"$minKey": 1} and record["max"] == {"$maxKey": 1}
    assert record["ref"] == {"$ref": "patients", "$id": "5f1d7a2b9c8e4d3a2b1c0f9e", "$db": "clinic"}


def test_date_python_cannot_hold_is_a_reject_with_path_not_a_crash():
    good = encode({"_id": 1, "when": datetime.datetime(2020, 1, 1, tzinfo=UTC)})
    bad = encode({"_id": "p-2", "visits": [{"at": DatetimeMS(0)}, {"at": DatetimeMS(2**62)}]})
    records, rejects = decode_run(good + bad + good.replace(b"\x01\x00\x00\x00", b"\x03\x00\x00\x00", 1),
                                  "patients", refuse)
    assert [r["_id"] for r in records] == [1, 3]
    assert len(rejects) == 1
    reject = rejects[0]
    assert (reject.table, reject.source_key, reject.stage, reject.field_path, reject.value_type) == (
        "patients", "_id='p-2'", "extract", "visits[1].at", "date")
    assert "years 1 to 9999" in reject.reason and str(2**62) not in reject.reason


@pytest.mark.parametrize("value", [
    OID, 42, Int64(2**40), -0.5, "abc", UID, Decimal128("1.10"), Decimal128("NaN"), {"a": 1},
    datetime.datetime(1969, 7, 20, 20, 17, tzinfo=UTC), True, Binary(b"\x01" * 16, 3),
])
def test_id_json_round_trips_value_and_bson_type(value):
    text = id_to_json(value)
    back = id_from_json(text)
    assert encode({"v": back}) == encode({"v": value})


@pytest.mark.parametrize(("value", "text"), [
    (ObjectIdText(str(OID)), f"_id=ObjectId('{OID}')"), (42, "_id=42"), ("a'b", '_id="a\'b"'),
    (UID, f"_id=UUID('{UID}')"), (Decimal("1.5"), "_id=Decimal('1.5')"),
    ({"b": 1, "a": 2}, '_id={"a": 2, "b": 1}'),
])
def test_key_text(value, text):
    assert key_text({"_id": value, "email": "x@y.z"}) == text


def test_key_text_of_missing_id():
    assert key_text({"email": "x@y.z"}) == "_id=<missing>"


def cut(limits: BatchLimits, chunks: list[bytes]) -> list[tuple[bytes, int]]:
    cutter = RunCutter(limits)
    runs = [run for chunk in chunks for run in cutter.feed(chunk)]
    last = cutter.flush()
    return [(bytes(data), offset) for data, offset in [*runs, *([last] if last else [])]]


def test_batches_are_bounded_by_records_and_bytes_and_never_empty():
    documents = [encode({"_id": n, "pad": "x" * (n * 10)}) for n in range(10)]
    runs = cut(BatchLimits(records=3, bytes=120), [b"".join(documents)])
    counts = [len(bson.decode_all(run)) for run, _ in runs]
    assert sum(counts) == 10 and max(counts) <= 3
    assert all(len(run) <= 120 or count == 1 for (run, _), count in zip(runs, counts, strict=True))
    assert [d["_id"] for run, _ in runs for d in bson.decode_all(run)] == list(range(10))
    assert counts == [3, 2, 1, 1, 1, 1, 1]
    assert [bson.decode(run[offset:])["_id"] for run, offset in runs] == [2, 4, 5, 6, 7, 8, 9]


@pytest.mark.parametrize("sizes", [[1, 9], [2, 2, 2, 2, 2], [10], [4, 6], [1] * 10])
def test_runs_are_the_same_however_the_documents_arrive_in_chunks(sizes):
    documents = [encode({"_id": n, "pad": "x" * (n * 10)}) for n in range(10)]
    chunks, start = [], 0
    for size in sizes:
        chunks.append(b"".join(documents[start:start + size]))
        start += size
    limits = BatchLimits(records=3, bytes=120)
    assert cut(limits, chunks) == cut(limits, [b"".join(documents)])
    assert [len(bson.decode_all(run)) for run, _ in cut(BatchLimits(records=4), chunks)] == [4, 4, 2]


@pytest.mark.parametrize(("damage", "fault"), [
    (lambda doc: doc[:2], ("truncated length prefix (2 of 4 bytes)", True)),
    (lambda doc: doc[:-3], ("truncated document (11 of 14 bytes)", True)),
    (lambda doc: b"\x03\x00\x00\x00" + doc[4:], ("implausible document length 3", False)),
    (lambda doc: b"\xff\xff\xff\xff" + doc[4:], ("implausible document length 4294967295", False)),
    (lambda doc: doc[:-1] + b"\x01", ("document does not end with a NUL byte", False)),
])
def test_framing_stops_at_damage_and_says_why(damage, fault):
    good = encode({"_id": 1})
    data = good * 2 + damage(good)
    assert frame(data, 0, len(data), 10, 1 << 20) == (2 * len(good), 2, len(good))
    assert framing_fault(data, 2 * len(good)) == fault
    assert framing_fault(data, len(good)) is None
    with pytest.raises(bson.errors.InvalidBSON, match=f"{re.escape(fault[0])} at byte {2 * len(good)}"):
        list(RunCutter(BatchLimits(records=10)).feed(data))


def test_projection_always_keeps_id():
    assert projection(["email", "address"]) == {"email": 1, "address": 1, "_id": 1}
    assert projection(None) is None


@settings(max_examples=500)
@given(st.binary(min_size=16, max_size=16))
def test_decimal128_converts_exactly_like_pymongo_for_any_bits(bits):
    value = Decimal128.from_bid(bits)
    expected = value.to_decimal()
    got = decode_one({"v": value})["v"]
    assert str(got) == str(expected)  # same digits, exponent and sign (NaN payloads aside)


@pytest.mark.parametrize("text", [
    "0", "-0.000", "1E+6144", "-1E-6176", "9999999999999999999999999999999999", "0.99", "1.98",
    "Infinity", "-Infinity", "NaN", "1.000000000000000000000000000000001"])
def test_decimal128_edge_values(text):
    assert str(decode_one({"v": Decimal128(text)})["v"]) == str(Decimal128(text).to_decimal())


def test_gc_paused_pauses_the_collector_only_while_making_and_restores_it():
    def make(value):
        assert not gc.isenabled()
        return value

    def fail():
        raise ValueError("bad batch")

    assert gc.isenabled()
    assert gc_paused(make, 7) == 7
    assert gc.isenabled()
    with pytest.raises(ValueError, match="bad batch"):
        gc_paused(fail)
    assert gc.isenabled()
    gc.disable()
    try:
        gc_paused(make, 1)
        assert not gc.isenabled()  # a collector paused by someone else stays paused
    finally:
        gc.enable()


def test_project_keeps_id_and_the_fields_in_document_order_and_returns_the_same_list_when_all_are_kept():
    whole = [{"_id": 1, "b": 2, "a": 1}, {"a": 3, "_id": 2}]
    assert project(whole, ["a", "b"]) is whole
    narrowed = project([{"z": 0, "b": 2, "_id": 1, "ssn": "x", "a": 1}, {"_id": 2}], ["a", "b"])
    assert narrowed == [{"b": 2, "_id": 1, "a": 1}, {"_id": 2}]
    assert [list(record) for record in narrowed] == [["b", "_id", "a"], ["_id"]]
