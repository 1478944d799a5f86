"""PostgreSQL (Aurora PostgreSQL) sink: one transaction per batch, binary COPY into staging, then upsert.

Per batch, in one transaction, table by table from the roots down: each table's rows are
binary-COPYed into a per-connection temporary staging table and merged with `INSERT ... SELECT ...
ON CONFLICT (key) DO UPDATE`, and before a child table's rows go in, the existing children of the
parent rows just written are deleted (so a replayed or shrunken array leaves exactly the right
children). A row PostgreSQL refuses is found by bisecting inside savepoints and rejected alone; the
child rows of a refused parent row are rejected with it, so no child row is written without its
parent row.
Rows whose keys are all new are an upsert's inserts, so each table's rows are first COPYed straight
into the table inside a savepoint; the first key that exists (a replayed batch, a table loaded
before) makes PostgreSQL refuse that COPY, the savepoint is rolled back and the batch goes through
staging, and so does every later batch of that table on this sink. Parent rows that went in that
way are new to their table, so when the child table held no row as the run began, they have no
children to delete: a first load deletes nothing (`prepare`'s `empty_at_start`).
Connection loss, admin shutdown, serialization failures and deadlocks retry the whole batch on a
new connection (exponential backoff, full jitter); the upserts make the replay harmless.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import set_json_dumps, set_json_loads
from pydantic import BaseModel, ConfigDict, Field

from etl import security
from etl.checksum.postgres_sql import PostgresTableSide
from etl.coltypes import ColumnType
from etl.errors import ConnectionFailed, EtlError, RuntimeFailure
from etl.records import ColumnRows, Reject, TableRows, TableSpec, nested_path
from etl.redact import RedactedRepr
from etl.settings_types import Integer
from etl.sinks import jsontext
from etl.sinks.base import CheckResult, NameLimits, TargetRules, WriteResult, column_form
from etl.sinks.iam_token import IamTokenSource
from etl.sinks.postgres_types import (
    ColumnAdapter,
    TargetColumn,
    ValueRefused,
    already_json,
    column_adapter,
    compatible_udts,
    ddl_type,
    planned_column,
)
from etl.sinks.retry import Backoff

log = logging.getLogger(__name__)

TRANSIENT = (
    psycopg.OperationalError,  # connection lost, admin shutdown (57P01), cannot connect now
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
)
ROW_REFUSED = (psycopg.DataError, psycopg.IntegrityError)
KEYS_PER_STATEMENT = 1000
_ARRAY_MATCHED = frozenset({"int2", "int4", "int8", "numeric", "text", "varchar", "bpchar", "uuid", "date",
                            "timestamp", "timestamptz", "bytea", "bool"})
"""Built-in types (pg_type names, from the catalog) whose keys `_delete_statement` matches with
`= ANY(%s::type[])`."""
NAME_LIMITS = NameLimits("PostgreSQL", identifier_bytes=63, reason="NAMEDATALEN-1")
RULES = TargetRules("PostgreSQL", NAME_LIMITS, child_tables=True, key_required=True, shared_tables=False)
"""PostgreSQL keeps only the first NAMEDATALEN-1 = 63 bytes of an identifier and silently drops the
rest, so two names that share their first 63 bytes are one name (PostgreSQL documentation, "SQL
Syntax" > "Lexical Structure" > "Identifiers and Key Words":
https://www.postgresql.org/docs/current/sql-syntax-lexical.html#SQL-SYNTAX-IDENTIFIERS)."""


class Config(RedactedRepr, BaseModel):
    """The `postgres` target section of a job file."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    type: Literal["postgres"]
    dsn: str
    """libpq connection string or URI (a password belongs in `${secret:...}`, never in plain text)."""
    db_schema: str = Field("public", alias="schema")
    create: Literal["never", "if_missing"] = "never"
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = None
    sslrootcert: str | None = None
    """CA bundle path, e.g. the RDS global bundle, for sslmode verify-ca/verify-full."""
    iam_auth: bool = False
    """Authenticate with an IAM token (boto3 generate_db_auth_token) instead of a password."""
    region: str | None = None
    """AWS region for IAM tokens (defaults to the standard AWS configuration)."""
    max_attempts: Integer = Field(6, ge=1, le=50)
    base_delay_ms: float = Field(100.0, ge=0)
    max_delay_ms: float = Field(10_000.0, ge=0)


@dataclass
class _Table:
    """A prepared target table: the mapping's spec, the physical columns and how to adapt values."""

    spec: TableSpec
    index: int
    types: dict[str, ColumnType]
    columns: list[TargetColumn]
    adapters: list[ColumnAdapter]
    create_stage: sql.Composed
    clear_stage: sql.Composed
    copy: sql.Composed
    merge: sql.Composed
    copy_direct: sql.Composed | None
    """COPY straight into the table; None when COPY and INSERT differ there (`_copies_like_inserts`) or
    a key of this table already existed (`_copy_new_rows`)."""
    children: list[str] = field(default_factory=list)
    indexed_parent: bool = False
    """A child table with a b-tree index leading with its parent key (`_execute_by_index`)."""

    @property
    def copy_types(self) -> list[str]:
        return [column.copy_type for column in self.columns]

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]


