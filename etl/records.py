"""The small values every layer hands to the next: partitions, batches, rejects, table specs.

Nothing here knows any engine. A Partition's bounds and a Batch's resume position are
opaque JSON values made and read only by the source that produced them, so the engine and
the state store can persist them without understanding them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Literal, Self

from etl.coltypes import ColumnType, parse_type

Json = Any  # a value json.dumps accepts
RejectStage = Literal["extract", "map", "load"]
"""Where a record was rejected: reading it at the source, mapping it, or loading it into a target."""


class OutOfRangeTime(str):
    """A source's date or time that no Python type holds (PostgreSQL's `infinity` and `-infinity`,
    a year past 9999 or before 1), carried as the server's own text: casts to a date or a time
    refuse it with a reason, so its record is rejected instead of stopping the read."""


@dataclass(frozen=True)
class Partition:
    """A key range of one source table or collection; it can be serialised and shipped anywhere."""

    source: str
    """Name of the source in the job file."""
    table: str
    """Collection or table name at the source (schema-qualified where the engine has schemas)."""
    index: int
    """Position of this partition among the table's partitions (0-based)."""
    count: int
    """How many partitions the table was split into."""
    lower: Json = None
    """Inclusive lower bound of the key, encoded by the source; None means unbounded."""
    upper: Json = None
    """Exclusive upper bound of the key, encoded by the source; None means unbounded."""

    @property
    def id(self) -> str:
        """Stable identifier used for checkpoints: survives re-planning with the same bounds."""
        return f"{self.source}.{self.table}#{self.index}/{self.count}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Partition:
        return cls(**json.loads(text))


@dataclass
class Reject:
    """A record that could not be extracted, mapped or loaded, and why. Goes to the dead-letter store."""

    table: str
    """Source table/collection (or target table for sink rejects)."""
    source_key: str
    """The record's key at the source, as text (e.g. `ObjectId('...')` or `InvoiceId=7`)."""
    reason: str
    """Why, in words a user can act on."""
    stage: RejectStage = "map"
    """Where it was rejected: extract, map or load."""
    field_path: str | None = None
    """The field at fault (`address.zip`, `Invoices[2].Total`), if one is."""
    value_type: str | None = None
    """The Python/BSON type name of the offending value (never the value itself)."""
    record: dict | None = None
    """The record as far as it is safe to keep: PII fields already transformed by the mapping."""
    target: str | None = None
    """For load rejects: the target table that refused the record, `target.table`."""
    raw: dict | None = field(default=None, repr=False, compare=False)
    """The record as the source gave it, only while it travels to a dead-letter store that seals raw
    records (`dead_letter: {raw: encrypted}`); never written in plaintext, never shown in a repr."""


def nested_path(name: str, inner: str = "") -> str:
    """The field path of `inner` (a path inside member `name`, "" for the member itself) seen from the
    enclosing value: a map key joins with a dot (`doc` + `d` -> `doc.d`), a list index (`[2]`) without
    one (`items` + `[2].x` -> `items[2].x`). An empty key is written `""` so that it stays visible."""
    head = name or '""'
    if not inner:
        return head
    return head + inner if inner.startswith("[") else f"{head}.{inner}"


