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
import struct
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

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


_LENGTH = struct.Struct("<I").unpack_from
"""A document's length prefix, read in place (no slice, no copy)."""

Buffer = bytes | memoryview
"""Concatenated documents: a run is a memoryview of the bytes it came in whenever it can be."""


def frame(data: Buffer, position: int, stop: int, records: int, max_bytes: int, *,
          started: bool = False) -> tuple[int, int, int]:
    """Walk the whole, well-framed documents of `data` from `position`: at most `records` of
    them, at most `max_bytes` together, each starting before `stop`; at least one unless the
    run was `started` in earlier data.

    Returns (end, count, start of the last one). One length prefix and one byte are read per
    document and nothing is copied; the walk stops early at the first document that is not
    whole in `data` or not framed right (`framing_fault` says which)."""
    size = len(data)
    limit = position + max_bytes
    last = position
    count = 0
    while count < records and position < stop and position + 4 <= size:
        (length,) = _LENGTH(data, position)
        end = position + length
        if length < 5 or length > MAX_DOCUMENT_BYTES or end > size or data[end - 1] \
                or (end > limit and (count or started)):
            break
        last = position
        position = end
        count += 1
    return position, count, last


def framing_fault(data: Buffer, position: int, stop: int | None = None) -> tuple[str, bool] | None:
    """Why the bytes of `data` at `position` do not start a whole, well-framed document, and
    whether more bytes after them could still make it whole; None when they do.

    `stop`, when known, is where the byte range ends (it may lie beyond `data`): a document
    running past it is truncated whatever bytes follow."""
    if min(len(data), len(data) if stop is None else stop) - position < 4:
        return _truncated("length prefix", 4, data, position, stop)
    (length,) = _LENGTH(data, position)
    if length < 5 or length > MAX_DOCUMENT_BYTES:
        return f"implausible document length {length}", False
    if position + length > len(data) or (stop is not None and position + length > stop):
        return _truncated("document", length, data, position, stop)
    if data[position + length - 1]:
        return "document does not end with a NUL byte", False
    return None


def _truncated(what: str, length: int, data: Buffer, position: int, stop: int | None) -> tuple[str, bool]:
    """A document (or its prefix) of `length` bytes at `position` that is not whole: how many of
    its bytes the range holds, and whether bytes still to be read could complete it."""
    if stop is not None and position + length > stop:
        return f"truncated {what} ({stop - position} of {length} bytes)", False
    return f"truncated {what} ({len(data) - position} of {length} bytes)", True


_NEED_MORE = -1


def _resync_end(data: Buffer, position: int, stop: int | None) -> int | None:
    """The end of the document at `position` if it passes the resynchronisation rule (see
    `resync`), None if it does not, `_NEED_MORE` when bytes not yet in `data` decide it."""
    size = len(data)
    if position + 4 > size:
        return None if stop is not None and position + 4 > stop else _NEED_MORE
    (length,) = _LENGTH(data, position)
    end = position + length
    if length < 5 or length > MAX_DOCUMENT_BYTES or (stop is not None and end > stop):
        return None
    if end > size:
        return _NEED_MORE
    if data[end - 1]:
        return None
    try:
        document = bson.decode(data[position:end], NATIVE_CODEC)
    except Exception:  # noqa: BLE001 - any failure means no document starts here
        return None
    return end if "_id" in document else None


def resync(data: Buffer, position: int, stop: int | None) -> tuple[int, bool]:
    """After damage: the first offset from `position` on where a document starts that damage
    cannot fake. Used only once a document failed; the clean path never runs it.

    A document is accepted at offset q when its length prefix is plausible (5 bytes up to
    MAX_DOCUMENT_BYTES) and it fits before `stop`, its last byte is NUL, it decodes completely
    with `bson` (every element type, key, string and nested length consistent), it has an
    `_id`, and it ends exactly at `stop` or is followed by a document that passes the same
    checks. Bytes inside a damaged region rarely pass one of these checks, and a nested
    document or array of the damaged one (which does decode) lacks the `_id` or the valid
    successor; an intact document lacking `_id`, or followed by damage, counts into the
    damaged range, which is reported, never loaded.

    `data` must not extend beyond the byte range; `stop` is where the range ends (it may lie
    beyond `data`), None when not yet known (a gzip stream not read to its end). Returns
    (q, True) for the document found or, when the range holds none, (stop, True); or
    (q, False) when offsets from q on cannot be judged before more bytes are read."""
    size = len(data)
    final = stop is not None and stop <= size
    limit = stop if final and stop is not None else size
    offset = position
    while offset < limit:
        end = _resync_end(data, offset, stop)
        if end == _NEED_MORE:
            return offset, False
        if end is not None:
            if end == stop:
                return offset, True
            successor = _resync_end(data, end, stop)
            if successor == _NEED_MORE:
                return offset, False
            if successor is not None:
                return offset, True
        offset += 1
    return (limit, True) if final else (offset, False)


def document_ends(data: Buffer, start: int = 0) -> Iterator[int]:
    """Yield the end offset of each whole document framed in `data` from `start` on (by length
    alone: the slow path of `decode_run` uses it to reach every document after a bad one).

    Stops at the first incomplete document; the caller compares the last end with len(data)."""
    size = len(data)
    position = start
    while position + 4 <= size:
        (length,) = _LENGTH(data, position)
        if length < 5 or position + length > size:
            return
        position += length
        yield position


