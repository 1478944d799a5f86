"""What every sink offers the engine. Engine specifics stay in each sink's own module.

A sink module (``etl/sinks/<type>.py``) defines:
  * ``Config``: a pydantic model (``extra="forbid"``) of its section in the job file, with
    ``type: Literal["<type>"]``;
  * ``open_sink(name, config) -> Sink``;
  * ``describe_type(column: ColumnType) -> str``: how values of a mapping type are stored there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from etl.records import Reject, TableRows, TableSpec


@dataclass(frozen=True)
class NameLimits:
    """What a target engine does with the names of tables and columns, declared by its sink module
    as `NAME_LIMITS`; mapping files are checked against it when they are loaded."""

    engine: str
    """The engine as messages name it: `PostgreSQL`."""
    identifier_bytes: int | None = None
    """Longer names are cut to this many bytes (UTF-8, never inside a character); None: not cut."""
    reason: str = ""
    """Why, for messages: `NAMEDATALEN-1`."""

    def stored(self, name: str) -> str:
        """The name as the engine keeps it."""
        if self.identifier_bytes is None:
            return name
        return name.encode("utf-8")[: self.identifier_bytes].decode("utf-8", errors="ignore")


@dataclass(frozen=True)
class TargetRules:
    """What a target kind allows, declared by its sink module as `RULES`. The mapping layer reads it
    (`etl.sinks.rules_for`) to check and compile mappings, so a new sink touches no mapping file."""

    engine: str
    """The engine as messages name it: `PostgreSQL`."""
    names: NameLimits
    """What the engine does with the names of tables and columns."""
    child_tables: bool
    """Exploded outputs are child tables of a `parent:` output, replaced with their parent row."""
    key_required: bool
    """Every table that is not a child table declares its `key:`."""
    shared_tables: bool
    """Several outputs may write one table (a single-table design), all with the same key."""
    key_columns: int | None = None
    """The most key columns a table has; None: any number."""
    key_types: frozenset[str] | None = None
    """The column types (`ColumnType.base`) a key column may have; None: any."""
    key_bytes: tuple[int, ...] | None = None
    """The most bytes a key value may have, per key position; None: no limit."""
    omits_nulls: bool = False
    """`nulls: omit` leaves null attributes out of what is written."""
    conditional_writes: bool = False
    """`condition:` makes every write of an output conditional."""
    dms_items: bool = False
    """AWS DMS object-mapping rules (`dms:` outputs) describe this target's items."""


@dataclass
class WriteResult:
    loaded: dict[str, int] = field(default_factory=dict)
    """Rows written per target table (after de-duplicating keys within the batch)."""
    rejects: list[Reject] = field(default_factory=list)
    """Rows the target refused or that failed after every retry (stage="load"), with the reason."""


@dataclass
class CheckResult:
    """What a sink's `check` finds in a batch without writing it (`--profile`, etl/engine/profile.py)."""

    rejects: list[Reject] = field(default_factory=list)
    """The rejects `write` would make of the batch before sending anything (stage="load")."""
    sizes: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    """Per target table, what the engine limits by size: measure -> (largest seen, limit)."""


class Sink(Protocol):
    name: str
    replaces_children: bool
    """Writing or deleting a parent row replaces its child rows (a child table's rows are found by
    their parent key); False when every row must be deleted by its own key."""

    def prepare(self, tables: Sequence[TableSpec], *, empty_at_start: frozenset[str] = frozenset()
                ) -> frozenset[str]:
        """Create missing tables when configured; fail before any data moves when one exists and
        differs (naming table and column). Returns the child tables that hold no row now. The run
        prepares every target once before any partition starts, and gives what that returned to each
        partition's sink as `empty_at_start`: a sink that replaces children need not look for the
        children of a parent row that is new to its table when the child table held no row then."""

    def write(self, batch: Mapping[str, TableRows]) -> WriteResult:
        """Write one batch (target table name -> rows) idempotently; return only once it is durable.

        Writing the same batch twice leaves the target unchanged. Nothing is dropped silently:
        every row is either counted in `loaded` or returned in `rejects`.
        """

    def check(self, tables: Sequence[TableSpec], batch: Mapping[str, TableRows]) -> CheckResult:
        """The checks `write` makes of every value before sending it (encoding, types, sizes), with
        the same rejects, writing nothing and creating nothing; `tables` are the specs of `batch`."""
        ...

    def delete(self, table: TableSpec, keys: Sequence[dict]) -> int:
        """Delete rows by key (differential runs); returns how many were deleted."""

    def read_back(self, table: TableSpec, *, segments: int = 4, consistent: bool = False) -> Iterator[dict]:
        """Stream every row of `table` as it is stored, for validation (bounded memory)."""

    def stored_form(self, table: TableSpec) -> Callable[[dict], dict] | None:
        """How a row of `table` reads back once written, as a function of the row the mapping made, for
        the source side of a validation (both sides then compare what the target holds); None when
        every value reads back as it was written. It applies the writer's own conversion of values the
        target stores in another form (e.g. values inside documents stored as text), so a correct
        row compares equal; a row the writer would refuse is returned as it is."""

    def close(self) -> None: ...


def column_form(
    converters: Mapping[str, Callable[[Any], Any]], refused: type[Exception]
) -> Callable[[dict], dict] | None:
    """A `Sink.stored_form`: each named column's non-null value through its converter (in a copy of
    the row); a value a converter refuses (`refused`) is left as it is. None when no column needs one."""
    if not converters:
        return None
    pairs = tuple(converters.items())

    def stored(row: dict) -> dict:
        row = dict(row)
        for name, convert in pairs:
            value = row.get(name)
            if value is not None:
                try:
                    row[name] = convert(value)
                except refused:
                    pass
        return row

    return stored