@dataclass
class _Pending:
    """A table's rows of one batch, ready for COPY: parallel lists, sliced together when bisecting."""

    values: list[tuple]
    source_keys: list[str]
    positions: list[int]
    """Where each row's dict is in `rows()`, which builds the dicts of column-wise rows (`ColumnRows`)
    only when a row is rejected."""
    rows: Callable[[], list[dict]]

    def halves(self) -> tuple[_Pending, _Pending]:
        middle = len(self.values) // 2
        return (_Pending(self.values[:middle], self.source_keys[:middle], self.positions[:middle], self.rows),
                _Pending(self.values[middle:], self.source_keys[middle:], self.positions[middle:], self.rows))

    def row(self, index: int) -> dict:
        return self.rows()[self.positions[index]]

    def without(self, dropped: Collection[int]) -> _Pending:
        """These rows but those at the indexes `dropped` (rejected before sending)."""
        kept = [index for index in range(len(self.values)) if index not in dropped]
        return _Pending([self.values[i] for i in kept], [self.source_keys[i] for i in kept],
                        [self.positions[i] for i in kept], self.rows)


@dataclass
class _Part:
    """A table's rows of one batch, with the keys that tie them to their parent and child rows."""

    pending: _Pending
    columns: dict[str, list]
    """Each column's values, by position (`_Pending.positions`)."""
    refused: set[tuple]
    """Keys of the rows refused before sending (a value the column cannot hold, a null key)."""

    def keys(self, names: Sequence[str], pending: _Pending) -> list[tuple]:
        """The values of `names` of the rows of `pending` (a column not given is null in every row)."""
        positions = pending.positions
        values = [[None] * len(positions) if name not in self.columns
                  else list(map(self.columns[name].__getitem__, positions)) for name in names]
        return list(zip(*values, strict=True))


