"""The generic SQL source: introspection, keyset pagination, partition planning and batching.

Engine modules (`postgres.py`, `oracle.py`, `mssql.py`) subclass `SqlSource` and override only
what differs — quoting, placeholders, row limits, catalog queries, type conversions and how a
consistent snapshot is taken — the way sqlglot's `dialects/` override one generic dialect.
Everything here is plain SQL built from quoted identifiers and bound parameters; the only SQL
text taken from the user is a table's `where:` filter, which the job file's author owns.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from operator import itemgetter
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from etl.errors import ConnectionFailed, EtlError, did_you_mean
from etl.records import Batch, Json, Partition, Reject
from etl.redact import RedactedRepr
from etl.settings_types import Integer
from etl.sources.base import BatchLimits, Catalogue, SourceTable
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


class SqlTable(SourceTable):
    """Options for one table of a relational source."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    key: list[str] | None = None
    """Columns that identify a row, in order; default: the primary key, else a NOT NULL unique index."""
    where: str | None = None
    """A filter in the source's own SQL dialect, ANDed to every query (written by the job's author)."""
    watermark: str | None = None
    """A column that grows on every change (or ORA_ROWSCN / a rowversion) for differential runs."""
    since: Json = None
    """Read only rows whose watermark is greater than this (a value `high_watermark` returned)."""
    schema_: str | None = Field(default=None, alias="schema")
    """Schema (owner) of the table; default: the part before the first dot, else the user's default."""


