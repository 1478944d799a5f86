"""Replaying MongoDB oplog entries onto documents, per key, idempotently.

A mongodump taken with `--oplog` holds base data copied while writes went on, plus the oplog
entries of that time; applying them after the base data gives the database as it was at the
dump's last oplog timestamp (https://www.mongodb.com/docs/database-tools/mongodump/#std-option-mongodump.--oplog).
Oplog entries are idempotent by design: applying one to a document that already reflects it
changes nothing.

`OplogReplay` folds a collection's entries into, per `_id`:
  * a *settled* state the oplog alone decides (the last insert, replacement or delete, with
    the later modifications already applied), or
  * *pending* modifications that still need the base document.
So base partitions and the oplog can be read in any order: a base document whose key is
settled is skipped, one with pending modifications has them applied.

A dump's oplog is input like any file: an entry that cannot be replayed (an unknown operation, a
field missing or of the wrong type, an array index no document could reach) raises
`OplogEntryError` carrying the entry's `origin` (the caller's byte offset), when it is added or
when its update is applied to a base document, never a bare Python exception.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from etl.errors import EtlError
from etl.sources.bson_values import MAX_DOCUMENT_BYTES, value_text

DELETED = object()
"""Settled state of a key whose last full operation was a delete."""


@dataclass
class KeyHistory:
    key: Any
    settled: Any = None
    """The full document, DELETED, or None while only modifications were seen."""
    pending: list[tuple[dict, Any]] = field(default_factory=list)
    """Modifications (update documents, each with the origin of its entry) to apply to the base
    document, in order."""


MAX_ARRAY_INDEX = MAX_DOCUMENT_BYTES // 3
"""No BSON document can hold an array element past this (each takes at least 3 bytes): an update
naming a larger index is damage, and padding an array to it would exhaust memory."""

_SHAPE_ERRORS = (AttributeError, IndexError, KeyError, TypeError, ValueError, RecursionError)
"""What an entry with a missing field or a field of the wrong type raises while it is replayed."""


class OplogEntryError(EtlError):
    """An oplog entry that cannot be replayed; `origin` says where it is (set by `OplogReplay`)."""

    def __init__(self, reason: str, origin: Any = None,
                 hint: str = "restore this dump with mongorestore --oplogReplay instead") -> None:
        self.reason = reason
        self.origin = origin
        super().__init__(reason, hint=hint)


def _shape_error(error: Exception, origin: Any) -> OplogEntryError:
    return OplogEntryError(f"oplog entry of an unexpected shape ({type(error).__name__}): a field is "
                           "missing or of the wrong type", origin, hint="take the dump again")


def _shown(value: Any) -> str:
    """An entry's value in a message: short text as written, anything else by its type only."""
    return repr(value) if isinstance(value, str) and len(value) <= 20 else f"of type {type(value).__name__}"


