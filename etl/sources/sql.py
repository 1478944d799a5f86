"""The generic SQL source: introspection, keyset pagination, partition planning and batching.

Engine modules (`postgres.py`, `oracle.py`, `mssql.py`) subclass `SqlSource` and override only
what differs — quoting, placeholders, row limits, catalog queries, type conversions and how a
consistent snapshot is taken — the way sqlglot's `dialects/` override one generic dialect.
Everything here is plain SQL built from quoted identifiers and bound parameters; the only SQL
text taken from the user is a table's `where:` filter, which the job file's author owns.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from operator import itemgetter
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from etl.errors import ConnectionFailed, EtlError, did_you_mean
from etl.records import Batch, Json, Partition, Reject
from etl.redact import RedactedRepr
from etl.settings_types import Integer, described
from etl.sources import sqlnested
from etl.sources.base import (
    MAX_PARTITIONS,
    BatchLimits,
    Catalogue,
    ChangeCapture,
    SourceTable,
    TableName,
    TableSelection,
)
from etl.sources.rowrecords import RecordMaker, record_maker
from etl.sources.sqltypes import (
    Converter,
    Truncated,
    ValueRejected,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)

log = logging.getLogger(__name__)

MARK_METHODS = frozenset({"watermark", "rowversion", "scn"})
"""Change methods that read the rows whose change mark (a column, rowversion or ORA_ROWSCN) is at or
after a stored value; the others read the engine's own record of changes (`log_changes`)."""
DEFAULT_OVERLAP_SECONDS = 600
"""`overlap:` of a date/time watermark when the job does not set it (docs/relational.md)."""


class SqlChild(BaseModel):
    """A child table read with its parent (docs/relational.md, "Nested records"): its rows whose
    `parent_key` equals a parent row's key become a list field of that parent's record."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    table: str
    """The child table: `name` or `schema.name`, found as a source table is."""
    parent_key: list[str] = Field(min_length=1)
    """The child's columns that hold its parent's key, in the order of the parent's `key`."""
    key: list[str] | None = None
    """Columns that order the rows of one parent (and identify them under it, for its own children);
    default: the primary key, else a NOT NULL unique index."""
    where: str | None = None
    """A filter in the source's dialect on the child's own columns: rows it rejects are left out."""
    schema_: str | None = Field(default=None, alias="schema")
    children: dict[str, SqlChild] = Field(default_factory=dict)
    """This child's own children, read the same way (any depth)."""


class SqlTable(SourceTable):
    """Options for one table of a relational source."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    key: list[str] | None = None
    """Columns that identify a row, in order; default: the primary key, else a NOT NULL unique index."""
    where: str | None = None
    """A filter in the source's own SQL dialect, ANDed to every query (written by the job's author)."""
    changes: str | None = None
    """How incremental runs find changes (docs/relational.md): `watermark` on every engine, PostgreSQL
    `logical`, SQL Server `rowversion` / `change_tracking`, Oracle `scn`; each engine's table options
    narrow it to its own methods. Default: `watermark` when `watermark:` is set, else none (an
    incremental run reads the whole table again)."""
    watermark: str | None = None
    """The column `changes: watermark` reads (grows on every change: `updated_at`); with
    `changes: rowversion`, the rowversion column (default: the table's one)."""
    overlap: float | None = Field(default=None, ge=0)
    """`changes: watermark`: how far before the stored watermark each incremental read starts, in
    seconds for date/time columns (default 600), in the column's own units for numbers (default 0)."""
    since: Json = None
    """No longer read: refused with a hint (an incremental run keeps its own position)."""
    schema_: str | None = Field(default=None, alias="schema")
    """Schema (owner) of the table; default: the part before the first dot, else the user's default."""
    children: dict[str, SqlChild] = Field(default_factory=dict)
    """Child tables read with this one: field name in the record -> child (docs/relational.md)."""
    query: str | None = None
    """A SELECT in the source's dialect read instead of a table (a join that is not parent/child);
    needs `key:`, columns its result set holds that identify each row."""

    @field_validator("since", mode="before")
    @classmethod
    def _refuse_since(cls, value: Any) -> Any:
        raise described(
            "`since:` is no longer read: a full read of a slice was validated against the whole target;"
            " catch up with an incremental run instead: python -m etl.run job.yaml --incremental"
            " (set `changes:`/`watermark:` on the table, docs/relational.md)"
        )

    @model_validator(mode="after")
    def _method_needs(self) -> SqlTable:
        if self.changes is None and self.watermark is not None:
            self.changes = "watermark"
        if self.changes == "watermark" and self.watermark is None:
            raise described("`changes: watermark` needs `watermark:`, the column that grows on every change")
        if self.overlap is not None and self.changes != "watermark":
            raise described("`overlap:` is a setting of `changes: watermark` only")
        if self.children and self.changes is not None:
            raise described(
                f"`changes: {self.changes}` cannot be used on a table with `children:`: a changed child row"
                " must re-emit its parent's whole record, which no change method can tell; remove `changes:`"
                " (and `watermark:`): an incremental run then reads the table and its children again"
            )
        if self.query is not None:
            if not self.key:
                raise described("a `query:` table needs `key:`, columns of its result that identify each row")
            if self.changes is not None or self.schema_ is not None:
                raise described("a `query:` table takes no `changes:`, `watermark:` or `schema:`")
        return self


class DmsTableMapping(BaseModel):
    """An AWS DMS table-mapping document used as the mappings of this source (docs/mapping.md)."""

    model_config = ConfigDict(extra="forbid")

    mapping: str
    """The DMS JSON document, relative to the job file."""
    target: str
    """The DynamoDB target of the job its object-mapping rules write."""
    partitions: Integer = Field(default=1, ge=1, le=MAX_PARTITIONS)


class SqlSourceConfig(RedactedRepr, BaseModel):
    """Settings every relational source shares; each engine adds its connection settings."""

    model_config = ConfigDict(extra="forbid")

    tables: dict[str, SqlTable] = {}
    select: list[TableSelection] = []
    """Tables picked by patterns when the job starts; a table also under `tables` keeps its own entry."""
    dms: DmsTableMapping | None = None
    """Tables picked and mapped by an AWS DMS table-mapping document when the job starts."""
    consistent: bool = True
    """Read every partition of the run at one point in time (snapshot / SCN) where the engine can."""
    page_rows: Integer = Field(default=100_000, ge=1)
    """Rows per keyset page: a query reads at most this many; the next starts after its last key."""

    def add_table(self, name: str, mapping: str, partitions: int) -> SqlTable:
        """Add a table picked when the job starts (by `select` or `dms`) and return its entry."""
        self.tables[name] = SqlTable(mapping=mapping, partitions=partitions)
        return self.tables[name]

    @model_validator(mode="after")
    def _some_tables(self) -> SqlSourceConfig:
        if "tables" not in self.model_fields_set and not self.select and self.dms is None:
            raise ValueError("name the tables to read: `tables`, `select` (patterns) or `dms` "
                             "(a DMS document)")
        return self


@dataclass(frozen=True)
class SqlColumn:
    """One column as the catalog describes it."""

    name: str
    """Exact name in the catalog."""
    type: str
    """The engine's type name, upper case and without sizes (NUMBER, TIMESTAMP WITH TIME ZONE, INT4)."""
    precision: int | None = None
    scale: int | None = None
    """Numeric scale, or fractional-second digits for time types."""
    length: int | None = None
    """Declared maximum length in characters or bytes; None when unbounded (LOB, text, MAX)."""
    nullable: bool = True


@dataclass(frozen=True)
class TableMeta:
    """What introspection found for one configured table."""

    name: str
    """The table's name in the job file."""
    schema: str | None
    table: str
    """Exact name in the catalog."""
    columns: tuple[SqlColumn, ...]
    key: tuple[str, ...]
    query: str | None = None
    """The SELECT of a `query:` table, read as a derived table instead of `schema.table`."""

    def column(self, name: str) -> SqlColumn:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)


