"""BSON -> canonical Python values, shared by the `mongo` and `mongodump` sources.

Decoding happens inside pymongo's C decoder: a TypeRegistry turns every BSON value that has
no canonical equivalent into one as it is read, so no second walk over each document is
needed. The mapping of every BSON type is documented in docs/types.md ("MongoDB").

Also here: BSON framing (the 4-byte little-endian length prefix every document starts with),
batch cutting by records and bytes, the opaque JSON encoding of `_id` values used for
partition bounds and resume positions, and key text for reports.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import gc
import json
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import bson
from bson import json_util
from bson.binary import Binary, UuidRepresentation
from bson.code import Code
from bson.codec_options import CodecOptions, DatetimeConversion, TypeDecoder, TypeRegistry
from bson.datetime_ms import DatetimeMS
from bson.dbref import DBRef
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.objectid import ObjectId
from bson.regex import Regex
from bson.timestamp import Timestamp

from etl.records import Reject
from etl.sources.base import BatchLimits

MAX_DOCUMENT_BYTES = 48 * 1024 * 1024
"""Largest length prefix accepted as plausible (16 MiB is MongoDB's limit; mongodump output of
nested oplog entries may exceed it a little). Anything larger is treated as corruption."""


class ObjectIdText(str):
    """An ObjectId as its 24 lowercase hex digits: a plain `str` to every layer, yet still
    recognisable so key text reads `ObjectId('...')` and resume positions stay exact."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"ObjectId('{self}')"


class UnrepresentableDate(ValueError):
    """Raised inside decoding for a BSON date outside Python's datetime range (years 1-9999)."""


def _regex_options(flags: int) -> str:
    letters = ((re.IGNORECASE, "i"), (re.LOCALE, "l"), (re.MULTILINE, "m"), (re.DOTALL, "s"),
               (re.UNICODE, "u"), (re.VERBOSE, "x"))
    return "".join(letter for flag, letter in letters if flags & flag)


_MAX_COEFFICIENT = 10**34 - 1


def _decimal(value: Decimal128, _from_bytes: Callable = int.from_bytes, _decimal: type = decimal.Decimal
             ) -> decimal.Decimal:
    """Decimal128 -> Decimal, exactly (same digits, exponent and sign as `to_decimal()`), about
    four times faster: finite values are read from the IEEE 754 BID bits and built from text,
    which the C decimal module parses exactly. NaN and Infinity take pymongo's path."""
    bid = value.bid
    high = _from_bytes(bid[8:], "little")
    if (high >> 61) & 3 == 3:  # NaN, Infinity, or the (non-canonical) large-coefficient form
        return value.to_decimal()
    coefficient = ((high & 0x1FFFFFFFFFFFF) << 64) | _from_bytes(bid[:8], "little")
    if coefficient > _MAX_COEFFICIENT:  # non-canonical: the standard reads it as zero
        coefficient = 0
    exponent = ((high >> 49) & 0x3FFF) - 6176
    return _decimal(f"{'-' if high >> 63 else ''}{coefficient}E{exponent}")


def _binary(value: Binary) -> Any:
    # Subtype 2 is the deprecated "binary (old)": the same meaning as the generic subtype 0.
    if value.subtype in (0, 2):
        return bytes(value)
    return {"$binary": {"base64": base64.b64encode(bytes(value)).decode("ascii"),
                        "subType": f"{value.subtype:02x}"}}


def _code(value: Code) -> dict:
    if value.scope is None:
        return {"$code": str(value)}
    return {"$code": str(value), "$scope": dict(value.scope)}


def _dbref(value: DBRef) -> dict:
    return dict(value.as_doc())


def _date(value: DatetimeMS) -> Any:
    raise UnrepresentableDate(int(value))


def _decoder(bson_type: type, transform: Callable[[Any], Any]) -> TypeDecoder:
    decoder_class = type(f"{bson_type.__name__}Decoder", (TypeDecoder,), {
        "bson_type": bson_type, "transform_bson": staticmethod(transform)})
    return decoder_class()