class SqlSourceConfig(RedactedRepr, BaseModel):
    """Settings every relational source shares; each engine adds its connection settings."""

    model_config = ConfigDict(extra="forbid")

    tables: dict[str, SqlTable]
    consistent: bool = True
    """Read every partition of the run at one point in time (snapshot / SCN) where the engine can."""
    page_rows: Integer = Field(default=100_000, ge=1)
    """Rows per keyset page: a query reads at most this many; the next starts after its last key."""


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

    def fields(self, positions: list[int]) -> list[int] | list[str]:
        """How to index a driver row for these positions: the position, or the name (`by_name`)."""
        return [self.names[position] for position in positions] if self.by_name else positions


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

    def bind(self, params: Params) -> Any:
        return params.values

    def qualified(self, meta: TableMeta) -> str:
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

    def some_tables(self, connection: Any, schema: str | None) -> list[str]:
        """A few table names that do exist, for the message when a configured one does not."""
        return []

    # --- the Source protocol --------------------------------------------------------------

    def check(self) -> None:
        for table in self.config.tables:
            self.describe(table)

    def plan(self, table: str, partitions: int) -> list[Partition]:
        meta = self.describe(table)
        with self._catalog_lock:
            at = self._point(self._metadata_connection())
            connection = self.planning_connection()
            self._refuse_null_keys(connection, meta, at)
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
        rows_per_batch = self._rows_per_batch(plan)
        page_rows = self.config.page_rows
        fetch_rows = min(rows_per_batch, page_rows)
        lower = partition.lower or {}
        connection = self.connect()
        try:
            self.begin_read(connection, lower.get("at"))
            while True:
                sql, params = self.page_query(meta, plan, partition, after, page_rows)
                cursor = self.open_cursor(connection, fetch_rows)
                try:
                    if plan.by_name:
                        self.records_cursor(cursor, plan.make_record)
                    key_fields = plan.fields(plan.key_positions)
                    self.execute(cursor, sql, params)
                    seen = 0
                    while rows := cursor.fetchmany(fetch_rows):
                        seen += len(rows)
                        # Before the batches go out: their records may be the rows themselves.
                        after = tuple(rows[-1][index] for index in key_fields)
                        for chunk in self._split_by_bytes(rows, plan, rows_per_batch):
                            yield self.to_batch(meta, plan, chunk)
                finally:
                    cursor.close()
                if seen < page_rows:
                    return
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
        return Catalogue(tuple(column.name for column in meta.columns),
                         f"{self.engine} table {where} of source {self.name!r}", self.names_column)

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

    # --- differential extraction ------------------------------------------------------------

    def high_watermark(self, table: str) -> Json:
        """The largest watermark (tagged JSON), at the run's SCN/snapshot where there is one.

        Take it when the run starts and give it as `since:` to the next run: rows that change
        while this run reads are read again next time (sinks are idempotent), none are missed.
        """
        meta = self.describe(table)
        with self._catalog_lock:
            at = self._point(self._metadata_connection())
            return self._high_watermark(self.planning_connection(), meta, at)

    def keys(self, table: str) -> Iterator[tuple]:
        """Every key at the source, in key order, as canonical values."""
        meta = self.describe(table)
        for batch in self.read(Partition(self.name, table, 0, 1), fields=()):
            for record in batch.records:
                yield tuple(record[name] for name in meta.key)

    def deleted_keys(self, table: str, target_keys: Iterable[Sequence]) -> list[tuple]:
        """Keys present in `target_keys` but no longer at the source: deletes to apply to the target."""
        remaining = {tuple(key) for key in target_keys}
        for key in self.keys(table):
            remaining.discard(key)
        return list(remaining)

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
        schema, bare = options.schema_, table
        if schema is None and "." in table:
            schema, bare = table.split(".", 1)
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
        key = self._key(connection, table, schema, bare, columns, by_lower)
        inexact = [name for name in key if not self.exact_key(next(c for c in columns if c.name == name))]
        if inexact:
            raise EtlError(
                f"{self.engine} source {self.name!r}, table {table!r}: key column(s) {', '.join(inexact)}"
                " hold more precision than Python keeps (sub-microsecond time), so pages could repeat rows",
                hint="set `key:` to columns of another type",
            )
        if options.watermark and options.watermark.lower() not in by_lower:
            if options.watermark.upper() not in self.pseudo_columns:
                raise EtlError(
                    f"{self.engine} source {self.name!r}, table {table!r}: watermark column"
                    f" {options.watermark!r} does not exist",
                    hint=f"columns: {', '.join(column.name for column in columns)}",
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
    ) -> list[str]:
        configured = self.config.tables[table].key
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

    def read_plan(self, meta: TableMeta, fields: Sequence[str] | None) -> ReadPlan:
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
        widths = [self.width(c) for c in chosen]
        converters = [self.converter(c) for c in chosen]
        return ReadPlan(
            names=names,
            expressions=expressions,
            converters=converters,
            key_positions=key_positions,
            fixed_width=sum(width for width in widths if width is not None),
            measured=[i for i, w in enumerate(widths) if w is None and not self.holds_objects(chosen[i])],
            measured_objects=[i for i, w in enumerate(widths) if w is None and self.holds_objects(chosen[i])],
            by_name=self.records_by_driver
            and len(expressions) == len(names)
            and all(converters[position] is None for position in key_positions),
        )

    def page_query(
        self, meta: TableMeta, plan: ReadPlan, partition: Partition, after: tuple | None, limit: int | None
    ) -> tuple[str, Params]:
        """One keyset page of a partition: rows after `after`, in key order, at most `limit`."""
        params = Params(self.placeholder)
        lower = partition.lower or {}
        conditions = self._filters(meta, params)
        first = self.quote(meta.key[0])
        if lower.get("key") is not None:
            conditions.append(f"{first} >= {params.add(decode_key(lower['key'])[0])}")
        if partition.upper is not None:
            conditions.append(f"{first} < {params.add(decode_key(partition.upper)[0])}")
        if after is not None:
            conditions.append(self.after_condition([self.quote(name) for name in meta.key], after, params))
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
        conditions = [f"({options.where})"] if options.where else []
        if options.watermark and options.since is not None:
            mark = self._watermark_sql(meta)
            conditions.append(f"{mark} > {params.add(decode_value(options.since))}")
        return conditions

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

    def _high_watermark(self, connection: Any, meta: TableMeta, at: Json) -> Json:
        params = Params(self.placeholder)
        conditions = self._filters(meta, params)
        sql = self.aggregate_sql(f"MAX({self._watermark_sql(meta)})", meta, at, conditions)
        ((value,),) = self._query(connection, sql, params)
        return None if value is None else encode_value(value)

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
            row_size = plan.fixed_width + sum(_size(row[i]) for i in measured)
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
        if failed:
            records = [record for index, record in enumerate(records) if index not in failed]
        return Batch(records, encode_key(last), list(failed.values()))

    def _reject(
        self, meta: TableMeta, plan: ReadPlan, row: Sequence, column: str, value: Any, error: Exception
    ) -> Reject:
        raw_key = [row[index] for index in plan.fields(plan.key_positions)]
        return Reject(
            table=meta.name,
            source_key=_key_text(meta.key, raw_key),
            reason=f"column {column}: {_reason(error)}",
            stage="extract",
            field_path=column,
            value_type=type(value).__name__,
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