class _Connection:
    """A connection plus the staging tables it already has (temp tables live per session)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.staged: set[int] = set()


def endpoints(config: Config) -> list[security.Endpoint]:
    """Every host of the DSN and how it is secured (etl/security.py decides whether that is allowed)."""
    return security.libpq_endpoints(config.dsn, config.sslmode)


def _quoted(name: str) -> str:
    """A name as a quoted identifier: distinct names give distinct texts."""
    return '"' + name.replace('"', '""') + '"'


class PostgresSink:
    """See the module docstring. Thread-safe: each `write` borrows its own connection."""

    replaces_children = True
    """Writing or deleting a parent row replaces its child rows (`_write_down`)."""

    def __init__(self, name: str, config: Config, *, backoff: Backoff | None = None) -> None:
        self.name = name
        self.config = config
        self._backoff = backoff or Backoff(config.max_attempts, config.base_delay_ms, config.max_delay_ms)
        self._tables: dict[str, _Table] = {}
        self._empty_at_start: frozenset[str] = frozenset()
        """Child tables that held no row when the run began (`prepare`)."""
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._tokens = self._token_source() if config.iam_auth else None

    # ------------------------------------------------------------ connections

    def _token_source(self) -> IamTokenSource:
        params: dict[str, Any] = conninfo_to_dict(self.config.dsn)
        region = self.config.region
        if region is None:
            import boto3

            region = boto3.session.Session().region_name
        if not region:
            raise EtlError(f"PostgreSQL target {self.name!r}: iam_auth needs a region",
                           hint="set `region:` on the target or AWS_REGION")
        return IamTokenSource(params.get("host", "localhost"), int(params.get("port", 5432)),
                              params.get("user", ""), region)

    def _connect(self) -> _Connection:
        extra: dict[str, Any] = security.libpq_tls_defaults(self.config.dsn, self.config.sslmode)
        if self.config.sslmode:
            extra["sslmode"] = self.config.sslmode
        if self.config.sslrootcert:
            extra["sslrootcert"] = self.config.sslrootcert
        if self._tokens is not None:
            extra["password"] = self._tokens.token()
        conn = psycopg.connect(self.config.dsn, autocommit=False, **extra)
        set_json_loads(functools.partial(jsontext.loads, binary=True), context=conn)
        set_json_dumps(already_json, context=conn)  # values arrive as JSON text (postgres_types._json)
        conn.execute("SET TIME ZONE 'UTC'")
        conn.commit()
        return _Connection(conn)

    def _acquire(self) -> _Connection:
        with self._lock:
            while self._idle:
                candidate = self._idle.pop()
                if not candidate.conn.closed:
                    return candidate
        try:
            return self._connect()
        except psycopg.OperationalError as error:
            raise ConnectionFailed(
                f"PostgreSQL target {self.name!r}: cannot connect: {error}".strip(),
                hint="check the dsn, sslmode/sslrootcert and credentials of the target",
            ) from None

    def _release(self, connection: _Connection) -> None:
        idle = psycopg.pq.TransactionStatus.IDLE
        if connection.conn.closed or connection.conn.info.transaction_status != idle:
            connection.conn.close()
            return
        with self._lock:
            self._idle.append(connection)

    @staticmethod
    def _discard(connection: _Connection) -> None:
        try:
            connection.conn.close()
        except psycopg.Error:
            pass

    def _qualified(self, table: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.config.db_schema), sql.Identifier(table))

    # ------------------------------------------------------------ tables

    def prepare(self, tables: Sequence[TableSpec], *, empty_at_start: frozenset[str] = frozenset()
                ) -> frozenset[str]:
        """Check every table first, then create the missing ones: no data moves while any table differs.
        Returns the child tables that hold no row now; the run prepares its targets once before any
        partition starts and hands what that returned to every partition's sink as `empty_at_start`."""
        connection = self._acquire()
        try:
            with connection.conn.transaction():
                self._lock_for_prepare(connection.conn, [spec.table for spec in tables])
                existing = {spec.table: self._existing_columns(connection.conn, spec.table)
                            for spec in tables}
                for spec in tables:
                    if existing[spec.table]:
                        self._check(connection.conn, spec, existing[spec.table])
                    elif self.config.create != "if_missing":
                        raise EtlError(
                            f"PostgreSQL table {self.config.db_schema}.{spec.table} does not exist"
                            f" (target {self.name!r})",
                            hint="create it, or set `create: if_missing` on the target",
                        )
                for spec in tables:
                    if not existing[spec.table]:
                        self._create(connection.conn, spec)
                        existing[spec.table] = self._existing_columns(connection.conn, spec.table)
                direct = {spec.table: self._copies_like_inserts(connection.conn, spec.table)
                          for spec in tables}
                indexed = {spec.table: self._has_parent_index(connection.conn, spec)
                           for spec in tables if spec.parent is not None and spec.parent_key}
                empty = frozenset(spec.table for spec in tables
                                  if spec.parent is not None and self._is_empty(connection.conn, spec.table))
            for spec in tables:
                self._register(spec, existing[spec.table], direct[spec.table],
                               indexed.get(spec.table, False))
        except BaseException:
            self._discard(connection)
            raise
        self._release(connection)
        self._empty_at_start = frozenset(empty_at_start)
        return empty

    def _is_empty(self, conn: psycopg.Connection, table: str) -> bool:
        return conn.execute(sql.SQL("SELECT NOT EXISTS (SELECT FROM {})").format(self._qualified(table))
                            ).fetchone()[0]  # type: ignore[index]

    def check(self, tables: Sequence[TableSpec], batch: Mapping[str, TableRows]) -> CheckResult:
        """Adapt every value as `write` does, against the table's columns (as they would be created when
        it does not exist yet); reads the catalogue once per table, writes nothing."""
        new = [spec for spec in tables if spec.table not in self._tables]
        if new:
            connection = self._acquire()
            try:
                found = {spec.table: self._existing_columns(connection.conn, spec.table) for spec in new}
                connection.conn.rollback()
            finally:
                self._release(connection)
            for spec in new:
                planned = {column.name: planned_column(column.name, column.parsed_type)
                           for column in spec.columns}
                existing = found[spec.table] or planned
                missing = [column.name for column in spec.columns if column.name not in existing]
                if missing:
                    raise EtlError(f"PostgreSQL table {self.config.db_schema}.{spec.table} has no column "
                                   f"{missing[0]!r} (the mapping writes it)",
                                   hint="add the column, or remove it from the mapping")
                self._register(spec, existing, False)
        result = CheckResult()
        parts = {spec.table: self._part(self._tables[spec.table], batch[spec.table], result.rejects)
                 for spec in tables if spec.table in batch}
        gone: dict[str, set[tuple]] = {}
        for name in sorted(parts, key=lambda name: self._depth(self._tables[name])):
            self._admit(self._tables[name], parts[name], gone, result.rejects)
        return result

    def _lock_for_prepare(self, conn: psycopg.Connection, tables: Sequence[str]) -> None:
        """Serialise preparing the same tables across shards, workers and processes: a
        transaction-scoped advisory lock per schema.table, taken in one order (so two prepares
        never wait for each other in a cycle), then one for the schema when it does not exist yet.
        A prepare that waited finds what the other created, committed, and checks it instead of
        racing it (CREATE ... IF NOT EXISTS alone fails with UniqueViolation when both create)."""
        schema = self.config.db_schema
        lock = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
        for table in sorted(set(tables)):
            conn.execute(lock, (f"etl.prepare {_quoted(schema)}.{_quoted(table)}",))
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
            conn.execute(lock, (f"etl.prepare {_quoted(schema)}",))

    def _existing_columns(self, conn: psycopg.Connection, table: str) -> dict[str, TargetColumn]:
        rows = conn.execute(
            "SELECT column_name, udt_name, numeric_precision, numeric_scale, datetime_precision"
            " FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (self.config.db_schema, table),
        ).fetchall()
        return {
            name: TargetColumn(name, udt, scale, precision if udt == "numeric" else None, time_precision)
            for name, udt, precision, scale, time_precision in rows
        }

    def _copies_like_inserts(self, conn: psycopg.Connection, table: str) -> bool:
        """Whether COPY into the table does what INSERT does: a plain or partitioned table without
        rules (COPY ignores rules) and without row-level security (COPY refuses it)."""
        row = conn.execute(
            "SELECT c.relkind IN ('r', 'p') AND NOT c.relrowsecurity"
            " AND NOT EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = c.oid)"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s",
            (self.config.db_schema, table),
        ).fetchone()
        return bool(row and row[0])

    def _check(self, conn: psycopg.Connection, spec: TableSpec, existing: dict[str, TargetColumn]) -> None:
        where = f"PostgreSQL table {self.config.db_schema}.{spec.table}"
        for column in spec.columns:
            found = existing.get(column.name)
            if found is None:
                raise EtlError(f"{where} has no column {column.name!r} (the mapping writes it)",
                               hint="add the column, or remove it from the mapping")
            wanted = column.parsed_type
            if found.udt not in compatible_udts(wanted):
                raise EtlError(
                    f"{where}, column {column.name!r}: type {found.udt} cannot hold the mapping's"
                    f" {column.type} without loss",
                    hint=f"alter the column to {ddl_type(wanted)}, or change the mapping's type",
                )
        unique_sets = conn.execute(
            "SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey)"
            " WHERE n.nspname = %s AND c.relname = %s AND i.indisunique AND i.indpred IS NULL"
            " GROUP BY i.indexrelid",
            (self.config.db_schema, spec.table),
        ).fetchall()
        if sorted(spec.key) not in [row[0] for row in unique_sets]:
            raise EtlError(
                f"{where} has no primary key or unique index on ({', '.join(spec.key)})",
                hint="add one: upserts need it to find existing rows",
            )

    def _has_parent_index(self, conn: psycopg.Connection, spec: TableSpec) -> bool:
        """Whether a valid, non-partial b-tree index leads with the parent key columns (in any order),
        which is what `_delete_where` needs to find a parent's children without a scan. A child table
        this sink creates gets one (`_create`); for a table that exists without one, a warning gives
        the statement that creates it: the sink does not add indexes to tables it did not create."""
        leading = conn.execute(
            "SELECT array(SELECT a.attname::text FROM unnest(i.indkey[0:%s]) AS k(attnum)"
            "  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum ORDER BY 1)"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam"
            " WHERE n.nspname = %s AND c.relname = %s AND i.indisvalid AND i.indpred IS NULL"
            " AND am.amname = 'btree'",
            (len(spec.parent_key) - 1, self.config.db_schema, spec.table),
        ).fetchall()
        if sorted(spec.parent_key) in [row[0] for row in leading]:
            return True
        log.warning("PostgreSQL table %s.%s has no index on its parent key (%s): every batch that replaces "
                    "children scans the whole table, a cost that grows with the table. Create one before "
                    "loading: %s", self.config.db_schema, spec.table, ", ".join(spec.parent_key),
                    self._parent_index(spec).as_string(conn))
        return False

    def _parent_index(self, spec: TableSpec) -> sql.Composed:
        return sql.SQL("CREATE INDEX ON {} ({})").format(
            self._qualified(spec.table), sql.SQL(", ").join(map(sql.Identifier, spec.parent_key)))

    def _create(self, conn: psycopg.Connection, spec: TableSpec) -> None:
        definitions = []
        for column in spec.columns:
            not_null = sql.SQL(" NOT NULL") if not column.nullable or column.name in spec.key else sql.SQL("")
            definitions.append(sql.SQL("{} {}{}").format(
                sql.Identifier(column.name), sql.SQL(ddl_type(column.parsed_type)), not_null))
        definitions.append(sql.SQL("PRIMARY KEY ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, spec.key))))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.config.db_schema)))
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
            self._qualified(spec.table), sql.SQL(", ").join(definitions)))
        if spec.parent is not None and spec.parent_key and \
                sorted(spec.key[:len(spec.parent_key)]) != sorted(spec.parent_key):
            # Replacing a parent's children finds them by the parent key: without an index each batch
            # would scan the whole child table (a primary key that leads with the parent key is one).
            conn.execute(self._parent_index(spec))

    def _register(self, spec: TableSpec, existing: dict[str, TargetColumn], direct: bool,
                  indexed_parent: bool = False) -> None:
        columns = [existing[column.name] for column in spec.columns]
        index = self._tables[spec.table].index if spec.table in self._tables else len(self._tables)
        stage = sql.Identifier(f"etl_stage_{index}")
        target = self._qualified(spec.table)
        names = sql.SQL(", ").join(sql.Identifier(column.name) for column in spec.columns)
        updates = [column.name for column in spec.columns if column.name not in spec.key]
        conflict = sql.SQL("DO NOTHING") if not updates else sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name)) for name in updates)
        )
        table = _Table(
            spec=spec,
            index=index,
            types={column.name: column.parsed_type for column in spec.columns},
            columns=columns,
            adapters=[column_adapter(column) for column in columns],
            create_stage=sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS").format(
                stage, target),
            clear_stage=sql.SQL("TRUNCATE {}").format(stage),
            copy=sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(stage, names),
            merge=sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
                target, names, names, stage, sql.SQL(", ").join(map(sql.Identifier, spec.key)), conflict),
            copy_direct=sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(target, names)
            if direct else None,
            indexed_parent=indexed_parent,
        )
        self._tables[spec.table] = table
        for other in self._tables.values():
            if other.spec.parent == spec.table and other.spec.table not in table.children:
                table.children.append(other.spec.table)
            if spec.parent == other.spec.table and spec.table not in other.children:
                other.children.append(spec.table)

    def _table(self, name: str) -> _Table:
        try:
            return self._tables[name]
        except KeyError:
            raise EtlError(f"table {name!r} was not prepared on PostgreSQL target {self.name!r}") from None

    def _depth(self, table: _Table) -> int:
        depth, parent = 0, table.spec.parent
        while parent is not None and parent in self._tables and depth < len(self._tables):
            depth, parent = depth + 1, self._tables[parent].spec.parent
        return depth

    # ------------------------------------------------------------ writing

    def write(self, batch: Mapping[str, TableRows]) -> WriteResult:
        result = WriteResult()
        parts = {name: self._part(self._table(name), rows, result.rejects) for name, rows in batch.items()}
        attempt = 1
        while True:
            connection = self._acquire_for_write(attempt)
            refused: list[Reject] = []
            try:
                with connection.conn.transaction():
                    loaded = self._write_down(connection, parts, {}, refused)
            except TRANSIENT as error:
                self._discard(connection)
                if not self._backoff.can_retry(attempt):
                    raise RuntimeFailure(
                        f"PostgreSQL target {self.name!r}: batch not written after {attempt} attempts"
                        f" ({type(error).__name__}: {str(error).strip()[:200]})",
                        hint="check the server; the job can be resumed from its last checkpoint",
                    ) from None
                self._backoff.pause(attempt)
                attempt += 1
                continue
            except BaseException:
                self._discard(connection)
                raise
            self._release(connection)
            result.loaded.update(loaded)
            result.rejects.extend(refused)
            return result

    def _acquire_for_write(self, attempt: int) -> _Connection:
        while True:
            try:
                return self._acquire()
            except ConnectionFailed:
                if not self._backoff.can_retry(attempt):
                    raise
                self._backoff.pause(attempt)
                attempt += 1

    def _adapt(
        self, table: _Table, columns: dict[str, list], rows: Callable[[], list[dict]], source_keys: list[str],
        rejects: list[Reject],
    ) -> _Pending:
        """Adapt values for COPY, column by column; a value the column cannot hold exactly rejects its row.
        `columns`: every row's value of each column (a column not given is null in every row)."""
        count = len(source_keys)
        refused: dict[int, Reject] = {}
        adapted = []
        for name, adapter_ in zip(table.names, table.adapters, strict=True):
            values, problems = adapter_.column(columns[name] if name in columns else [None] * count)
            adapted.append(values)
            for index, problem in problems.items():
                if index not in refused:
                    row = rows()[index]
                    refused[index] = _refused_value(table.spec, source_keys[index], row, name, problem)
        pending = _Pending(list(zip(*adapted, strict=True)), source_keys, list(range(count)), rows)
        if not refused:
            return pending
        rejects.extend(refused[index] for index in sorted(refused))
        return pending.without(refused)

    def _part(self, table: _Table, table_rows: TableRows, rejects: list[Reject]) -> _Part:
        """A table's rows ready to send; the rows refused before sending go to `rejects`."""
        before = len(rejects)
        columns, rows, source_keys = _columns(table, table_rows, rejects)
        pending = self._adapt(table, columns, rows, source_keys, rejects)
        return _Part(pending, columns, _keys_of(table.spec.key, rejects[before:]))

    @staticmethod
    def _admit(table: _Table, part: _Part, gone: dict[str, set[tuple]], rejects: list[Reject]) -> _Pending:
        """The rows of `part` to send: a row whose parent row is not written (its key in `gone`) is
        rejected with it, so that no child row is ever written without its parent row (which lets a
        first load skip deleting children, `_write_down`). Notes this table's keys not written in `gone`."""
        pending = part.pending
        refused_parents = gone.get(table.spec.parent or "")
        orphans = [] if not refused_parents or not table.spec.parent_key else [
            index for index, key in enumerate(part.keys(table.spec.parent_key, pending))
            if key in refused_parents]
        gone[table.spec.table] = set(part.refused)
        if not orphans:
            return pending
        reason = f"its parent row in {table.spec.parent} was refused"
        for index in orphans:
            rejects.append(_reject(table.spec, pending.source_keys[index], pending.row(index), reason))
        gone[table.spec.table] |= _keys_of(table.spec.key, rejects[-len(orphans):])
        return pending.without(set(orphans))

    def _write_down(self, connection: _Connection, parts: Mapping[str, _Part],
                    replaced: dict[str, list[tuple]], refused: list[Reject]) -> dict[str, int]:
        """Write a batch's tables from the roots down; returns the rows written per table.

        Before a child table's rows go in, the existing children of the parent rows just written are
        deleted, and of the parent rows deleted on the way (a replaced child that has children of its
        own). `replaced`: per child table, parent keys whose children are deleted in any case (`delete`).
        Parent rows that went in by a direct COPY were new to their table; when the child table held no
        row as the run began, no child of theirs can exist (every child row is written with its parent
        row, `_admit`, and deleted with it, `delete`), so a first load deletes no children."""
        conn = connection.conn
        loaded: dict[str, int] = {}
        gone: dict[str, set[tuple]] = {}
        for table in sorted(self._tables.values(), key=self._depth):
            spec = table.spec
            deleted: list[tuple] = []
            if replaced.get(spec.table):
                deleted = self._delete_where(conn, table, spec.parent_key, replaced[spec.table],
                                             returning=bool(table.children))
            written: list[tuple] = []
            replacing = table.children
            part = parts.get(spec.table)
            if part is not None:
                before = len(refused)
                pending = self._admit(table, part, gone, refused)
                loaded[spec.table], new = self._upsert(connection, table, pending, refused)
                gone[spec.table] |= _keys_of(spec.key, refused[before:])
                if new:  # these parents have children only where the child table had rows at the start
                    replacing = [child for child in table.children if child not in self._empty_at_start]
                if replacing:
                    written = [key for key in part.keys(spec.key, pending) if key not in gone[spec.table]]
            for child in table.children:
                parents = deleted + written if child in replacing else deleted
                replaced[child] = list(dict.fromkeys(replaced.get(child, []) + parents))
        return loaded

    def _delete_where(
        self, conn: psycopg.Connection, table: _Table, columns: Sequence[str], values: list[tuple],
        *, returning: bool,
    ) -> list[tuple]:
        deleted: list[tuple] = []
        for start in range(0, len(values), KEYS_PER_STATEMENT):
            chunk = values[start:start + KEYS_PER_STATEMENT]
            query, params = self._delete_statement(table, columns, chunk, returning=returning)
            cursor = self._execute_by_index(conn, table, query, params)
            if returning:
                deleted.extend(tuple(row) for row in cursor.fetchall())
        return deleted

    def _delete_statement(self, table: _Table, columns: Sequence[str], keys: list[tuple], *, returning: bool
                          ) -> tuple[sql.Composed, list]:
        """`DELETE` of the rows whose `columns` hold one of `keys`. One column of a built-in type is
        matched with `= ANY(array)`: one index condition, which PostgreSQL answers with an index scan
        whatever its statistics say. `IN (VALUES ...)` is a join, and without statistics the planner
        joins the whole table (by a full index scan when sequential scans are off); it is kept for
        keys of several columns or of other types."""
        target = self._qualified(table.spec.table)
        udt = next((column.udt for column in table.columns if column.name == columns[0]), None)
        if len(columns) == 1 and udt in _ARRAY_MATCHED:
            query = sql.SQL("DELETE FROM {} WHERE {} = ANY(%s::{}[])").format(
                target, sql.Identifier(columns[0]), sql.SQL(udt))
            params: list = [[key[0] for key in keys]]
        else:
            row_of_params = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(columns)))
            query = sql.SQL("DELETE FROM {} WHERE ({}) IN (VALUES {})").format(
                target, sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join([row_of_params] * len(keys)))
            params = [value for key in keys for value in key]
        if returning:
            query += sql.SQL(" RETURNING {}").format(sql.SQL(", ").join(map(sql.Identifier, table.spec.key)))
        return query, params

    @staticmethod
    def _execute_by_index(conn: psycopg.Connection, table: _Table, query: sql.Composed, params: list
                          ) -> psycopg.Cursor:
        """Run a statement that finds rows by a key the table has an index on, keeping the planner off
        a sequential scan: while a load grows a table from empty, its statistics lag (autovacuum
        analyses it about once a minute) and the planner, guessing few distinct keys, scans the whole
        table for each batch's keys. The setting is the transaction's and is put back at once."""
        if not table.indexed_parent:
            return conn.execute(query, params)
        before = conn.execute("SELECT current_setting('enable_seqscan'),"  # one row: no FROM
                              " set_config('enable_seqscan', 'off', true)").fetchone()[0]  # type: ignore[index]
        cursor = conn.execute(query, params)
        # Not in a `finally`: after an error the transaction is rolled back, and the setting with it.
        conn.execute("SELECT set_config('enable_seqscan', %s, true)", (before,))
        return cursor

    def _upsert(
        self, connection: _Connection, table: _Table, pending: _Pending, refused: list[Reject]
    ) -> tuple[int, bool]:
        """(rows written, whether they all went in by a direct COPY, so every key was new)."""
        if not pending.values:
            return 0, False
        if table.copy_direct is not None and self._copy_new_rows(connection.conn, table, pending):
            return len(pending.values), True
        if table.index not in connection.staged:
            connection.conn.execute(table.create_stage)
            connection.staged.add(table.index)
        return self._apply(connection.conn, table, pending, refused, clear_stage=False), False

    @staticmethod
    def _copy_new_rows(conn: psycopg.Connection, table: _Table, pending: _Pending) -> bool:
        """COPY the rows straight into the table inside a savepoint: True when PostgreSQL took them
        all, which it does only when no key exists yet (then the upsert would have inserted them all).
        A key that exists rolls the savepoint back and sends this table's batches through staging
        from now on; any other refusal only this batch (staging finds and rejects the row)."""
        assert table.copy_direct is not None
        try:
            with conn.transaction(), conn.cursor() as cursor:
                with cursor.copy(table.copy_direct) as copy:
                    copy.set_types(table.copy_types)
                    for values in pending.values:
                        copy.write_row(values)
            return True
        except ROW_REFUSED as error:
            if isinstance(error, psycopg.errors.UniqueViolation):
                table.copy_direct = None
            return False

    def _apply(
        self, conn: psycopg.Connection, table: _Table, pending: _Pending, refused: list[Reject], *,
        clear_stage: bool,
    ) -> int:
        """COPY + upsert inside a savepoint; when PostgreSQL refuses a row, bisect to reject only it.
        The staging table is empty at the start of each batch (ON COMMIT DELETE ROWS) and after a
        rolled-back savepoint, but not after a half that succeeded: bisecting clears it each time."""
        try:
            with conn.transaction(), conn.cursor() as cursor:
                if clear_stage:
                    cursor.execute(table.clear_stage)
                with cursor.copy(table.copy) as copy:
                    copy.set_types(table.copy_types)
                    for values in pending.values:
                        copy.write_row(values)
                cursor.execute(table.merge)
            return len(pending.values)
        except ROW_REFUSED as error:
            if len(pending.values) == 1:
                refused.append(_reject(table.spec, pending.source_keys[0], pending.row(0), _refusal(error),
                                       error.diag.column_name))
                return 0
            first, second = pending.halves()
            return (self._apply(conn, table, first, refused, clear_stage=True)
                    + self._apply(conn, table, second, refused, clear_stage=True))

    def delete(self, table: TableSpec, keys: Sequence[dict]) -> int:
        """Delete rows by key, and their children (as a write of the parent would replace them)."""
        prepared = self._table(table.table)
        values = list(dict.fromkeys(tuple(key[name] for name in table.key) for key in keys))
        attempt = 1
        while True:
            connection = self._acquire_for_write(attempt)
            try:
                with connection.conn.transaction():
                    self._write_down(connection, {}, {child: values for child in prepared.children}, [])
                    deleted = len(self._delete_where(connection.conn, prepared, table.key, values,
                                                     returning=True))
            except TRANSIENT:
                self._discard(connection)
                if not self._backoff.can_retry(attempt):
                    raise RuntimeFailure(f"PostgreSQL target {self.name!r}: deletes from {table.table!r} not"
                                         f" applied after {attempt} attempts") from None
                self._backoff.pause(attempt)
                attempt += 1
                continue
            except BaseException:
                self._discard(connection)
                raise
            self._release(connection)
            return deleted

    # ------------------------------------------------------------ reading

    def read_back(self, table: TableSpec, *, segments: int = 4, consistent: bool = False) -> Iterator[dict]:
        """Stream rows through a server-side (named) cursor; `segments`/`consistent` do not apply here."""
        types = {column.name: column.parsed_type for column in table.columns}
        connection = self._acquire()
        try:
            with connection.conn.transaction():
                cursor_name = "etl_read_back"
                with connection.conn.cursor(name=cursor_name, row_factory=dict_row) as cur:
                    cur.itersize = 2000
                    try:
                        cur.execute(sql.SQL("SELECT {} FROM {}").format(
                            sql.SQL(", ").join(sql.Identifier(column.name) for column in table.columns),
                            self._qualified(table.table),
                        ))
                    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as missing:
                        raise RuntimeFailure(
                            f"PostgreSQL target {self.name!r}: cannot read table {table.table!r} back: "
                            f"{missing.diag.message_primary}",
                            hint="run the job (or create the table) before validating it",
                        ) from None
                    for row in cur:
                        yield {name: _decode(value, types[name]) for name, value in row.items()}
        finally:
            self._release(connection)

    def checksum_side(self, table: TableSpec) -> PostgresTableSide:
        """The table as a validation side that hashes its rows in SQL where its column types allow
        (docs/checksum.md §10); its rows, when they are read, are `read_back`'s."""
        return _TargetSide(self, table)

    def stored_form(self, table: TableSpec) -> Callable[[dict], dict] | None:
        """The row as `read_back` returns it once written, for the source side of a validation: values
        of json/jsonb columns go through the very text the writer stores (`jsontext.stored`), so nested
        datetimes and UUIDs are their text, bytes stay bytes, sets become lists. Other columns read back
        as written. A value the writer refuses is left as it is (its row is rejected at load)."""
        connection = self._acquire()
        try:
            with connection.conn.transaction():
                existing = self._existing_columns(connection.conn, table.table)
        finally:
            self._release(connection)
        types = {column.name: column.parsed_type for column in table.columns}
        return column_form({
            name: functools.partial(_stored_document, column=column) for name, column in types.items()
            if (existing[name].udt if name in existing else ddl_type(column)) in ("jsonb", "json")
        }, jsontext.JsonRefused)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            self._discard(connection)