CANONICAL_REGISTRY = TypeRegistry([
    _decoder(Decimal128, _decimal),
    _decoder(Int64, int),
    _decoder(ObjectId, lambda value: ObjectIdText(str(value))),
    _decoder(Binary, _binary),
    _decoder(Regex, lambda value: {"$regularExpression": {
        "pattern": value.pattern, "options": _regex_options(value.flags)}}),
    _decoder(Code, _code),
    _decoder(Timestamp, lambda value: {"$timestamp": {"t": value.time, "i": value.inc}}),
    _decoder(MinKey, lambda value: {"$minKey": 1}),
    _decoder(MaxKey, lambda value: {"$maxKey": 1}),
    _decoder(DBRef, _dbref),
    _decoder(DatetimeMS, _date),
])

CANONICAL_CODEC: CodecOptions = CodecOptions(
    tz_aware=True,  # UTC (bson.tz_util.utc): the decoder's fast path; any other tzinfo is converted per value
    uuid_representation=UuidRepresentation.STANDARD,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
    type_registry=CANONICAL_REGISTRY,
)
"""Decodes straight to canonical values (docs/internals.md)."""

NATIVE_CODEC: CodecOptions = CodecOptions(
    tz_aware=True,
    tzinfo=datetime.UTC,
    uuid_representation=UuidRepresentation.STANDARD,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
)
"""Decodes to pymongo's own BSON types: exact `_id` values for queries, bounds and positions."""

_JSON_OPTIONS = json_util.JSONOptions(
    json_mode=json_util.JSONMode.CANONICAL,
    uuid_representation=UuidRepresentation.STANDARD,
    tz_aware=True,
    tzinfo=datetime.UTC,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
)


def id_to_json(value: Any) -> str:
    """A native `_id` as canonical Extended JSON: ObjectId, UUID, int32/int64, double, string and
    Decimal128 all come back exactly (and with their BSON type) from `id_from_json`."""
    return json_util.dumps({"v": value}, json_options=_JSON_OPTIONS)


_JSON_LOAD_OPTIONS = _JSON_OPTIONS.with_options(uuid_representation=UuidRepresentation.UNSPECIFIED)
"""Loading keeps every binary subtype as a Binary (STANDARD would turn 16-byte subtype 3 into
a UUID, which encodes back as subtype 4)."""


def id_from_json(text: str) -> Any:
    return json_util.loads(text, json_options=_JSON_LOAD_OPTIONS)["v"]


def from_extended_json(value: dict) -> dict:
    """A filter written in a job file (plain JSON/YAML with Extended JSON values) as BSON values."""
    return json_util.loads(json.dumps(value), json_options=_JSON_LOAD_OPTIONS)


def value_text(value: Any) -> str:
    """A key value as text: `42`, `'abc'`, `ObjectId('...')`, `UUID('...')`, `Decimal('1.5')`."""
    if isinstance(value, ObjectId):
        return f"ObjectId('{value}')"
    if isinstance(value, str | int | float | decimal.Decimal | uuid.UUID | Decimal128 | bool):
        return repr(value) if not isinstance(value, Int64) else str(int(value))
    if value is None:
        return "null"
    return json.dumps(value, default=repr, sort_keys=True)


def key_text(record: dict) -> str:
    if "_id" not in record:
        return "_id=<missing>"
    return f"_id={value_text(record['_id'])}"


def document_ends(data: bytes | memoryview, start: int = 0) -> Iterator[int]:
    """Yield the end offset of each whole document framed in `data` from `start` on.

    Stops at the first incomplete document; the caller compares the last end with len(data)."""
    size = len(data)
    position = start
    while position + 4 <= size:
        length = int.from_bytes(data[position:position + 4], "little")
        if length < 5 or position + length > size:
            return
        position += length
        yield position