class OplogReplay:
    """The oplog entries of one namespace, folded per key."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.keys: dict[str, KeyHistory] = {}
        self.last_ts: Any = None
        self.entries = 0

    def add_all(self, entries: Iterable[dict]) -> None:
        for entry in entries:
            self.add(entry)

    def add(self, entry: dict, origin: Any = None) -> None:
        """Fold one entry in; `origin` (e.g. its byte offset) is kept with a pending update and set
        on any OplogEntryError it causes."""
        try:
            self._add(entry, origin)
        except OplogEntryError as error:
            if error.origin is None:
                error.origin = origin
            raise
        except _SHAPE_ERRORS as error:
            raise _shape_error(error, origin) from None

    def _add(self, entry: dict, origin: Any) -> None:
        self.last_ts = entry.get("ts", self.last_ts)
        operation = entry.get("op")
        if operation == "c" and isinstance(entry.get("o"), dict) and "applyOps" in entry["o"]:
            for inner in entry["o"]["applyOps"]:
                self._add({**inner, "ts": entry.get("ts")}, origin)
            return
        if entry.get("ns") != self.namespace:
            if operation == "c":
                self._check_command(entry)
            return
        self.entries += 1
        if operation == "i":
            document = entry["o"]
            self._settle(document["_id"], document)
        elif operation == "d":
            self._settle(entry["o"]["_id"], DELETED)
        elif operation == "u":
            key = entry.get("o2", {}).get("_id")
            update = entry["o"]
            if is_replacement(update):
                self._settle(key, {"_id": key, **{k: v for k, v in update.items() if k != "_id"}})
                return
            history = self._history(key)
            if history.settled is None:
                history.pending.append((update, origin))
            elif history.settled is not DELETED:
                apply_update(history.settled, update)
        elif operation != "n":
            raise OplogEntryError(f"oplog entry for {self.namespace} with op {_shown(operation)} cannot be "
                                  "replayed")

    def _check_command(self, entry: dict) -> None:
        database, collection = self.namespace.split(".", 1)
        if entry["ns"] != f"{database}.$cmd":
            return
        command = entry.get("o", {})
        for name in ("drop", "renameCollection", "convertToCapped", "emptycapped"):
            target = command.get(name)
            if target == collection or (isinstance(target, str) and target == self.namespace):
                raise OplogEntryError(f"the dump's oplog {name}s {self.namespace} during the dump; its data "
                                      "has no consistent point", hint="take a new dump")

    def _history(self, key: Any) -> KeyHistory:
        identity = value_text(key)
        history = self.keys.get(identity)
        if history is None:
            history = self.keys[identity] = KeyHistory(key)
        return history

    def _settle(self, key: Any, state: Any) -> None:
        history = self._history(key)
        history.settled = copy.deepcopy(state) if state is not DELETED else DELETED
        history.pending = []

    def on_base(self, document: dict) -> dict | None:
        """The document to load for a base document: None when the oplog settles its key."""
        history = self.keys.get(value_text(document.get("_id")))
        if history is None:
            return document
        if history.settled is not None:
            return None
        for update, origin in history.pending:
            try:
                apply_update(document, update)
            except OplogEntryError as error:
                error.origin = origin
                raise
            except _SHAPE_ERRORS as error:
                raise _shape_error(error, origin) from None
        return document

    def settled(self) -> list[KeyHistory]:
        """Keys whose state the oplog decides, in a stable order (for resuming by position)."""
        return [history for identity, history in sorted(self.keys.items()) if history.settled is not None]


def is_replacement(update: dict) -> bool:
    return not any(name.startswith("$") or name == "diff" for name in update)


def apply_update(document: dict, update: dict) -> None:
    """Apply an oplog update: `$set`/`$unset` (format 1) or a `$v: 2` delta (`diff`)."""
    if "diff" in update:
        _apply_diff(document, update["diff"])
        return
    for path, value in update.get("$set", {}).items():
        _set_path(document, path.split("."), copy.deepcopy(value))
    for path in update.get("$unset", {}):
        _unset_path(document, path.split("."))
    unknown = set(update) - {"$set", "$unset", "$v"}
    if unknown:
        raise OplogEntryError(f"oplog update uses {', '.join(sorted(map(str, unknown)))}, which cannot be "
                              "replayed")


def _apply_diff(target: Any, diff: dict) -> None:
    """The `$v: 2` delta format: u (update), i (insert), d (delete), s<name> (sub-diff);
    for arrays a: true, u<index>, s<index>, l (new length)."""
    if isinstance(target, list) or diff.get("a") is True:
        _apply_array_diff(target, diff)
        return
    for name in diff.get("d", {}):
        target.pop(name, None)
    for name, value in {**diff.get("u", {}), **diff.get("i", {})}.items():
        target[name] = copy.deepcopy(value)
    for name, sub in diff.items():
        if name.startswith("s") and len(name) > 1 and isinstance(sub, dict):
            _apply_diff(target.setdefault(name[1:], {}), sub)


def _apply_array_diff(array: list, diff: dict) -> None:
    if "l" in diff:
        del array[diff["l"]:]
    for name, value in diff.items():
        if name.startswith("u") and name[1:].isdigit():
            index = _array_index(name[1:])
            array.extend([None] * (index + 1 - len(array)))
            array[index] = copy.deepcopy(value)
        elif name.startswith("s") and name[1:].isdigit():
            _apply_diff(array[int(name[1:])], value)


def _set_path(target: Any, parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        if isinstance(target, list):
            target = target[int(part)]
        else:
            target = target.setdefault(part, {})
    last = parts[-1]
    if isinstance(target, list):
        index = _array_index(last)
        target.extend([None] * (index + 1 - len(target)))
        target[index] = value
    else:
        target[last] = value


def _unset_path(target: Any, parts: list[str]) -> None:
    for part in parts[:-1]:
        try:
            target = target[int(part)] if isinstance(target, list) else target[part]
        except (KeyError, IndexError, ValueError):
            return
    last = parts[-1]
    if isinstance(target, list):
        if last.isdigit() and int(last) < len(target):
            target[int(last)] = None  # $unset on an array element leaves null in place
    elif isinstance(target, dict):
        target.pop(last, None)


def _array_index(text: str) -> int:
    index = int(text)
    if not 0 <= index <= MAX_ARRAY_INDEX:
        raise OplogEntryError(f"oplog update sets array element {index}, which no BSON document can hold",
                              hint="take the dump again")
    return index