class _TargetSide(PostgresTableSide):
    """A prepared target table hashed where it lives, on the sink's own connections."""

    def __init__(self, sink: PostgresSink, spec: TableSpec) -> None:
        super().__init__(sink.config.dsn, spec.table, schema=sink.config.db_schema,
                         connect=lambda: sink._connect().conn)
        self._rows = functools.partial(sink.read_back, spec)

    def __call__(self) -> Iterator[dict]:
        return self._rows()


def _decode(value: Any, column: ColumnType) -> Any:
    """What the driver returns is already canonical, except sets (stored as arrays or jsonb arrays)."""
    if column.base == "set" and isinstance(value, list):
        try:
            return set(value)
        except TypeError:
            return value
    return value


def _stored_document(value: Any, column: ColumnType) -> Any:
    return _decode(jsontext.stored(value), column)


def _columns(
    table: _Table, table_rows: TableRows, rejects: list[Reject]
) -> tuple[dict[str, list], Callable[[], list[dict]], list[str]]:
    """(each column's values, the row dicts, source keys) of a table's rows, one row per key.
    Column-wise rows whose keys are all present and distinct are used as they are."""
    columns = _keyed_columns(table.spec, table_rows)
    if columns is not None:
        return columns, lambda: table_rows.rows, table_rows.source_keys
    rows, source_keys = _dedupe(table.spec, table_rows, rejects)
    columns = {name: list(map(dict.get, rows, repeat(name, len(rows)))) for name in table.names}
    return columns, lambda: rows, source_keys