class BatchCutter:
    """Cuts a stream of documents into runs bounded by records and bytes (at least one document
    per run, so a single document larger than the byte limit still moves)."""

    def __init__(self, limits: BatchLimits) -> None:
        self.limits = limits
        self._pending: list[bytes] = []
        self._bytes = 0

    def add(self, document: bytes) -> bytes | None:
        """Add one framed document; return the finished run it closed, if any."""
        finished = None
        if self._pending and (len(self._pending) >= self.limits.records
                              or self._bytes + len(document) > self.limits.bytes):
            finished = self.flush()
        self._pending.append(document)
        self._bytes += len(document)
        return finished

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """Add concatenated documents (a server reply); yield the runs they finish."""
        start = 0
        for end in document_ends(chunk):
            finished = self.add(chunk[start:end])
            if finished is not None:
                yield finished
            start = end

    def flush(self) -> bytes | None:
        if not self._pending:
            return None
        run = b"".join(self._pending)
        self._pending = []
        self._bytes = 0
        return run


CorruptHandler = Callable[[int, Exception], Reject]
"""Called with the byte offset (within the decoded run) of a document that does not decode;
returns a Reject to dead-letter it, or raises an EtlError."""


def decode_run(data: bytes, table: str, on_corrupt: CorruptHandler) -> tuple[list[dict], list[Reject]]:
    """Decode concatenated documents to canonical records; undecodable ones become rejects.

    The fast path decodes the whole run in C; only a run that fails is redone one document at
    a time to find which documents fail and why."""
    collecting = gc.isenabled()
    gc.disable()  # a batch allocates many containers it keeps: cyclic GC passes would rescan them all
    try:
        return bson.decode_all(data, CANONICAL_CODEC), []
    except Exception:  # noqa: S110 - any failure is narrowed down document by document below
        pass
    finally:
        if collecting:
            gc.enable()
    records: list[dict] = []
    rejects: list[Reject] = []
    start = 0
    for end in document_ends(data):
        piece = data[start:end]
        try:
            records.extend(bson.decode_all(piece, CANONICAL_CODEC))
        except Exception as error:  # noqa: BLE001 - classified below: a bad date or corruption
            reject = _date_reject(piece, table)
            rejects.append(reject if reject is not None else on_corrupt(start, error))
        start = end
    if start != len(data):
        rejects.append(on_corrupt(start, bson.errors.InvalidBSON("incomplete document")))
    return records, rejects


def _date_reject(piece: bytes, table: str) -> Reject | None:
    """A reject for a document whose only fault is a date Python cannot hold; None otherwise.

    (pymongo re-raises errors from type decoders as InvalidBSON, so the fault is identified by
    decoding natively, where such dates arrive as DatetimeMS.)"""
    try:
        document = bson.decode(piece, NATIVE_CODEC)
    except Exception:  # noqa: BLE001 - the document is corrupt, not merely out of range
        return None
    path = _find_path(document, lambda value: isinstance(value, DatetimeMS))
    if path is None:
        return None
    return Reject(
        table=table,
        source_key=key_text(document),
        reason="BSON date outside the range Python can hold (years 1 to 9999); "
               "fix the value at the source or exclude the document with `query`",
        stage="extract",
        field_path=path,
        value_type="date",
    )


def _find_path(value: Any, predicate: Callable[[Any], bool], path: str = "") -> str | None:
    if predicate(value):
        return path
    if isinstance(value, DBRef):
        value = value.as_doc()
    if isinstance(value, dict):
        for name, item in value.items():
            found = _find_path(item, predicate, f"{path}.{name}" if path else str(name))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _find_path(item, predicate, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def last_native_document(data: bytes) -> dict:
    """The last framed document of a run, decoded to native BSON types (for resume positions)."""
    last = 0
    start = 0
    for end in document_ends(data):
        last = start
        start = end
    length = int.from_bytes(data[last:last + 4], "little")
    return bson.decode(data[last:last + length], NATIVE_CODEC)


def projection(fields: Sequence[str] | None) -> dict | None:
    """A find() projection keeping `fields` and `_id` (keys and resume need `_id`)."""
    if fields is None:
        return None
    kept = {name: 1 for name in fields}
    kept["_id"] = 1
    return kept
