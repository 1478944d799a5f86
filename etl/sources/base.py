"""What every source offers the engine. Engine specifics stay in each source's own module.

A source module (``etl/sources/<type>.py``) defines:
  * ``Config``: a pydantic model (``extra="forbid"``) of its section in the job file, with
    ``type: Literal["<type>"]`` and ``tables: dict[str, <TableConfig subclass of SourceTable>]``;
  * ``open_source(name, config, limits) -> Source``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field

from etl.records import Batch, Json, Partition
from etl.settings_types import Integer

MAX_PARTITIONS = 10_000
"""Most partitions one table may be split into. Planning keeps every partition's bounds in memory
(and in the state store), so this bound is also what bounds planning memory, whatever a job asks for;
10,000 partitions of even a billion-row table are 100,000 rows each, far past any useful parallelism."""


class SourceTable(BaseModel):
    """Options every source accepts for one table or collection; sources subclass it."""

    model_config = ConfigDict(extra="forbid")

    mapping: str
    """Path of the mapping file, relative to the job file."""
    partitions: Integer = Field(default=1, ge=1, le=MAX_PARTITIONS)
    """How many key ranges to split the table into for parallel extraction (1 to MAX_PARTITIONS)."""


class SampledTable(SourceTable):
    """A table of a schemaless source: its fields are known only from a sample of its records."""

    check_sample: Integer = Field(default=1000, ge=1)
    """Records read when a run starts (and by `--plan`) to warn about mapped paths none of them has."""


@dataclass(frozen=True)
class Catalogue:
    """The columns a relational source's catalogue lists for one table: a name not listed does not exist."""

    names: tuple[str, ...]
    """Exact names, as the source's records carry them."""
    described: str
    """The table for messages: `PostgreSQL table public.track of source 'chinook'`."""
    names_column: Callable[[str, str], bool]
    """`names_column(written, column)`: whether the engine takes the unquoted identifier `written`
    for `column` (PostgreSQL folds it to lower case, Oracle to upper case, SQL Server ignores case)."""
    numbers: frozenset[str] = frozenset()
    """The columns whose values are numbers (integers, decimals, floats)."""
    key: tuple[str, ...] = ()
    """The columns that identify a row, as the source reads the table."""
    types: Mapping[str, str | None] = field(default_factory=dict)
    """Per column, the mapping type that holds its values without loss (`SqlSource.mapping_type`)."""


class TableName(NamedTuple):
    """A table or view (or collection) a source lists (`table_names()`)."""

    schema: str
    """Empty for a source without schemas (a MongoDB database's collections)."""
    table: str
    view: bool = False

    @property
    def full(self) -> str:
        """The name patterns match and the job calls the table: `schema.table`, or `table`."""
        return f"{self.schema}.{self.table}" if self.schema else self.table


class TableSelection(BaseModel):
    """Tables picked by name patterns, each mapped with one mapping template (docs/job-files.md)."""

    model_config = ConfigDict(extra="forbid")

    include: list[str] = Field(min_length=1)
    """Globs (`*`, `?`, `[...]`) matched against `schema.table` (a MongoDB collection's name),
    exactly as the source spells them."""
    exclude: list[str] = []
    """Globs of tables to leave out of those included."""
    mapping: str
    """A mapping file applied to each matched table, with `$(schema)` and `$(table)` replaced."""
    partitions: Integer = Field(default=1, ge=1, le=MAX_PARTITIONS)


@dataclass(frozen=True)
class BatchLimits:
    """A batch ends at whichever limit is reached first; memory never grows with table size."""

    records: int = 5000
    bytes: int = 16 * 1024 * 1024


class Source(Protocol):
    name: str

    def check(self) -> None:
        """Connect and check every configured table exists; raise EtlError naming what does exist."""

    def plan(self, table: str, partitions: int) -> list[Partition]:
        """Split `table` into at most `partitions` key ranges that cover every record exactly once."""

    def read(
        self,
        partition: Partition,
        *,
        resume_after: Json = None,
        fields: Sequence[str] | None = None,
    ) -> Iterator[Batch]:
        """Yield batches in key order, starting after `resume_after` (a Batch.resume_after value).

        `fields`: top-level source fields the mapping uses (projection pushdown); None = all.
        """

    def key_text(self, table: str, record: dict) -> str:
        """The record's key as text for reports and dead letters (never other field values)."""

    def sample(self, table: str, n: int) -> list[dict]:
        """The first `n` records in key order, for `--plan` and notebook previews."""

    def count(self, table: str) -> int | None:
        """How many records `table` holds by the source's own count (`COUNT(*)`, `countDocuments`,
        with the table's filter), not by reading them; None where only reading can tell."""

    # Relational sources also offer `catalogue(table) -> Catalogue`: the engine checks a mapping's
    # source paths against it before data moves; sources without it are checked against `sample`.
    # They also offer `table_names() -> list[TableName]`, every table and view the user can
    # read outside the system schemas, for table selection by pattern and AWS DMS selection rules.

    def close(self) -> None: ...


@dataclass(frozen=True)
class ChangeCapture:
    """How a source finds the changes of one table after a full load (`ChangeSource.change_capture`)."""

    method: str
    """For reports and `--plan`: `change stream`, `watermark updated_at (overlap 300 s)`, `rowversion`..."""
    deletes: bool
    """The changes include deletes. When False the engine finds deleted records itself after applying
    the changes, by asking `missing_keys` about every key it has loaded (`etl/engine/ledger.py`)."""


class ChangeSource(Source, Protocol):
    """A source that can tell what changed since a position (incremental runs, docs/cutover.md).

    A source without these methods, or whose `change_capture(table)` is None, is caught up by reading
    the whole table again; the engine then deletes what the new read no longer has."""

    def change_capture(self, table: str) -> ChangeCapture | None:
        """How changes of `table` are found with its configuration, or None when they cannot be."""

    def change_position(self, table: str) -> Json:
        """Where the changes of `table` start: taken *before* a full load reads the table, so no change
        made during or after the load is missed. JSON that `json.dumps` accepts, opaque to the engine."""

    def changes(self, table: str, position: Json, *, fields: Sequence[str] | None = None,
                wait_ms: int = 0) -> Iterator[Batch]:
        """Batches of what changed after `position` (a `change_position` or `Batch.resume_after` value),
        until no change is waiting (after waiting up to `wait_ms` for one). `records` hold the current
        state of inserted and updated records (filtered by the table's filter: a record that no longer
        matches it is a delete), `deletes` the key records of deleted ones, `kinds` the counts, `at` the
        time of the last change; `resume_after` is the position to store once the batch is committed.
        Replaying from a stored position is harmless: the engine's writes are upserts."""

    def key_of(self, table: str, record: dict) -> Json:
        """The record's key as JSON (equal keys give equal JSON) for `missing_keys`; reads key fields only."""

    def missing_keys(self, table: str, keys: Sequence[Json]) -> list[Json]:
        """Those of `keys` (`key_of` values) with no record at the source now, the table's filter applied:
        the target must no longer hold what they made. Called with at most 1,000 keys at a time."""