def _keys_of(names: Sequence[str], rejects: Sequence[Reject]) -> set[tuple]:
    """The keys (values of `names`) of the rejected rows."""
    return {tuple(map((reject.record or {}).get, names)) for reject in rejects}


def _keyed_columns(spec: TableSpec, rows: TableRows) -> dict[str, list] | None:
    """The columns of column-wise rows (`ColumnRows`) whose key columns are all present, non-null and
    distinct, so that they need no de-duplication; None otherwise (then the rows go through `_dedupe`)."""
    columns = rows.columns if isinstance(rows, ColumnRows) else None
    if columns is None or not all(name in columns for name in spec.key):
        return None
    if any(len(values) != len(rows.source_keys) for values in columns.values()):
        return None
    if len(spec.key) == 1:
        keys: list = columns[spec.key[0]]
        unkeyed = None in keys
    else:
        keys = list(zip(*(columns[name] for name in spec.key), strict=True))
        unkeyed = any(None in key for key in keys)
    return None if unkeyed or len(set(keys)) != len(keys) else columns


def _dedupe(spec: TableSpec, rows: TableRows, rejects: list[Reject]) -> tuple[list[dict], list[str]]:
    """(rows, source keys) with one row per key, the later row winning (PostgreSQL refuses a statement
    that touches a row twice). A row with a null key column cannot be keyed: it is rejected here."""
    source_keys = rows.source_keys
    if len(source_keys) != len(rows.rows):
        source_keys = [*source_keys[:len(rows.rows)], *[""] * (len(rows.rows) - len(source_keys))]
    if len(spec.key) == 1:
        keys: list = list(map(dict.get, rows.rows, repeat(spec.key[0], len(rows.rows))))
        unkeyed = None in keys
    else:
        keys = [tuple(row.get(name) for name in spec.key) for row in rows.rows]
        unkeyed = any(None in key for key in keys)
    if not unkeyed and len(set(keys)) == len(keys):
        return rows.rows, source_keys
    latest: dict = {}
    for index, (key, row) in enumerate(zip(keys, rows.rows, strict=True)):
        missing = [name for name in spec.key if row.get(name) is None]
        if missing:
            reason = f"key column {missing[0]!r} is missing or null"
            rejects.append(_reject(spec, source_keys[index], row, reason, missing[0],
                                   type(row.get(missing[0])).__name__))
        else:
            latest[key] = index
    kept = sorted(latest.values())
    return [rows.rows[i] for i in kept], [source_keys[i] for i in kept]


