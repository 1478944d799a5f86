"""Change-stream events of one collection folded into change batches, and positions kept as JSON.

Events arrive as raw BSON (`RAW_CODEC`), so a batch is cut by its documents' real BSON size as well as
their count, and documents are decoded to canonical values once, the way `read` decodes them (a date
Python cannot hold becomes a Reject, not a failed run). Within a batch each `_id` appears once, in its
last state: the full document of an insert, update or replace (`fullDocument`, looked up by the server
for updates), or a delete. `kinds` counts the keys the batch carries: `delete` for a key it deletes,
`insert` for a key whose first event in the batch is an insert, `update` otherwise; so the counts add up
to the records, rejects and deletes of the batch.

A resume token is stored as canonical Extended JSON (a JSON object), never as the driver's BSON
document, so positions pass through `json.dumps` and back unchanged.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import bson
from bson import json_util
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from bson.timestamp import Timestamp

from etl.errors import EtlError
from etl.records import Batch, Json, Reject
from etl.sources import bson_values
from etl.sources.base import BatchLimits
from etl.sources.mongo_keys import key_json

RAW_CODEC: CodecOptions = CodecOptions(document_class=RawBSONDocument)
"""Change events as the server's bytes: sized exactly, decoded by this module."""

HISTORY_LOST = {286, 280}
"""ChangeStreamHistoryLost, and ChangeStreamFatalError which older servers answer in its place."""

DOCUMENT_EVENTS = ("insert", "update", "replace", "delete")
"""Events that change one document (a batch folds these)."""

STREAM_ENDS = ("drop", "rename", "dropDatabase", "invalidate")
"""Events after which the collection's stream has no next change to read."""

_JSON = json_util.CANONICAL_JSON_OPTIONS


def token_to_json(token: Any) -> Json:
    """A resume token (a BSON document, raw or not) as canonical Extended JSON: a plain JSON object."""
    return json.loads(json_util.dumps(token, json_options=_JSON))


def token_from_json(value: Json) -> dict:
    """The resume token of `token_to_json`'s JSON, as the BSON document the server gave."""
    return json_util.loads(json.dumps(value), json_options=_JSON)


def time_text(timestamp: Timestamp | None) -> str | None:
    """A cluster time (BSON Timestamp: seconds and an increment) as ISO 8601 UTC."""
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp.time, datetime.UTC).isoformat()


def position(token: Any, at: Timestamp | None) -> Json:
    """The position after `token`, with the server time of the change (or moment) it stands for."""
    return {"mode": "change_stream", "token": token_to_json(token), "at": time_text(at)}


@dataclass(frozen=True)
class ChangeEvent:
    """What a batch needs of one change event."""

    kind: str
    """`operationType`: insert, update, replace, delete, or an event that ends the stream."""
    key: Any
    """The document's `_id` as records carry it (canonical), None for events without a document."""
    native_key: Any
    """The same `_id` as its BSON value, for queries."""
    document: bytes | None
    """The full document as BSON; None for deletes and for updates of documents deleted since."""
    at: Timestamp | None
    """The event's cluster time."""

    @classmethod
    def of(cls, event: RawBSONDocument) -> ChangeEvent:
        kind = event["operationType"]
        key = native_key = None
        if "documentKey" in event:
            raw_key = event["documentKey"].raw
            key = bson.decode(raw_key, bson_values.CANONICAL_CODEC)["_id"]
            native_key = bson.decode(raw_key, bson_values.NATIVE_CODEC)["_id"]
        full = event.get("fullDocument") if kind in ("insert", "update", "replace") else None
        return cls(kind, key, native_key, None if full is None else full.raw, event.get("clusterTime"))

    @property
    def changes_document(self) -> bool:
        return self.kind in DOCUMENT_EVENTS

    @property
    def ends_stream(self) -> bool:
        return self.kind in STREAM_ENDS

    @property
    def size(self) -> int:
        return len(self.document) if self.document is not None else 0


@dataclass
class _KeyState:
    key: Any
    native_key: Any
    document: bytes | None
    """Last full document; None once deleted."""
    first: str
    """Kind of the key's first event in the batch."""


class ChangeFold:
    """The change events of one batch, folded per `_id` into its last state, within the batch limits."""

    def __init__(self, limits: BatchLimits) -> None:
        self.limits = limits
        self.keys: dict[str, _KeyState] = {}
        self.bytes = 0
        self.token: Any = None
        self.at: Timestamp | None = None

    def __bool__(self) -> bool:
        return bool(self.keys)

    def full(self, event: ChangeEvent) -> bool:
        """Adding `event` would take the batch past a limit (a batch always takes its first key)."""
        if not self.keys:
            return False
        identity = key_json(event.key)
        state = self.keys.get(identity)
        if state is None and len(self.keys) >= self.limits.records:
            return True
        previous = len(state.document) if state is not None and state.document is not None else 0
        return self.bytes - previous + event.size > self.limits.bytes

    def add(self, event: ChangeEvent, token: Any) -> None:
        """Fold in an insert, update, replace or delete; `token` is the position just after it."""
        self.token = token
        self.at = event.at
        if event.kind in ("update", "replace") and event.document is None:
            return  # deleted since the update: its delete event follows
        identity = key_json(event.key)
        state = self.keys.get(identity)
        if state is None:
            state = self.keys[identity] = _KeyState(event.key, event.native_key, None, event.kind)
        elif state.document is not None:
            self.bytes -= len(state.document)
        state.document = event.document
        self.bytes += event.size

    def pending_keys(self) -> list[Any]:
        """The BSON `_id`s of keys whose last state is a document (to check against the table's filter)."""
        return [state.native_key for state in self.keys.values() if state.document is not None]

    def batch(self, table: str, fields: Sequence[str] | None, matching: set[str] | None,
              on_corrupt: bson_values.CorruptHandler) -> Batch:
        """The batch: `matching` holds the key JSON of the documents that match the table's filter
        (None: no filter), the others are deletes (they may have been loaded when they matched)."""
        kept: list[bytes] = []
        deletes: list[dict] = []
        kinds: dict[str, int] = {}
        for identity, state in self.keys.items():
            if state.document is None or (matching is not None and identity not in matching):
                deletes.append({"_id": state.key})
                kind = "delete"
            else:
                kept.append(state.document)
                kind = "insert" if state.first == "insert" else "update"
            kinds[kind] = kinds.get(kind, 0) + 1
        records: list[dict] = []
        rejects: list[Reject] = []
        if kept:
            records, rejects = bson_values.decode_run(b"".join(kept), table, on_corrupt)
        if fields is not None:
            records = bson_values.project(records, fields)
        return Batch(records, position(self.token, self.at), rejects, deletes=deletes, kinds=kinds,
                     at=time_text(self.at))


def stream_end_error(source: str, table: str, kind: str) -> EtlError:
    """The error for an event after which the collection's changes cannot be followed."""
    what = {"drop": "was dropped", "rename": "was renamed", "dropDatabase": "lost its database (dropped)",
            "invalidate": "has a change stream that the server invalidated"}[kind]
    return EtlError(f"source {source!r}: collection {table!r} {what} (change stream event {kind!r}); "
                    "its changes cannot be followed from the stored position",
                    hint="run a full load again (`--full-refresh`)")


def history_lost_error(source: str, table: str, code: int) -> EtlError:
    return EtlError(f"source {source!r}: collection {table!r}: the stored change-stream position is too "
                    f"old: the server's oplog no longer holds it (code {code})",
                    hint="the changes since then are lost to the change stream; run a full load again "
                         "(`--full-refresh`), and catch up more often than the oplog window")