@dataclass
class ReadPlan:
    """How rows of one table come back: the select list, converters and where the raw key sits."""

    names: list[str]
    expressions: list[str]
    converters: list[Converter | None]
    key_positions: list[int]
    fixed_width: int
    extra_positions: list[int] = field(default_factory=list)
    """Where the `extra` expressions of `SqlSource.read_plan` sit in a row (after the record's)."""
    measured: list[int] = field(default_factory=list)
    """Positions of unbounded columns whose size is measured per row (str/bytes: their len)."""
    measured_objects: list[int] = field(default_factory=list)
    """Positions of unbounded columns holding objects (arrays), measured by their text form."""
    by_name: bool = False
    """The driver hands each row over as the record itself (made by `make_record`), so the
    fields above are read by name; only when every selected column is a record field and no key
    column is converted, so the raw key stays in the record."""
    make_record: RecordMaker = field(init=False, repr=False, compare=False)
    """Driver row -> {name: value} for `names` (extra raw key columns at the end are left out)."""

    def __post_init__(self) -> None:
        self.make_record = record_maker(self.names)

    def row_size(self, row: Any, measured: list[int] | list[str] | None = None) -> int:
        """Bytes a driver row is taken to hold: the fixed widths and its unbounded values' sizes."""
        if measured is None:
            measured = self.fields(self.measured + self.measured_objects)
        return self.fixed_width + sum(_size(row[i]) for i in measured)

    def fields(self, positions: list[int]) -> list[int] | list[str]:
        """How to index a driver row for these positions: the position, or the name (`by_name`)."""
        return [self.names[position] for position in positions] if self.by_name else positions


@dataclass(frozen=True)
class MarkScan:
    """One `changes` read of a mark method, planned before the read's own transaction begins."""

    mark: str
    """SQL of the mark: the watermark column, the rowversion column, ORA_ROWSCN."""
    low: Any
    """Rows with mark >= low are read (None: every row)."""
    high: Any = None
    """Only rows with mark < high are read (SQL Server's MIN_ACTIVE_ROWVERSION()); None: no bound."""
    at: Json = None
    """Where the read happens (`from_clause`/`begin_read`: Oracle's SCN)."""
    cap: Any = None
    """A position stored by this read never passes it (the start of the oldest transaction in progress)."""
    final: Any = None
    """The position once every row is read; None: the highest mark read, capped by `cap`."""


class Params:
    """Collects bound parameters; the dialect decides how a placeholder is written."""

    def __init__(self, placeholder: Callable[[int], str]) -> None:
        self.values: list[Any] = []
        self._placeholder = placeholder

    def add(self, value: Any) -> str:
        self.values.append(value)
        return self._placeholder(len(self.values) - 1)