def _refused_value(spec: TableSpec, source_key: str, row: dict, name: str, problem: ValueRefused) -> Reject:
    """The reject of a row whose column `name` holds a value the column cannot hold (`problem`): the
    reason and field path name the column, and the place inside it for a value within a document."""
    if not problem.path:
        value_type = type(row.get(name)).__name__
        return _reject(spec, source_key, row, f"column {name!r}: {problem}", name, value_type)
    path = nested_path(name, problem.path)
    return _reject(spec, source_key, row, f"column {name!r} at {path}: {problem}", path,
                   problem.value_type or type(row.get(name)).__name__)


def _refusal(error: psycopg.Error) -> str:
    """PostgreSQL's primary message names the problem and column but, unlike its DETAIL, not the values."""
    return f"PostgreSQL refused the row: {error.diag.sqlstate} {error.diag.message_primary}"


def _reject(spec: TableSpec, source_key: str, row: dict, reason: str, field_path: str | None = None,
            value_type: str | None = None) -> Reject:
    return Reject(table=spec.table, source_key=source_key, reason=reason, stage="load", field_path=field_path,
                  value_type=value_type, record=row, target=f"{spec.target}.{spec.table}")


def describe_type(column: ColumnType) -> str:
    """How a mapping type is stored here (`--scaffold` comments): the column type the sink creates."""
    return ddl_type(column)


def open_sink(name: str, config: Config) -> PostgresSink:
    return PostgresSink(name, config)