class FieldProblem(Exception):
    """A value that cannot be stored as given: why (`reason`), where (`field_path`, built outward with
    `within` while the problem propagates out of documents and lists) and its type, never the value."""

    def __init__(self, reason: str, field_path: str, value: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field_path = field_path
        self.value_type = type(value).__name__

    def within(self, name: str) -> Self:
        """The same problem, seen from the enclosing member `name` (a key, or `[index]`)."""
        self.field_path = nested_path(name, self.field_path)
        return self


@dataclass
class Batch:
    """A bounded run of source records from one partition, in key order."""

    records: list[dict]
    """Source records, as plain Python values (see docs/types.md)."""
    resume_after: Json
    """Opaque position: reading again with `resume_after=` this value continues after this batch."""
    rejects: list[Reject] = field(default_factory=list)
    """Records the source itself could not decode (corrupt BSON, a date Python cannot hold)."""
    deletes: list[dict] = field(default_factory=list)
    """Records deleted at the source, as key records: the key fields only, named and valued as `records`
    carry them (`{"_id": ...}`, `{"InvoiceId": 7}`). The engine deletes every target row the source
    record made. A key is in `records` or `deletes` of one batch, never both (its last state)."""
    kinds: dict[str, int] = field(default_factory=dict)
    """Change batches only: how many changes of each kind the batch carries (`insert`, `update`,
    `delete`, or `upsert` where the source cannot tell an insert from an update)."""
    at: str | None = None
    """Change batches only: when the last change of the batch happened at the source (ISO 8601 UTC),
    where the source knows; the engine reports the lag from it."""

    @property
    def extracted(self) -> int:
        return len(self.records) + len(self.rejects)


@dataclass(frozen=True)
class Column:
    """One column of a target table (or attribute of a DynamoDB item)."""

    name: str
    type: str
    """A type name of the mapping language: string, int, decimal(p,s), float, bool, date,
    timestamp(p), timestamptz(p), uuid, bytes, json, list, set."""
    nullable: bool = True
    pii: str | None = None
    """The PII transform applied (hmac, mask, redact, year), shown in reports; None when not PII."""

    @cached_property
    def parsed_type(self) -> ColumnType:
        """`type` parsed (once per column); raises ColumnTypeError when it is not a mapping type (a
        restore verification's columns carry the engine's own type names, which checksums read with
        `etl.coltypes.type_of`)."""
        return parse_type(self.type)


@dataclass(frozen=True)
class WriteCondition:
    """A condition every write of a DynamoDB table must meet (an AWS DMS `condition-expression`)."""

    expression: str
    """DynamoDB condition-expression text, e.g. `attribute_not_exists(Version) or Version < :v`."""
    names: tuple[tuple[str, str], ...] = ()
    """(placeholder, attribute name) pairs: `#n` -> `Name`."""
    values: tuple[str, ...] = ()
    """Value placeholders (`:v`); each row carries its value under that name (not an attribute)."""


@dataclass(frozen=True)
class TableSpec:
    """What a mapping writes into one target table; sinks create and check tables from it."""

    target: str
    """Name of the target in the job file."""
    table: str
    """Table name at the target."""
    key: tuple[str, ...]
    """Primary key columns (PostgreSQL) or (partition key, sort key) attribute names (DynamoDB)."""
    columns: tuple[Column, ...]
    parent: str | None = None
    """For a child table exploded from an array: the parent table's name."""
    parent_key: tuple[str, ...] = ()
    """For a child table: the columns that hold the parent's key, named like the parent's key columns.
    They are part of `key` when the child is keyed by (parent key, ordinal); a child with a key of its
    own (e.g. invoice_id) carries them as plain columns."""
    condition: WriteCondition | None = None
    """DynamoDB: a write that does not meet it is refused and rejected (unless the item there is
    already the one written)."""

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)


@dataclass
class TableRows:
    """Rows for one target table from one batch, with the source key of the record behind each row."""

    rows: list[dict] = field(default_factory=list)
    source_keys: list[str] = field(default_factory=list)


class ColumnRows(TableRows):
    """TableRows kept column by column (name -> values in row order), as a column-wise mapping makes
    them: a sink that reads `columns` skips building a dict per row. `rows` builds the dicts on first
    use and from then on they are the rows (`columns` becomes None), so the two never disagree."""

    def __init__(self, columns: dict[str, list], source_keys: list[str]) -> None:
        self.columns: dict[str, list] | None = columns
        self._rows: list[dict] | None = None
        self.source_keys = source_keys

    @property
    def rows(self) -> list[dict]:
        if self._rows is None:
            assert self.columns is not None
            names = tuple(self.columns)
            self._rows = [dict(zip(names, values)) for values in zip(*self.columns.values())]  # noqa: B905
            self.columns = None
        return self._rows

    @rows.setter
    def rows(self, rows: list[dict]) -> None:
        self._rows, self.columns = rows, None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TableRows):
            return NotImplemented
        return (self.rows, self.source_keys) == (other.rows, other.source_keys)