class RunCutter:
    """Cuts documents arriving in chunks (server replies) into runs within the limits.

    A run inside one chunk is a memoryview of it; only a run that spans chunks is joined."""

    def __init__(self, limits: BatchLimits) -> None:
        self.limits = limits
        self._pieces: list[memoryview] = []
        self._count = 0
        self._bytes = 0
        self._last = 0

    def feed(self, chunk: bytes) -> Iterator[tuple[Buffer, int]]:
        """Add concatenated documents; yield (run, offset of its last document) for each run they
        complete. Raises InvalidBSON when the chunk is not a sequence of whole documents."""
        data = memoryview(chunk)
        size = len(data)
        position = 0
        while position < size:
            end, count, last = frame(data, position, size, self.limits.records - self._count,
                                     self.limits.bytes - self._bytes, started=self._count > 0)
            if count:
                self._pieces.append(data[position:end])
                self._last = self._bytes + last - position
                self._count += count
                self._bytes += end - position
            position = end
            if position < size:
                fault = framing_fault(data, position)
                if fault is not None:
                    raise bson.errors.InvalidBSON(f"{fault[0]} at byte {position} of a reply")
            if position < size or self._count == self.limits.records:  # a limit was reached
                run = self.flush()
                if run is not None:
                    yield run

    def flush(self) -> tuple[Buffer, int] | None:
        """The unfinished run, if any (at the end of the documents)."""
        if not self._count:
            return None
        run = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
        finished = run, self._last
        self._pieces = []
        self._count = self._bytes = self._last = 0
        return finished


T = TypeVar("T")


def gc_paused(make: Callable[..., T], *args: Any) -> T:
    """`make(*args)` (a batch) with the cyclic garbage collector paused, resumed as the last step.

    Decoding a batch allocates thousands of containers at once; a collection right after
    would scan them all (and promote them, towards full collections), yet they die by
    reference counting when the consumer drops the batch. Nothing is allocated between
    resuming and handing the batch over, so when the consumer frees the previous batch
    first, its deallocations bring the collector's count back down and no pass runs at all."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return make(*args)
    finally:
        if collecting:
            gc.enable()


CorruptHandler = Callable[[int, Exception], Reject]
"""Called with the byte offset (within the decoded run) of a document that does not decode;
returns a Reject to dead-letter it, or raises an EtlError."""


def decode_run(data: Buffer, table: str, on_corrupt: CorruptHandler) -> tuple[list[dict], list[Reject]]:
    """Decode concatenated documents to canonical records; undecodable ones become rejects
    (each one alone: reading goes on at the end of its frame)."""
    view = memoryview(data)
    records: list[dict] = []
    rejects: list[Reject] = []
    start = 0
    while True:
        decoded, dates, bad = decode_intact(view[start:], table)
        records.extend(decoded)
        rejects.extend(dates)
        if bad is None:
            return records, rejects
        offset = start + bad[0]
        rejects.append(on_corrupt(offset, bad[1]))
        end = next(document_ends(view, offset), None)
        if end is None:  # no whole frame: nothing after it can be framed
            return records, rejects
        start = end


def decode_intact(data: Buffer, table: str) -> tuple[list[dict], list[Reject], tuple[int, Exception] | None]:
    """Decode concatenated documents to canonical records up to the first one that does not
    decode: (records, rejects for dates Python cannot hold, (offset, error) of that first
    undecodable document or None).

    The fast path decodes the whole run in C; only a run that fails is redone one document at
    a time to find which document fails and why."""
    try:
        return bson.decode_all(data, CANONICAL_CODEC), [], None
    except Exception:  # noqa: S110 - any failure is narrowed down document by document below
        pass
    records: list[dict] = []
    rejects: list[Reject] = []
    start = 0
    for end in document_ends(data):
        piece = data[start:end]
        try:
            records.extend(bson.decode_all(piece, CANONICAL_CODEC))
        except Exception as error:  # noqa: BLE001 - classified below: a bad date or corruption
            reject = _date_reject(piece, table)
            if reject is None:
                return records, rejects, (start, error)
            rejects.append(reject)
        start = end
    if start != len(data):
        return records, rejects, (start, bson.errors.InvalidBSON("incomplete document"))
    return records, rejects, None


def _date_reject(piece: Buffer, table: str) -> Reject | None:
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
            key = str(name) or '""'  # an empty key stays visible, as in every other field path
            found = _find_path(item, predicate, f"{path}.{key}" if path else key)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _find_path(item, predicate, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def native_document(data: Buffer, offset: int) -> dict:
    """The document of a run that starts at `offset` and ends the run, decoded to native BSON
    types (its exact `_id` and fields make resume positions)."""
    return bson.decode(data[offset:], NATIVE_CODEC)


def projection(fields: Sequence[str] | None) -> dict | None:
    """A find() projection keeping `fields` and `_id` (keys and resume need `_id`)."""
    if fields is None:
        return None
    kept = {name: 1 for name in fields}
    kept["_id"] = 1
    return kept


def project(records: list[dict], fields: Sequence[str]) -> list[dict]:
    """`records` with `_id` and `fields` only, as a server's projection makes them (in document
    order); the same list when no record holds another field, so reading whole documents that
    the mapping reads whole costs one key check each."""
    kept = {"_id", *fields}
    if all(kept.issuperset(record) for record in records):
        return records
    return [{name: value for name, value in record.items() if name in kept} for record in records]