class SqlSource:
    """A relational source; subclasses set the dialect-specific parts."""

    engine: ClassVar[str] = "sql"
    """Name used in messages (PostgreSQL, Oracle, SQL Server)."""
    row_value_comparison: ClassVar[bool] = True
    """Whether `(a, b) > (x, y)` is valid SQL; otherwise it is expanded."""
    integer_types: ClassVar[frozenset[str]] = frozenset()
    """Type names whose key ranges are split arithmetically (min/max) instead of by quantiles."""
    number_types: ClassVar[frozenset[str]] = frozenset()
    """Other type names whose values are numbers (decimals, floats), as the catalogue spells them."""
    pseudo_columns: ClassVar[frozenset[str]] = frozenset()
    """Names accepted as `watermark:` without being table columns (ORA_ROWSCN)."""
    records_by_driver: ClassVar[bool] = False
    """Whether `records_cursor` can have the driver build each record dict (see `ReadPlan.by_name`)."""

    def __init__(self, name: str, config: SqlSourceConfig, limits: BatchLimits) -> None:
        self.name = name
        self.config = config
        self.limits = limits
        self.warnings: Counter[str] = Counter()
        """What the run report must show -> how often: 'table.column: sub-microsecond digits dropped'
        (values kept with less precision, docs/types.md) and consistency fallbacks."""
        self._metas: dict[str, TableMeta] = {}
        self._meta_connection: Any = None
        self._consistency_point: Json = None
        self._catalog_lock = threading.RLock()

    # --- dialect: SQL text ------------------------------------------------------------

    def quote(self, identifier: str) -> str:
        return '"' + identifier.replace('"', '""') + '"'

    def names_column(self, written: str, column: str) -> bool:
        """Whether the unquoted identifier `written` names `column` under the engine's folding rule."""
        raise NotImplementedError

    def placeholder(self, index: int) -> str:
        return "%s"

    def user_sql(self, text: str) -> str:
        """SQL text from the job file (`where:`, `query:`) as it goes into a statement with bound
        parameters (PostgreSQL doubles `%`, which psycopg would take for a placeholder)."""
        return text

    def new_params(self) -> Params:
        return Params(self.placeholder)

    def bind(self, params: Params) -> Any:
        return params.values

    def qualified(self, meta: TableMeta) -> str:
        if meta.query is not None:
            return f"({self.user_sql(meta.query)}) {self.quote('etl_q')}"
        table = self.quote(meta.table)
        return f"{self.quote(meta.schema)}.{table}" if meta.schema else table

    def from_clause(self, meta: TableMeta, at: Json) -> str:
        """The table as it appears after FROM; Oracle adds its flashback clause here."""
        return self.qualified(meta)

    def select_sql(
        self, columns: str, from_: str, conditions: list[str], order: str, limit: int | None
    ) -> str:
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        return f"SELECT {columns} FROM {from_}{where} ORDER BY {order}{tail}"

    def column_expression(self, column: SqlColumn) -> str:
        """What to select for a column; a type Python cannot hold exactly is selected as text."""
        return self.quote(column.name)

    def converter(self, column: SqlColumn) -> Converter | None:
        """Driver value -> canonical value for this column; None when the driver's value is canonical."""
        return None

    def mapping_type(self, column: SqlColumn) -> str | None:
        """The mapping type (docs/mapping.md, "Types and casts") that holds this column's canonical values
        without loss, for `--scaffold`; text for a type the engine module does not name; None when no
        mapping type holds them (an interval, read as a `timedelta`)."""
        return "string"

    def is_integer(self, column: SqlColumn) -> bool:
        """Whether key ranges on this column are split arithmetically (min/max) instead of by NTILE."""
        return column.type in self.integer_types

    def width(self, column: SqlColumn) -> int | None:
        """Bytes a value takes at most, for batch sizing; None = measure each value."""
        return 8 if column.length is None else column.length

    def exact_key(self, column: SqlColumn) -> bool:
        """Whether the driver returns this column's values exactly, as keyset positions need."""
        return True

    def holds_objects(self, column: SqlColumn) -> bool:
        """Whether an unbounded column's values are objects (arrays) rather than str/bytes."""
        return False

    # --- dialect: connections and catalog -------------------------------------------------

    def connect(self) -> Any:
        """A new DB-API connection; raises ConnectionFailed (without secrets) when it cannot."""
        raise NotImplementedError

    def open_cursor(self, connection: Any, fetch_rows: int) -> Any:
        cursor = connection.cursor()
        cursor.arraysize = fetch_rows
        return cursor

    def unloadable(self, error: Exception) -> bool:
        """Whether `error` is the driver refusing to make a Python value of a value the server sent
        (PostgreSQL's infinite timestamps): the page is then read again through `tolerate_unloadable`.
        The server's own errors are not: they stop the read as they are."""
        return False

    def tolerate_unloadable(self, cursor: Any) -> None:
        """Make `cursor` load the values `unloadable` refuses as `OutOfRangeTime`s, which
        the mapping rejects with a reason (slower: only for a page that needs it, and after it)."""
        raise NotImplementedError

    def records_cursor(self, cursor: Any, make_record: RecordMaker) -> None:
        """Make `cursor` return `make_record(row)` for each row, called as the driver decodes the
        row (only called when `records_by_driver`)."""
        raise NotImplementedError

    def execute(self, cursor: Any, sql: str, params: Params) -> None:
        cursor.execute(sql, self.bind(params))

    def begin_read(self, connection: Any, at: Json) -> None:
        """Start the transaction a partition is read in (snapshot isolation, imported snapshot...)."""

    def planning_connection(self) -> Any:
        """Where plan-time queries run: inside the run's snapshot where the engine shares one."""
        return self._metadata_connection()

    def consistency_point(self, connection: Any) -> Json:
        """A point in time every partition of this run reads at (SCN, snapshot id), or None."""
        return None

    def find_tables(self, connection: Any, schema: str | None, table: str) -> list[tuple[str, str]]:
        """(schema, table) pairs whose names equal `schema`/`table` ignoring case."""
        raise NotImplementedError

    def default_schema(self, connection: Any) -> str:
        raise NotImplementedError

    def columns(self, connection: Any, schema: str, table: str) -> list[SqlColumn]:
        raise NotImplementedError

    def primary_key(self, connection: Any, schema: str, table: str) -> list[str]:
        raise NotImplementedError

    def unique_keys(self, connection: Any, schema: str, table: str) -> list[list[str]]:
        """Column lists of unique indexes or constraints (without expressions or predicates)."""
        raise NotImplementedError

    def query_columns(self, connection: Any, query: str) -> list[SqlColumn]:
        """The columns of a `query:` table's result set, typed as the catalog would type them."""
        raise NotImplementedError

    def some_tables(self, connection: Any, schema: str | None) -> list[str]:
        """A few table names that do exist, for the message when a configured one does not."""
        return []

    def all_tables(self, connection: Any) -> list[tuple[str, str, bool]]:
        """(schema, table, is a view) of every table and view outside the system schemas."""
        raise NotImplementedError

    # --- the Source protocol --------------------------------------------------------------

    def check(self) -> None:
        for table in self.config.tables:
            self.describe(table)
            sqlnested.tree(self, table, None)  # every child table, its key and `parent_key`
            self.change_capture(table)  # a `changes:` method the table cannot have stops here

    def plan(self, table: str, partitions: int) -> list[Partition]:
        meta = self.describe(table)
        with self._catalog_lock:
            at = self._point(self._metadata_connection())
            connection = self.planning_connection()
            self._refuse_null_keys(connection, meta, at)
            if meta.query is not None:
                self._refuse_repeated_keys(connection, meta, at)
            cuts = self._cuts(connection, meta, partitions, at) if partitions > 1 else []
        bounds = [None, *cuts, None]
        extras = {} if at is None else {"at": at}
        plan = []
        for index in range(len(bounds) - 1):
            lower = dict(extras)
            if bounds[index] is not None:
                lower["key"] = encode_key([bounds[index]])
            upper = encode_key([bounds[index + 1]]) if bounds[index + 1] is not None else None
            plan.append(Partition(self.name, table, index, len(bounds) - 1, lower or None, upper))
        return plan

    def read(
        self,
        partition: Partition,
        *,
        resume_after: Json = None,
        fields: Sequence[str] | None = None,
    ) -> Iterator[Batch]:
        meta = self.describe(partition.table)
        plan = self.read_plan(meta, fields)
        after = decode_key(resume_after) if resume_after is not None else None
        page_rows = self.config.page_rows
        lower = partition.lower or {}
        connection = self.connect()
        try:
            self.begin_read(connection, lower.get("at"))
            pages = self.pages(
                connection,
                plan,
                lambda last: self.page_query(meta, plan, partition, last, page_rows),
                plan.fields(plan.key_positions),
                after,
            )
            root = sqlnested.tree(self, partition.table, fields)
            if root.children:
                yield from sqlnested.read_nested(self, connection, root, partition, after, plan, pages)
                return
            for chunk in pages:
                yield self.to_batch(meta, plan, chunk)
        finally:
            connection.close()

    def key_range(self, partition: Partition) -> tuple[str | None, str | None]:
        """The partition's bounds as key text (`InvoiceId=1001`; None: unbounded), for people: its
        encoded bounds also carry the run's snapshot id or SCN, which says nothing about the range."""
        first = self.describe(partition.table).key[0]
        lower = (partition.lower or {}).get("key")
        return tuple(  # type: ignore[return-value]
            None if bound is None else _key_text([first], decode_key(bound)[:1])
            for bound in (lower, partition.upper))

    def pages(
        self,
        connection: Any,
        plan: ReadPlan,
        page: Callable[[tuple | None], tuple[str, Params]],
        order: list[int] | list[str],
        after: tuple | None,
    ) -> Iterator[list]:
        """Chunks of driver rows (one batch each) of keyset pages: `page(after)` is the query of the
        rows after `after` (the values at `order` of the previous page's last row), in that order."""
        rows_per_batch = self._rows_per_batch(plan)
        page_rows = self.config.page_rows
        fetch_rows = min(rows_per_batch, page_rows)
        tolerant = False
        while True:
            sql, params = page(after)
            cursor = self.open_cursor(connection, fetch_rows)
            again = False
            try:
                if tolerant:
                    self.tolerate_unloadable(cursor)
                if plan.by_name:
                    self.records_cursor(cursor, plan.make_record)
                self.execute(cursor, sql, params)
                seen = 0
                while True:
                    try:
                        rows = cursor.fetchmany(fetch_rows)
                    except Exception as error:
                        if tolerant or not self.unloadable(error):
                            raise
                        # Nothing of this fetch went out: read on from `after` with tolerant loaders.
                        again = tolerant = True
                        break
                    if not rows:
                        break
                    seen += len(rows)
                    # Before the batches go out: their records may be the rows themselves.
                    after = tuple(rows[-1][index] for index in order)
                    yield from self._split_by_bytes(rows, plan, rows_per_batch)
            finally:
                cursor.close()
            if not again and seen < page_rows:
                return

    def key_text(self, table: str, record: dict) -> str:
        # Called once per record: skip the catalog lock once the table is described, and the
        # generator and join for the common one-column key (same text as `_key_text`).
        meta = self._metas.get(table) or self.describe(table)
        if len(meta.key) == 1:
            name = meta.key[0]
            value = record.get(name)
            return f"{name}={value}" if isinstance(value, int | Decimal) else f"{name}={value!r}"
        return _key_text(meta.key, [record.get(name) for name in meta.key])

    def count(self, table: str) -> int | None:
        meta = self.describe(table)
        params = Params(self.placeholder)
        sql = self.aggregate_sql("COUNT(*)", meta, None, self._filters(meta, params))
        with self._catalog_lock:
            ((count,),) = self._query(self._metadata_connection(), sql, params)
        return int(count)

    version_sql: ClassVar[str | None] = None
    """A query whose one value names the server's version (`--check`); None: not asked."""
    estimate_sql: ClassVar[str | None] = None
    """A query of the catalogue's row estimate for (schema, table), without reading the table."""

    def server_version(self) -> str | None:
        """The server's version as it reports it (`--check`), or None where this engine is not asked."""
        if self.version_sql is None:
            return None
        with self._catalog_lock:
            connection = self._metadata_connection()
            ((version,),) = self._query(connection, self.version_sql, Params(self.placeholder))
        return f"{self.engine} {version}"

    def estimate(self, table: str) -> int | None:
        """About how many rows `table` holds, by the catalogue's statistics (no read of the table; the
        table's `where` is not applied); None when the engine has no estimate or never gathered one."""
        if self.estimate_sql is None:
            return None
        meta = self.describe(table)
        params = Params(self.placeholder)
        sql = self.estimate_sql.format(schema=params.add(meta.schema), table=params.add(meta.table))
        with self._catalog_lock:
            rows = self._query(self._metadata_connection(), sql, params)
        if not rows or rows[0][0] is None or rows[0][0] < 0 or self.config.tables[table].where:
            return None
        return int(rows[0][0])

    def catalogue(self, table: str) -> Catalogue:
        """The table's columns as the catalogue lists them (records carry exactly these names)."""
        meta = self.describe(table)
        where = f"{meta.schema}.{meta.table}" if meta.schema else meta.table
        numbers = frozenset(column.name for column in meta.columns
                            if self.is_integer(column) or column.type in self.number_types)
        names = (*(column.name for column in meta.columns), *sqlnested.field_names(self, table))
        types = {column.name: self.mapping_type(column) for column in meta.columns}
        return Catalogue(names, f"{self.engine} table {where} of source {self.name!r}", self.names_column,
                         numbers, meta.key, types)

    def table_names(self) -> list[TableName]:
        """Every table and view this user can read outside the system schemas, sorted: what table
        patterns and AWS DMS selection rules are matched against."""
        with self._catalog_lock:
            found = self.all_tables(self._metadata_connection())
        return sorted(TableName(str(schema), str(table), bool(view)) for schema, table, view in found)

    def sample(self, table: str, n: int) -> list[dict]:
        records: list[dict] = []
        for batch in self.read(Partition(self.name, table, 0, 1)):
            records.extend(batch.records)
            if len(records) >= n:
                break
        return records[:n]

    def close(self) -> None:
        if self._meta_connection is not None:
            self._meta_connection.close()
            self._meta_connection = None

    # --- incremental runs (ChangeSource, etl/sources/base.py) -------------------------------

    def change_capture(self, table: str) -> ChangeCapture | None:
        meta = self.describe(table)
        method = self.config.tables[table].changes
        return None if method is None else self.capture(meta, method)

    def capture(self, meta: TableMeta, method: str) -> ChangeCapture:
        """How `method` finds changes of `meta`; engines add their own methods."""
        if method != "watermark":
            raise EtlError(
                f"{self.engine} source {self.name!r}, table {meta.name!r}: `changes: {method}` is not"
                f" a method of {self.engine}",
                hint="use `changes: watermark` with `watermark: <column that grows on every change>`",
            )
        options = self.config.tables[meta.name]
        overlap = self._overlap(meta)
        unit = " s" if self._time_mark(meta) else ""
        # The name is stored with the position (a new name asks for a full refresh): only settings.
        return ChangeCapture(f"watermark {options.watermark} (overlap {overlap}{unit})", deletes=False)

    def change_position(self, table: str) -> Json:
        meta = self.describe(table)
        method = self._method(meta)
        if method not in MARK_METHODS:
            return self.log_position(meta, method)
        with self._catalog_lock:
            connection = self._metadata_connection()
            start = self.mark_start(connection, meta, method)
            if method == "watermark":
                cap = self.transactions_start(connection, meta)  # before the MAX: see _capped
                ((high,),) = self._query(
                    connection, self.aggregate_sql(f"MAX({self._watermark_sql(meta)})", meta, None, []),
                    Params(self.placeholder),
                )
                start = _capped(high, cap)
        return {"method": method, "from": None if start is None else encode_value(start)}

    def changes(
        self, table: str, position: Json, *, fields: Sequence[str] | None = None, wait_ms: int = 0
    ) -> Iterator[Batch]:
        meta = self.describe(table)
        method = self._method(meta)
        if not isinstance(position, dict) or position.get("method") != method:
            made = position.get("method") if isinstance(position, dict) else None
            raise EtlError(
                f"{self.engine} source {self.name!r}, table {meta.name!r}: the stored change position was"
                f" made by `changes: {made}`, the table now says `changes: {method}`",
                hint="run a full load again (without --incremental) to start from a new position",
            )
        if method in MARK_METHODS:
            return self._mark_changes(meta, method, position, fields)
        return self.log_changes(meta, method, position, fields, wait_ms)

    def key_of(self, table: str, record: dict) -> Json:
        meta = self._metas.get(table) or self.describe(table)
        return encode_key([record[name] for name in meta.key])

    def missing_keys(self, table: str, keys: Sequence[Json]) -> list[Json]:
        """One query per 1,000 keys (fewer where the engine bounds parameters): the keys as a derived
        table, each with its index, those with NOT EXISTS a row of that key that matches `where:`.
        The keys come back as given, in the order given: nothing is converted on the way back."""
        meta = self.describe(table)
        options = self.config.tables[table]
        width = len(meta.key)
        per_query = max(1, min(1000, self.max_parameters // width))
        names = [self.quote("etl_i"), *(self.quote(f"etl_k{i}") for i in range(width))]
        alias = self.quote("etl_t")
        match = " AND ".join(
            f"{alias}.{self.quote(name)} = v.{names[index + 1]}" for index, name in enumerate(meta.key)
        )
        where = f"({self.user_sql(options.where)}) AND " if options.where else ""
        missing: list[Json] = []
        with self._catalog_lock:
            connection = self._metadata_connection()
            for start in range(0, len(keys), per_query):
                chunk = keys[start : start + per_query]
                params = Params(self.placeholder)
                rows = [
                    [str(index), *(params.add(self.key_parameter(meta.column(name), value))
                                   for name, value in zip(meta.key, decode_key(key), strict=True))]
                    for index, key in enumerate(chunk)
                ]
                sql = (
                    f"SELECT v.{names[0]} FROM {self.values_table(rows, names)}"
                    f" WHERE NOT EXISTS (SELECT 1 FROM {self.qualified(meta)} {alias} WHERE {where}{match})"
                    f" ORDER BY 1"
                )
                missing.extend(chunk[int(index)] for (index,) in self._query(connection, sql, params))
        return missing

    # dialect: incremental runs

    max_parameters: ClassVar[int] = 30_000
    """Bound parameters one statement may carry (SQL Server: 2,100)."""

    def values_table(self, rows: list[list[str]], names: list[str]) -> str:
        """A derived table `v` of literal rows (SQL fragments) with columns `names`."""
        values = ", ".join(f"({', '.join(row)})" for row in rows)
        return f"(VALUES {values}) AS v({', '.join(names)})"

    def key_parameter(self, column: SqlColumn, value: Any) -> Any:
        """A canonical key value as the driver binds it for comparison with `column`."""
        return value

    def bounds_by_transactions(self, meta: TableMeta) -> bool:
        """Whether `transactions_start` can bound a watermark of `meta` (PostgreSQL, date/time column)."""
        return False

    def transactions_start(self, connection: Any, meta: TableMeta) -> Any:
        """A value of the watermark's type at or before the start of every transaction in progress
        now and of this statement (so of every later one), or None where the engine cannot tell."""
        return None

    def mark_start(self, connection: Any, meta: TableMeta, method: str) -> Any:
        """Where `change_position` starts a mark method other than `watermark` (rowversion, SCN)."""
        return None

    def mark_scan(self, connection: Any, meta: TableMeta, method: str, start: Any) -> MarkScan:
        """The read of one `changes` call from `start`, planned before its transaction begins."""
        assert method == "watermark"
        mark = self._watermark_sql(meta)
        return MarkScan(mark, self._minus_overlap(meta, start), cap=self.transactions_start(connection, meta))

    def log_position(self, meta: TableMeta, method: str) -> Json:
        """`change_position` of a method that reads the engine's log (logical decoding, change tracking)."""
        raise NotImplementedError(method)

    def log_changes(
        self, meta: TableMeta, method: str, position: dict, fields: Sequence[str] | None, wait_ms: int
    ) -> Iterator[Batch]:
        raise NotImplementedError(method)

    # shared by the mark methods

    def _method(self, meta: TableMeta) -> str:
        capture = self.change_capture(meta.name)
        if capture is None:
            raise EtlError(
                f"{self.engine} source {self.name!r}, table {meta.name!r}: no `changes:` method is set",
                hint="set `changes:` (and `watermark:`) on the table, see docs/relational.md",
            )
        return self.config.tables[meta.name].changes or ""

    def _time_mark(self, meta: TableMeta) -> bool:
        name = self.config.tables[meta.name].watermark or ""
        column = next((c for c in meta.columns if c.name.lower() == name.lower()), None)
        return column is not None and self.is_time(column)

    def is_time(self, column: SqlColumn) -> bool:
        """Whether the column holds dates or timestamps (its overlap is in seconds)."""
        return "DATE" in column.type or "TIME" in column.type

    def _overlap(self, meta: TableMeta) -> float:
        overlap = self.config.tables[meta.name].overlap
        if overlap is None:
            return DEFAULT_OVERLAP_SECONDS if self._time_mark(meta) else 0
        return int(overlap) if overlap == int(overlap) else overlap

    def _minus_overlap(self, meta: TableMeta, start: Any) -> Any:
        overlap = self._overlap(meta)
        if start is None or not overlap:
            return start
        if isinstance(start, dt.date):
            return start - dt.timedelta(seconds=overlap)
        if isinstance(start, float):
            return start - overlap
        if isinstance(start, int) and isinstance(overlap, int):
            return start - overlap
        if isinstance(start, int | Decimal):
            return Decimal(start) - Decimal(str(overlap))
        raise EtlError(
            f"{self.engine} source {self.name!r}, table {meta.name!r}: `overlap:` cannot be subtracted"
            f" from a watermark of type {type(start).__name__}",
            hint="remove `overlap:` or choose a date/time or number watermark column",
        )

    def _mark_changes(
        self, meta: TableMeta, method: str, position: dict, fields: Sequence[str] | None
    ) -> Iterator[Batch]:
        """Rows whose mark is at or after the stored one, in (mark, key) order, in keyset pages; rows
        that no longer match `where:` are deletes. Each batch stores where the next read must start."""
        options = self.config.tables[meta.name]
        start = decode_value(position.get("from"))
        connection = self.connect()
        try:
            scan = self.mark_scan(connection, meta, method, start)
            connection.commit()  # what mark_scan read stays before the snapshot the rows are read in
            self.begin_read(connection, scan.at)
            kept = f"CASE WHEN ({self.user_sql(options.where)}) THEN 1 ELSE 0 END" if options.where else "1"
            plan = self.read_plan(meta, fields, [scan.mark, kept])
            mark_at, kept_at = plan.extra_positions
            order = [mark_at, *plan.key_positions]

            def page(after: tuple | None) -> tuple[str, Params]:
                params = Params(self.placeholder)
                conditions = []
                if scan.low is not None:
                    conditions.append(f"{scan.mark} >= {params.add(self.mark_parameter(method, scan.low))}")
                if scan.high is not None:
                    conditions.append(f"{scan.mark} < {params.add(self.mark_parameter(method, scan.high))}")
                if after is not None:
                    after_columns = [scan.mark, *(self.quote(name) for name in meta.key)]
                    conditions.append(self.after_condition(after_columns, after, params))
                orders = ", ".join(str(position + 1) for position in order)
                columns, from_ = ", ".join(plan.expressions), self.from_clause(meta, scan.at)
                return self.select_sql(columns, from_, conditions, orders, self.config.page_rows), params

            reached = start

            def batches() -> Iterator[Batch]:
                nonlocal reached
                for chunk in self.pages(connection, plan, page, order, None):
                    batch = self._change_batch(meta, plan, chunk, kept_at, mark_at, method)
                    reached = _later(start, _capped(self.mark_value(method, chunk[-1][mark_at]), scan.cap))
                    batch.resume_after = {"method": method, "from": encode_value(reached)}
                    yield batch
                if scan.final is None and reached == start:  # nothing past the start: the cap may move it on
                    reached = _later(start, scan.cap)
                for deleted in self.mark_deletes(connection, meta, method, start, scan):
                    yield Batch([], {"method": method, "from": encode_value(reached)}, deletes=deleted,
                                kinds={"delete": len(deleted)})

            def final() -> Json:
                end = scan.final if scan.final is not None else reached
                return {"method": method, "from": None if end is None else encode_value(end)}

            yield from last_at_final(batches(), final, position)
        finally:
            connection.close()

    def mark_deletes(
        self, connection: Any, meta: TableMeta, method: str, start: Any, scan: MarkScan
    ) -> Iterator[list[dict]]:
        """Key records of rows deleted since `start` (Oracle's flashback version query), in batches
        of at most `limits.records`, read after the scan in its transaction; none by default."""
        return iter(())

    def key_records(self, meta: TableMeta, rows: Iterable[Sequence]) -> list[dict]:
        """Raw key values as the driver returns them (in key order) -> key records of canonical values."""
        converters = [self.converter(meta.column(name)) for name in meta.key]
        return [
            {
                name: value if convert is None or value is None else convert(value)
                for name, convert, value in zip(meta.key, converters, row, strict=True)
            }
            for row in rows
        ]

    def mark_parameter(self, method: str, value: Any) -> Any:
        """A stored mark value as the driver binds it (a rowversion's 8 bytes)."""
        return value

    def mark_value(self, method: str, value: Any) -> Any:
        """A mark as the driver returns it -> the value positions store (int for a rowversion)."""
        return value

    def _change_batch(
        self, meta: TableMeta, plan: ReadPlan, rows: list, kept_at: int, mark_at: int, method: str
    ) -> Batch:
        kept = [row for row in rows if row[kept_at]]
        batch = self.to_batch(meta, plan, kept) if kept else Batch([], None)
        key_at = [plan.names.index(name) for name in meta.key]  # the record's key fields, converted below
        batch.deletes = self.key_records(meta, [[row[i] for i in key_at] for row in rows if not row[kept_at]])
        batch.kinds = {"upsert": len(kept)} | ({"delete": len(batch.deletes)} if batch.deletes else {})
        last = self.mark_value(method, rows[-1][mark_at])
        if isinstance(last, dt.datetime) and last.tzinfo is not None:
            batch.at = last.astimezone(dt.UTC).isoformat()
        return batch

    # --- introspection --------------------------------------------------------------------

    def describe(self, table: str) -> TableMeta:
        """Columns and key of a configured table (cached); EtlError when it is missing or keyless."""
        with self._catalog_lock:  # DB-API connections may not be shared by threads at once
            if table not in self._metas:
                self._metas[table] = self._introspect(self._metadata_connection(), table)
            return self._metas[table]

    def _introspect(self, connection: Any, table: str) -> TableMeta:
        options = self.config.tables.get(table)
        if options is None:
            raise EtlError(
                f"source {self.name!r}: table {table!r} is not configured",
                hint=f"configured tables: {', '.join(self.config.tables) or 'none'}",
            )
        if options.query is not None:
            return self._introspect_query(connection, table, options)
        meta = self._introspect_table(connection, table, table, options.schema_, options.key)
        if options.watermark and options.watermark.lower() not in {c.name.lower() for c in meta.columns}:
            if options.watermark.upper() not in self.pseudo_columns:
                raise EtlError(
                    f"{self.engine} source {self.name!r}, table {table!r}: watermark column"
                    f" {options.watermark!r} does not exist",
                    hint=f"columns: {', '.join(column.name for column in meta.columns)}",
                )
        return meta

    def _introspect_query(self, connection: Any, table: str, options: SqlTable) -> TableMeta:
        """A `query:` table: the columns of its result set, and the declared key."""
        query = (options.query or "").strip().rstrip(";")
        columns = tuple(self.query_columns(connection, query))
        by_lower = {column.name.lower(): column.name for column in columns}
        key = self._key(connection, table, "", "", columns, by_lower, options.key)
        return TableMeta(table, None, table, columns, tuple(key), query)

    def describe_child(self, name: str, child: SqlChild) -> TableMeta:
        """Columns and key of a child table (cached under `name`, its path: `artist.albums`)."""
        with self._catalog_lock:
            if name not in self._metas:
                self._metas[name] = self._introspect_table(
                    self._metadata_connection(), name, child.table, child.schema_, child.key
                )
            return self._metas[name]

    def _introspect_table(
        self, connection: Any, table: str, written: str, schema: str | None, configured: list[str] | None
    ) -> TableMeta:
        bare = written
        if schema is None and "." in written:
            schema, bare = written.split(".", 1)
        found = self._resolve(connection, schema, bare)
        if found is None:
            some = self.some_tables(connection, schema)
            raise EtlError(
                f"{self.engine} source {self.name!r}: table {table!r} does not exist"
                f" or is not visible to this user{did_you_mean(bare, [t.rsplit('.', 1)[-1] for t in some])}",
                hint=f"tables that do exist: {', '.join(some) or 'none visible'}",
            )
        schema, bare = found
        columns = tuple(self.columns(connection, schema, bare))
        by_lower = {column.name.lower(): column.name for column in columns}
        key = self._key(connection, table, schema, bare, columns, by_lower, configured)
        inexact = [name for name in key if not self.exact_key(next(c for c in columns if c.name == name))]
        if inexact:
            raise EtlError(
                f"{self.engine} source {self.name!r}, table {table!r}: key column(s) {', '.join(inexact)}"
                " hold more precision than Python keeps (sub-microsecond time), so pages could repeat rows",
                hint="set `key:` to columns of another type",
            )
        return TableMeta(table, schema, bare, columns, tuple(key))

    def _resolve(self, connection: Any, schema: str | None, table: str) -> tuple[str, str] | None:
        candidates = self.find_tables(connection, schema, table)
        if not candidates:
            return None
        exact = [c for c in candidates if c[1] == table and (schema is None or c[0] == schema)]
        if len(exact) == 1:
            return exact[0]
        pool = exact or candidates
        if len(pool) > 1:
            default = self.default_schema(connection)
            pool = [c for c in pool if c[0] == default] or pool
        if len(pool) > 1:
            raise EtlError(
                f"{self.engine} source {self.name!r}: table {table!r} is ambiguous",
                hint="set `schema:` on the table; found in " + ", ".join(f"{s}.{t}" for s, t in pool[:10]),
            )
        return pool[0]

    def _key(
        self,
        connection: Any,
        table: str,
        schema: str,
        bare: str,
        columns: tuple[SqlColumn, ...],
        by_lower: dict[str, str],
        configured: list[str] | None,
    ) -> list[str]:
        if configured:
            missing = [name for name in configured if name.lower() not in by_lower]
            if missing:
                raise EtlError(
                    f"{self.engine} source {self.name!r}, table {table!r}: key column(s)"
                    f" {', '.join(missing)} do not exist",
                    hint=f"columns: {', '.join(column.name for column in columns)}",
                )
            return [name if name in by_lower.values() else by_lower[name.lower()] for name in configured]
        key = self.primary_key(connection, schema, bare)
        if key:
            return key
        not_null = {column.name for column in columns if not column.nullable}
        uniques = [cols for cols in self.unique_keys(connection, schema, bare) if set(cols) <= not_null]
        if uniques:
            return min(uniques, key=len)
        raise EtlError(
            f"{self.engine} source {self.name!r}: table {table!r} has no primary key and no unique"
            f" index on NOT NULL columns",
            hint=f"set `key: [column, ...]` for {table!r} in the job file: resume and validation"
            " need columns that identify each row",
        )

    # --- SQL building ---------------------------------------------------------------------

    def read_plan(self, meta: TableMeta, fields: Sequence[str] | None, extra: Sequence[str] = ()) -> ReadPlan:
        """What to select for `fields` (None: every column) and the key; `extra` SQL expressions are
        selected after them, raw, at `ReadPlan.extra_positions` (never part of the record)."""
        wanted = None if fields is None else {*fields, *meta.key}
        chosen = [c for c in meta.columns if wanted is None or c.name in wanted]
        names = [c.name for c in chosen]
        expressions = [self.column_expression(c) for c in chosen]
        plain = [expression == self.quote(c.name) for expression, c in zip(expressions, chosen, strict=True)]
        expressions = [
            expression if is_plain else f"{expression} AS {self.quote(c.name)}"
            for expression, c, is_plain in zip(expressions, chosen, plain, strict=True)
        ]
        key_positions = []
        for name in meta.key:
            position = names.index(name)
            if not plain[position]:
                expressions.append(self.quote(name))
                position = len(expressions) - 1
            key_positions.append(position)
        extra_positions = list(range(len(expressions), len(expressions) + len(extra)))
        expressions.extend(extra)
        widths = [self.width(c) for c in chosen]
        converters = [self.converter(c) for c in chosen]
        return ReadPlan(
            names=names,
            expressions=expressions,
            converters=converters,
            key_positions=key_positions,
            extra_positions=extra_positions,
            fixed_width=sum(width for width in widths if width is not None),
            measured=[i for i, w in enumerate(widths) if w is None and not self.holds_objects(chosen[i])],
            measured_objects=[i for i, w in enumerate(widths) if w is None and self.holds_objects(chosen[i])],
            by_name=self.records_by_driver
            and not extra
            and len(expressions) == len(names)
            and all(converters[position] is None for position in key_positions),
        )

    def page_query(
        self, meta: TableMeta, plan: ReadPlan, partition: Partition, after: tuple | None, limit: int | None
    ) -> tuple[str, Params]:
        """One keyset page of a partition: rows after `after`, in key order, at most `limit`."""
        params = Params(self.placeholder)
        lower = partition.lower or {}
        conditions = [*self._filters(meta, params), *self.range_conditions(meta, partition, after, params)]
        # A key column selected converted under its own name is selected again raw at the end of
        # the list; ORDER BY its name would be ambiguous (or sort the converted text), so the raw
        # one is named by its place in the select list.
        order = ", ".join(
            str(position + 1) if position >= len(plan.names) else self.quote(name)
            for name, position in zip(meta.key, plan.key_positions, strict=True)
        )
        sql = self.select_sql(
            ", ".join(plan.expressions), self.from_clause(meta, lower.get("at")), conditions, order, limit
        )
        return sql, params

    def range_conditions(
        self, meta: TableMeta, partition: Partition, after: tuple | None, params: Params
    ) -> list[str]:
        """The partition's range on the first key column, and the rows after `after` (a whole key)."""
        lower = partition.lower or {}
        first = self.quote(meta.key[0])
        conditions = []
        if lower.get("key") is not None:
            conditions.append(f"{first} >= {params.add(decode_key(lower['key'])[0])}")
        if partition.upper is not None:
            conditions.append(f"{first} < {params.add(decode_key(partition.upper)[0])}")
        if after is not None:
            conditions.append(self.after_condition([self.quote(name) for name in meta.key], after, params))
        return conditions

    def after_condition(self, keys: list[str], after: Sequence[Any], params: Params) -> str:
        """Rows strictly after a key: `(a, b) > (x, y)`, or its expansion without row values."""
        if len(keys) == 1:
            return f"{keys[0]} > {params.add(after[0])}"
        if self.row_value_comparison:
            values = ", ".join(params.add(value) for value in after)
            return f"({', '.join(keys)}) > ({values})"
        alternatives = []
        for depth in range(len(keys)):
            equal = [f"{keys[i]} = {params.add(after[i])}" for i in range(depth)]
            alternatives.append(" AND ".join([*equal, f"{keys[depth]} > {params.add(after[depth])}"]))
        return "(" + " OR ".join(f"({alternative})" for alternative in alternatives) + ")"

    def _filters(self, meta: TableMeta, params: Params) -> list[str]:
        options = self.config.tables[meta.name]
        return [f"({self.user_sql(options.where)})"] if options.where else []

    def _watermark_sql(self, meta: TableMeta) -> str:
        name = self.config.tables[meta.name].watermark or ""
        for column in meta.columns:
            if column.name.lower() == name.lower():
                return self.quote(column.name)
        return name.upper()  # a pseudo-column, checked against `pseudo_columns` by introspection

    # --- planning -------------------------------------------------------------------------

    def _metadata_connection(self) -> Any:
        """The connection for catalog and planning queries, in autocommit: it holds no transaction open."""
        if self._meta_connection is None:
            self._meta_connection = self.connect()
            self._meta_connection.autocommit = True
        return self._meta_connection

    def _point(self, connection: Any) -> Json:
        if self.config.consistent and self._consistency_point is None:
            self._consistency_point = self.consistency_point(connection)
        return self._consistency_point if self.config.consistent else None

    def _query(self, connection: Any, sql: str, params: Params) -> list[tuple]:
        cursor = connection.cursor()
        try:
            self.execute(cursor, sql, params)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def aggregate_sql(self, expression: str, meta: TableMeta, at: Json, conditions: list[str]) -> str:
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return f"SELECT {expression} FROM {self.from_clause(meta, at)}{where}"

    def _refuse_null_keys(self, connection: Any, meta: TableMeta, at: Json) -> None:
        nullable = [name for name in meta.key if meta.column(name).nullable]
        if not nullable:
            return
        condition = " OR ".join(f"{self.quote(name)} IS NULL" for name in nullable)
        ((count,),) = self._query(
            connection, self.aggregate_sql("COUNT(*)", meta, at, [f"({condition})"]), Params(self.placeholder)
        )
        if count:
            raise EtlError(
                f"{self.engine} source {self.name!r}, table {meta.name!r}: {count} rows have NULL in key"
                f" column(s) {', '.join(nullable)}; they cannot be read in key order",
                hint="choose `key:` columns that are never NULL",
            )

    def _refuse_repeated_keys(self, connection: Any, meta: TableMeta, at: Json) -> None:
        """A `query:` table's `key:` must identify its rows: keyset pages would skip repeated keys."""
        params = Params(self.placeholder)
        conditions = self._filters(meta, params)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        keys = ", ".join(self.quote(name) for name in meta.key)
        sql = (
            f"SELECT COUNT(*) FROM (SELECT {keys} FROM {self.from_clause(meta, at)}{where}"
            f" GROUP BY {keys} HAVING COUNT(*) > 1) {self.quote('etl_d')}"
        )
        ((count,),) = self._query(connection, sql, params)
        if count:
            raise EtlError(
                f"{self.engine} source {self.name!r}, query table {meta.name!r}: {count} values of `key:`"
                f" [{', '.join(meta.key)}] occur in more than one row of the query's result",
                hint="declare `key:` columns that identify each row of the result (add the joined"
                " tables' keys)",
            )

    def _cuts(self, connection: Any, meta: TableMeta, partitions: int, at: Json) -> list[Any]:
        """Start values of partitions 2..n on the first key column, ascending and distinct."""
        params = Params(self.placeholder)
        conditions = self._filters(meta, params)
        first = meta.column(meta.key[0])
        if self.is_integer(first):
            sql = self.aggregate_sql(
                f"MIN({self.quote(first.name)}), MAX({self.quote(first.name)})", meta, at, conditions
            )
            ((low, high),) = self._query(connection, sql, params)
            if low is None:
                return []
            low, high = int(low), int(high)
            cuts = [low + (high - low + 1) * i // partitions for i in range(1, partitions)]
        else:
            sql = self.quantiles_sql(meta, partitions, at, conditions)
            starts = [row[0] for row in self._query(connection, sql, params)]
            cuts = [start for start in starts[1:] if start > starts[0]]
        distinct: list[Any] = []
        for cut in cuts:
            if not distinct or cut > distinct[-1]:
                distinct.append(cut)
        return distinct

    def quantiles_sql(self, meta: TableMeta, partitions: int, at: Json, conditions: list[str]) -> str:
        """Smallest first-key value of each of `partitions` equal-sized buckets (NTILE)."""
        first = self.quote(meta.key[0])
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        inner = (
            f"SELECT {first} AS k, NTILE({int(partitions)}) OVER (ORDER BY {first}) AS b"
            f" FROM {self.from_clause(meta, at)}{where}"
        )
        return f"SELECT MIN(q.k) FROM ({inner}) q GROUP BY q.b ORDER BY MIN(q.k)"

    # --- rows to batches ------------------------------------------------------------------

    def _rows_per_batch(self, plan: ReadPlan) -> int:
        return max(1, min(self.limits.records, self.limits.bytes // max(1, plan.fixed_width)))

    def _split_by_bytes(self, rows: list, plan: ReadPlan, rows_per_batch: int) -> Iterator[list]:
        """Chunks of at most `rows_per_batch` rows and `limits.bytes` bytes (one row may exceed it alone)."""
        if plan.measured or plan.measured_objects:
            total = plan.fixed_width * len(rows)
            for index in plan.fields(plan.measured):
                total += _column_bytes(rows, itemgetter(index))
            for index in plan.fields(plan.measured_objects):
                total += sum(map(_size, map(itemgetter(index), rows)))
            if total > self.limits.bytes:
                yield from self._split_row_by_row(rows, plan, rows_per_batch)
                return
        for start in range(0, len(rows), rows_per_batch):
            yield rows[start : start + rows_per_batch]

    def _split_row_by_row(self, rows: list, plan: ReadPlan, rows_per_batch: int) -> Iterator[list]:
        chunk: list = []
        size = 0
        measured = plan.fields(plan.measured + plan.measured_objects)
        for row in rows:
            row_size = plan.row_size(row, measured)
            if chunk and (size + row_size > self.limits.bytes or len(chunk) >= rows_per_batch):
                yield chunk
                chunk, size = [], 0
            chunk.append(row)
            size += row_size
        if chunk:
            yield chunk

    def to_batch(self, meta: TableMeta, plan: ReadPlan, rows: list) -> Batch:
        """Driver rows -> a Batch of canonical records (and rejects), resuming after the last row.

        Converters run column by column over the batch so that columns the driver already hands
        over as canonical values cost nothing beyond building the dict (or nothing at all when
        the driver built it, `ReadPlan.by_name`).
        """
        last = tuple(rows[-1][index] for index in plan.fields(plan.key_positions))
        records, failed = self.convert_rows(meta, plan, rows)
        if failed:
            records = [record for index, record in enumerate(records) if index not in failed]
        return Batch(records, encode_key(last), list(failed.values()))

    def convert_rows(
        self, meta: TableMeta, plan: ReadPlan, rows: list
    ) -> tuple[list[dict], dict[int, Reject]]:
        """Driver rows -> one record each (canonical values), and the rejects by row index of those
        whose value could not be converted (their records are left as they are)."""
        names = plan.names
        records = rows if plan.by_name else list(map(plan.make_record, rows))
        failed: dict[int, Reject] = {}
        for name, convert in zip(names, plan.converters, strict=True):
            if convert is None:
                continue
            for index, record in enumerate(records):
                value = record[name]
                if value is None:
                    continue
                try:
                    record[name] = convert(value)
                except Truncated as loss:
                    record[name] = loss.value
                    self._count_loss(meta, name, loss.reason)
                except (ValueRejected, ValueError, TypeError, ArithmeticError) as error:
                    if index not in failed:
                        failed[index] = self._reject(meta, plan, rows[index], name, value, error)
        return records, failed

    def child_reject(
        self, meta: TableMeta, plan: ReadPlan, row: Sequence, problem: tuple[str, Reject]
    ) -> Reject:
        """The reject of a parent record (`row`) for a value of a child row at `problem` (its path
        in the record, `invoices[2].lines[0]`, and the child's reject)."""
        path, child = problem
        return self._reject_row(meta, plan, row, f"{path}: {child.reason}", f"{path}.{child.field_path}",
                                child.value_type)

    def _reject(
        self, meta: TableMeta, plan: ReadPlan, row: Sequence, column: str, value: Any, error: Exception
    ) -> Reject:
        return self._reject_row(meta, plan, row, f"column {column}: {_reason(error)}", column,
                                type(value).__name__)

    def _reject_row(
        self, meta: TableMeta, plan: ReadPlan, row: Any, reason: str, path: str, value_type: str | None
    ) -> Reject:
        raw_key = [row[index] for index in plan.fields(plan.key_positions)]
        return Reject(
            table=meta.name,
            source_key=_key_text(meta.key, raw_key),
            reason=reason,
            stage="extract",
            field_path=path,
            value_type=value_type,
        )

    def _count_loss(self, meta: TableMeta, column: str, reason: str) -> None:
        label = f"{meta.name}.{column}: {reason}"
        if not self.warnings[label]:
            log.warning("%s source %r: %s (counted in warnings)", self.engine, self.name, label)
        self.warnings[label] += 1

    # --- errors ---------------------------------------------------------------------------

    def connection_failed(
        self, where: str, error: Exception | str, secrets: Iterable[str | None] = ()
    ) -> ConnectionFailed:
        """A ConnectionFailed naming the source and server, with every secret removed from the driver text."""
        detail = " ".join(str(error).split())
        for secret in secrets:
            if secret:
                detail = detail.replace(secret, "***")
        return ConnectionFailed(
            f"cannot connect to {self.engine} source {self.name!r} at {where}: {detail}",
            hint="check that the server is running and reachable, and the user name and password",
        )


def last_at_final(batches: Iterator[Batch], final: Callable[[], Json], start: Json) -> Iterator[Batch]:
    """`batches` of one `changes` call, each holding the position reached after it, except the last,
    which holds `final()`: the position once every change is read. When there was no batch but the
    position moved on, one empty batch carries it, so the next call starts there."""
    held: Batch | None = None
    for batch in batches:
        if held is not None:
            yield held
        held = batch
    end = final()
    if held is not None:
        held.resume_after = end
        yield held
    elif end != start:
        yield Batch([], end)


def _capped(value: Any, cap: Any) -> Any:
    """The smaller of a mark read and the cap, either of which may be None (unknown)."""
    if value is None or cap is None:
        return cap if value is None else value
    return min(value, cap)


def _later(start: Any, mark: Any) -> Any:
    """A position never moves back: the later of the stored start and a new mark."""
    if start is None or mark is None:
        return mark if start is None else start
    return max(start, mark)


def _column_bytes(rows: list, value: Callable[[Any], Any]) -> int:
    """Total size of one column's values: len() of str/bytes in C (no list of them built),
    anything else by its text form."""
    try:
        return sum(map(len, filter(None, map(value, rows))))
    except TypeError:
        return sum(map(_size, map(value, rows)))


def _size(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    return len(str(value))


def _reason(error: Exception) -> str:
    if isinstance(error, ValueRejected):
        return str(error)
    return f"cannot convert the value ({type(error).__name__})"


def _key_text(names: Sequence[str], values: Sequence[Any]) -> str:
    return ", ".join(
        f"{name}={value}" if isinstance(value, int | Decimal) else f"{name}={value!r}"
        for name, value in zip(names, values, strict=True)
    )
