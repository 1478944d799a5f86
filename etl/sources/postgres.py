"""PostgreSQL source: psycopg 3, named (server-side) cursors, one exported repeatable-read snapshot.

Only what differs from the generic SQL source lives here: the catalog queries, the session
settings that make values canonical (TimeZone UTC, ISO intervals, exact JSON numbers) and
the snapshot that every partition of a run imports (`pg_export_snapshot`, PostgreSQL docs
"Snapshot Synchronization Functions": https://www.postgresql.org/docs/15/functions-admin.html).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.adapt import Loader
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.datetime import DateLoader, TimestampLoader, TimestamptzLoader
from psycopg.types.json import set_json_loads

from etl import security
from etl.checksum.postgres_sql import PostgresTableSide
from etl.errors import EtlError
from etl.records import Batch, Json, OutOfRangeTime
from etl.sources.base import BatchLimits, ChangeCapture
from etl.sources.rowrecords import RecordMaker
from etl.sources.sql import Params, SqlColumn, SqlSource, SqlSourceConfig, SqlTable, TableMeta, last_at_final
from etl.sources.sqltypes import Converter, decimal_type, iso_interval, json_loads_exact

log = logging.getLogger(__name__)

__all__ = ["Config", "PostgresSource", "SqlTable", "Table", "open_source"]


class Table(SqlTable):
    changes: Literal["watermark", "logical"] | None = None
    """`watermark` (with `watermark:`), or `logical`: logical decoding through a replication slot."""


JOB_SKELETON = """\
    type: postgres
    dsn: ${env:ETL_SOURCE_DSN}            # or ${secret:name#dsn}; host=... dbname=... user=...
"""
"""This source's section of a new job file (`--scaffold-job postgres`), indented under its name."""


class Config(SqlSourceConfig):
    type: Literal["postgres"]
    tables: dict[str, Table] = {}  # type: ignore[assignment]  # a SqlTable subclass; dict is invariant
    dsn: str
    """libpq connection string or URI (`host=... dbname=... user=...`); use ${secret:..} for the password."""


_SESSION = "-c TimeZone=UTC -c IntervalStyle=iso_8601"
_cursor_names = itertools.count()
_SELECTED_AS_TEXT = frozenset({"INTERVAL", "JSON", "JSONB", "BPCHAR"})
_DROP_SLOT = "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s"
_TIME_MARKS = frozenset({"TIMESTAMP", "TIMESTAMPTZ", "DATE"})
"""Watermark column types that `transactions_start` bounds (a transaction's start is a time)."""


def endpoints(config: Config) -> list[security.Endpoint]:
    """Every host of the DSN and how it is secured (etl/security.py decides whether that is allowed)."""
    return security.libpq_endpoints(config.dsn)


class PostgresSource(SqlSource):
    engine = "PostgreSQL"
    row_value_comparison = True
    integer_types = frozenset({"INT2", "INT4", "INT8"})
    number_types = frozenset({"NUMERIC", "FLOAT4", "FLOAT8"})
    records_by_driver = True

    version_sql = "SELECT current_setting('server_version')"
    # reltuples is -1 for a table never vacuumed or analysed (PostgreSQL 14+): the statistics
    # collector's live-row count then, kept as rows are written
    estimate_sql = ("SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint ELSE s.n_live_tup END"
                    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid"
                    " WHERE n.nspname = {schema} AND c.relname = {table}")

    def __init__(self, name: str, config: Config, limits: BatchLimits) -> None:
        super().__init__(name, config, limits)
        self.config: Config = config
        self._exporter: psycopg.Connection | None = None
        self._sees_all_sessions: bool | None = None

    # --- connections ------------------------------------------------------------------

    def names_column(self, written: str, column: str) -> bool:
        """PostgreSQL folds unquoted identifiers to lower case (`Composer` names `composer`)."""
        return written.lower() == column

    def user_sql(self, text: str) -> str:
        """psycopg reads `%` in a statement with parameters as a placeholder: a literal one is `%%`."""
        return text.replace("%", "%%")

    def connect(self) -> psycopg.Connection:
        settings = _settings(self.config.dsn)
        try:
            connection = psycopg.connect(
                self.config.dsn,
                options=_SESSION,
                connect_timeout=10,
                **security.libpq_tls_defaults(self.config.dsn),
            )
        except psycopg.Error as error:
            raise self.connection_failed(_where(settings), error, [settings.get("password")]) from None
        return connection

    def open_cursor(self, connection: Any, fetch_rows: int) -> Any:
        cursor = connection.cursor(name=f"etl_read_{next(_cursor_names)}")
        cursor.itersize = fetch_rows
        return cursor

    def unloadable(self, error: Exception) -> bool:
        # psycopg's loaders raise a DataError without a SQLSTATE; the server's data errors (a `where`
        # dividing by zero) carry one, and reading again would only hide them behind an aborted
        # transaction.
        return isinstance(error, psycopg.DataError) and error.sqlstate is None

    def tolerate_unloadable(self, cursor: Any) -> None:
        for name, loader in _OUT_OF_RANGE_LOADERS.items():
            cursor.adapters.register_loader(name, loader)

    def records_cursor(self, cursor: Any, make_record: RecordMaker) -> None:
        """psycopg calls a row factory's maker on each row tuple as it decodes it, from C: the
        record is built there, without a second pass over the batch or a list of tuples kept alive."""
        cursor.row_factory = lambda _cursor: make_record

    def consistency_point(self, connection: Any) -> Json:
        """Export a snapshot from a transaction kept open until `close`, for partitions to import."""
        self._exporter = self.connect()
        self._exporter.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self._exporter.read_only = True
        ((snapshot,),) = self._exporter.execute("SELECT pg_export_snapshot()").fetchall()
        return snapshot

    def planning_connection(self) -> Any:
        """The exporting transaction: watermarks and cuts are read in the run's snapshot."""
        return self._exporter if self._exporter is not None else super().planning_connection()

    def begin_read(self, connection: Any, at: Json) -> None:
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        connection.read_only = True
        if at is None:
            return
        try:
            connection.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(at)))
        except (psycopg.errors.InvalidParameterValue, psycopg.errors.ObjectNotInPrerequisiteState):
            # The exporting transaction has ended (e.g. a resumed run): this partition reads its
            # own repeatable-read snapshot instead; counted so the run report can say so.
            connection.rollback()
            self.warnings["snapshot: exported snapshot gone, partition used its own"] += 1
            log.warning("PostgreSQL source %r: exported snapshot is gone; reading a new snapshot", self.name)

    def can_read(self, table: str) -> bool:
        """Whether this login may read `table` (`--check`). A `query:` table reads the tables its
        SELECT names: the sample `--check` reads before asking has shown them readable."""
        meta = self.describe(table)
        if meta.query is not None or meta.schema is None:
            return True
        params = Params(self.placeholder)
        name = params.add(f"{self.quote(meta.schema)}.{self.quote(meta.table)}")
        query = f"SELECT has_table_privilege({name}, 'SELECT')"
        with self._catalog_lock:
            ((select,),) = self._query(self._metadata_connection(), query, params)
        return bool(select)

    # --- incremental runs -------------------------------------------------------------

    def bounds_by_transactions(self, meta: Any) -> bool:
        """A date/time watermark, and a user who sees every session's transaction start (members of
        pg_read_all_stats; others see only their own sessions'): else the overlap alone bounds it."""
        if self._watermark_type(meta) not in _TIME_MARKS:
            return False
        if self._sees_all_sessions is None:
            with self._catalog_lock:
                ((self._sees_all_sessions,),) = self._metadata_connection().execute(
                    "SELECT pg_has_role('pg_read_all_stats', 'MEMBER')"
                ).fetchall()
        label = f"{meta.name}: watermark bounded by the overlap only (no pg_read_all_stats)"
        if not self._sees_all_sessions and not self.warnings[label]:  # said once per table
            log.warning("PostgreSQL source %r: %s", self.name, label)
            self.warnings[label] += 1
        return bool(self._sees_all_sessions)

    def transactions_start(self, connection: Any, meta: Any) -> Any:
        """The start of the oldest transaction of this database still in progress, this statement's
        own included, as the watermark column's type (UTC). A row a transaction writes later carries
        `now()` (its start) or later, so a position at or before this value misses none of them:
        docs/relational.md, "`watermark`: late commits and the overlap"."""
        if not self.bounds_by_transactions(meta):
            return None
        ((start,),) = connection.execute(
            sql.SQL(
                "SELECT CAST(min(xact_start) AS {}) FROM pg_stat_activity"
                " WHERE datname = current_database()"
                " AND backend_type = 'client backend'"  # autovacuum and the like write no rows
            ).format(sql.Identifier((self._watermark_type(meta) or "").lower()))
        ).fetchall()
        return start

    def capture(self, meta: TableMeta, method: str) -> ChangeCapture:
        if method == "logical":
            slot = self.slot_name(meta.name)
            return ChangeCapture(f"logical decoding (slot {slot}, test_decoding)", deletes=True)
        return super().capture(meta, method)

    def slot_name(self, table: str) -> str:
        """The replication slot of `table`: `etl_<source>_<table>` in the letters a slot name may hold,
        cut to fit 63 characters with a hash of the whole."""
        name = re.sub(r"[^a-z0-9_]", "_", f"etl_{self.name}_{table}".lower())
        if len(name) > 63:
            name = f"{name[:54]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"
        return name

    def log_position(self, meta: TableMeta, method: str) -> Json:
        """A new logical replication slot for the table (an earlier one of the same name is dropped):
        it keeps every change committed from its consistent point on, which is before the full load
        that follows reads its snapshot."""
        slot = self.slot_name(meta.name)
        with self._catalog_lock:
            connection = self._metadata_connection()
            try:
                connection.execute(_DROP_SLOT, [slot])
                ((lsn,),) = connection.execute(
                    "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'test_decoding')", [slot]
                ).fetchall()
            except (psycopg.errors.ObjectNotInPrerequisiteState, psycopg.errors.InsufficientPrivilege,
                    psycopg.errors.ConfigurationLimitExceeded, psycopg.errors.ObjectInUse) as error:
                raise EtlError(
                    f"PostgreSQL source {self.name!r}, table {meta.name!r}: cannot create the replication"
                    f" slot {slot!r}: {' '.join(str(error).split())}",
                    hint="logical decoding needs wal_level = logical, a free slot (max_replication_slots)"
                    " and a user with REPLICATION; or use `changes: watermark`",
                ) from None
        return {"method": method, "slot": slot, "lsn": lsn}

    def drop_slot(self, table: str) -> bool:
        """Drop the table's replication slot once incremental runs are over (after the switch):
        a slot nobody reads keeps all WAL since its position on the server's disk."""
        with self._catalog_lock:
            rows = self._metadata_connection().execute(_DROP_SLOT, [self.slot_name(table)]).fetchall()
        return bool(rows)

    def log_changes(
        self, meta: TableMeta, method: str, position: dict, fields: Sequence[str] | None, wait_ms: int
    ) -> Iterator[Batch]:
        """The table's changes decoded from the slot after the stored LSN: the slot is first moved
        on to that LSN (the engine stored it, so what precedes is committed in the targets), then its
        pending changes are peeked — not consumed: until the next call confirms them, a crash loses
        nothing. The last state of each key in a batch decides: a key deleted last is a delete, any
        other is read from the table as it is now (gone, or outside `where:`: a delete)."""
        slot, stored = position["slot"], position["lsn"]
        position_of_call = position
        connection = self.connect()
        connection.autocommit = True
        try:
            lost = "is gone"
            try:
                moved = connection.execute(
                    "SELECT pg_replication_slot_advance(slot_name, greatest(%s::pg_lsn, confirmed_flush_lsn))"
                    " FROM pg_replication_slots WHERE slot_name = %s",
                    [stored, slot],
                ).fetchall()
            except psycopg.errors.ObjectNotInPrerequisiteState as error:  # invalidated: its WAL is gone
                moved, lost = [], f"can no longer be read ({' '.join(str(error).split())})"
            if not moved:
                raise EtlError(
                    f"PostgreSQL source {self.name!r}, table {meta.name!r}: replication slot {slot!r} {lost}",
                    hint="run a full load again (without --incremental): it creates a new slot",
                )
            ((prefix,),) = connection.execute(  # how test_decoding names the table
                "SELECT format('table %%s.%%s: ', quote_ident(%s), quote_ident(%s))",
                [meta.schema, meta.table],
            ).fetchall()
            events = self._decoded(connection, slot, prefix, wait_ms)
            reached = {"lsn": stored}  # the last commit decoded, of any table: the slot may move past it

            def position_at(lsn: str) -> dict:
                return {"method": method, "slot": slot, "lsn": lsn}

            yield from last_at_final(
                self._logical_batches(connection, meta, fields, events, position_at, reached),
                lambda: position_at(reached["lsn"]),
                position_of_call,
            )
        finally:
            connection.close()

    def _decoded(self, connection: Any, slot: str, prefix: str, wait_ms: int) -> Iterator[tuple]:
        """(kind, key values as text, commit LSN or None, commit time) of the table's changes and of
        every commit, streamed from the slot's pending changes."""
        deadline = time.monotonic() + wait_ms / 1000
        while True:
            seen = False
            name = f"etl_decode_{next(_cursor_names)}"
            with connection.transaction(), connection.cursor(name=name) as cursor:
                cursor.itersize = self.limits.records
                cursor.execute(
                    "SELECT lsn::text, data FROM pg_logical_slot_peek_changes(%s, NULL, NULL,"
                    " 'include-xids', '0', 'include-timestamp', '1', 'skip-empty-xacts', '1')",
                    [slot],
                )
                for lsn, data in cursor:
                    seen = True
                    if data.startswith("COMMIT"):
                        at = dt.datetime.fromisoformat(data.partition("(at ")[2].rstrip(")"))
                        yield ("commit", None, lsn, at.astimezone(dt.UTC).isoformat())
                    elif data.startswith(prefix):
                        kind, _, tuple_text = data[len(prefix):].partition(": ")
                        yield (kind, tuple_text, None, None)
            if seen or time.monotonic() >= deadline:
                return
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _logical_batches(
        self, connection: Any, meta: TableMeta, fields: Sequence[str] | None, events: Iterator[tuple],
        position: Callable[[str], dict], reached: dict,
    ) -> Iterator[Batch]:
        """Batches of at most `limits.records` keys; each resumes after the last commit fully decoded
        before it ends (a transaction cut by a batch is decoded again after a crash: harmless)."""
        pending: dict[tuple, str] = {}  # key as text -> insert / update / delete: its last state
        at = None
        for kind, tuple_text, lsn, commit_at in events:
            if kind == "commit":
                reached["lsn"], at = lsn, commit_at
                continue
            for key, state in self._key_states(meta, kind, tuple_text):
                pending[key] = "insert" if state == "update" and pending.get(key) == "insert" else state
            if len(pending) >= self.limits.records:
                yield self._logical_batch(connection, meta, fields, pending, position(reached["lsn"]), at)
                pending = {}
        if pending:
            yield self._logical_batch(connection, meta, fields, pending, position(reached["lsn"]), at)

    def _key_states(self, meta: TableMeta, kind: str, tuple_text: str) -> list[tuple[tuple, str]]:
        """The keys one decoded change touches: an UPDATE that changed the key deletes the old one."""
        if kind == "INSERT":
            return [(self._decoded_key(meta, tuple_text), "insert")]
        if kind == "DELETE":
            return [(self._decoded_key(meta, tuple_text), "delete")]
        if tuple_text.startswith("old-key: "):
            old, _, new = tuple_text[len("old-key: "):].partition(" new-tuple: ")
            old_key, new_key = self._decoded_key(meta, old), self._decoded_key(meta, new)
            return [(new_key, "update")] if old_key == new_key else [(old_key, "delete"), (new_key, "update")]
        return [(self._decoded_key(meta, tuple_text), "update")]

    def _decoded_key(self, meta: TableMeta, tuple_text: str) -> tuple:
        values = decoded_columns(tuple_text)
        missing = [name for name in meta.key if name not in values]
        if missing:
            raise EtlError(
                f"PostgreSQL source {self.name!r}, table {meta.name!r}: decoded changes do not carry key"
                f" column(s) {', '.join(missing)} (the table's replica identity does not hold them)",
                hint="ALTER TABLE ... REPLICA IDENTITY USING INDEX <unique index on the key> (or FULL)",
            )
        return tuple(values[name] for name in meta.key)

    def _logical_batch(
        self, connection: Any, meta: TableMeta, fields: Sequence[str] | None, pending: dict[tuple, str],
        resume_after: dict, at: str | None,
    ) -> Batch:
        """Records of the keys not deleted last, read as they are now; key records of the others and
        of those gone since or outside `where:`."""
        states = {tuple(record.values()): state for record, state in
                  zip(self._canonical_keys(connection, meta, list(pending)), pending.values(), strict=True)}
        where = self.config.tables[meta.name].where
        plan = self.read_plan(
            meta, fields, [f"CASE WHEN ({self.user_sql(where)}) THEN 1 ELSE 0 END" if where else "1"]
        )
        alive = [key for key, state in pending.items() if state != "delete"]
        rows = []
        if alive:
            columns = ", ".join(self.quote(name) for name in meta.key)
            values, params = self._typed_keys(meta, alive)
            rows = connection.execute(
                f"SELECT {', '.join(plan.expressions)} FROM {self.qualified(meta)}"  # noqa: S608 - quoted names
                f" WHERE ({columns}) IN (SELECT * FROM {values})",
                params,
            ).fetchall()
        kept_at = plan.extra_positions[0]
        kept_rows = [row for row in rows if row[kept_at]]
        batch = self.to_batch(meta, plan, kept_rows) if kept_rows else Batch([], None)
        key_at = [plan.names.index(name) for name in meta.key]
        found = self.key_records(meta, [tuple(row[i] for i in key_at) for row in rows])
        kept = {tuple(key.values()) for key, row in zip(found, rows, strict=True) if row[kept_at]}
        batch.deletes = [dict(zip(meta.key, key, strict=True)) for key in states if key not in kept]
        inserts = sum(1 for key in kept if states.get(key) == "insert")
        kinds = {"insert": inserts, "update": len(kept) - inserts, "delete": len(batch.deletes)}
        batch.kinds = {kind: count for kind, count in kinds.items() if count}
        batch.resume_after = resume_after
        batch.at = at
        return batch

    def _typed_keys(self, meta: TableMeta, keys: list[tuple]) -> tuple[str, list]:
        """Keys as test_decoding prints them -> a derived table of the key columns' own types (the
        server parses its own text: exact for every type)."""
        casts = ", ".join(
            f"CAST(v.k{index} AS {sql.Identifier(meta.column(name).type.lower()).as_string(None)})"
            f" AS {self.quote(name)}"
            for index, name in enumerate(meta.key)
        )
        rows = ", ".join("(" + ", ".join(["%s::text"] * len(meta.key)) + ")" for _ in keys)
        names = ", ".join(f"k{index}" for index in range(len(meta.key)))
        return f"(SELECT {casts} FROM (VALUES {rows}) AS v({names})) AS k", [v for key in keys for v in key]

    def _canonical_keys(self, connection: Any, meta: TableMeta, keys: list[tuple]) -> list[dict]:
        """Keys as test_decoding prints them -> key records, as a read of the table would make them."""
        values, params = self._typed_keys(meta, keys)
        expressions = ", ".join(self.column_expression(meta.column(name)) for name in meta.key)
        rows = connection.execute(f"SELECT {expressions} FROM {values}", params).fetchall()  # noqa: S608
        return self.key_records(meta, rows)

    def _watermark_type(self, meta: Any) -> str | None:
        name = self.config.tables[meta.name].watermark or ""
        return next((column.type for column in meta.columns if column.name.lower() == name.lower()), None)

    def close(self) -> None:
        if self._exporter is not None:
            self._exporter.close()
            self._exporter = None
        super().close()

    # --- catalog ----------------------------------------------------------------------

    def find_tables(self, connection: Any, schema: str | None, table: str) -> list[tuple[str, str]]:
        return connection.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE lower(table_name) = lower(%s) AND (%s::text IS NULL OR lower(table_schema) = lower(%s))",
            [table, schema, schema],
        ).fetchall()

    def default_schema(self, connection: Any) -> str:
        return connection.execute("SELECT current_schema()").fetchone()[0]

    def some_tables(self, connection: Any, schema: str | None) -> list[str]:
        rows = connection.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables"
            " WHERE table_schema = coalesce(%s, current_schema()) ORDER BY 1 LIMIT 20",
            [schema],
        ).fetchall()
        return [row[0] for row in rows]

    def all_tables(self, connection: Any) -> list[tuple[str, str, bool]]:
        return connection.execute(
            "SELECT table_schema, table_name, table_type = 'VIEW' FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            " AND table_schema NOT LIKE 'pg\\_%'"
        ).fetchall()

    def columns(self, connection: Any, schema: str, table: str) -> list[SqlColumn]:
        rows = connection.execute(
            "SELECT column_name, upper(udt_name), numeric_precision,"
            " coalesce(numeric_scale, datetime_precision), character_maximum_length, is_nullable = 'YES'"
            " FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
            " ORDER BY ordinal_position",
            [schema, table],
        ).fetchall()
        return [SqlColumn(*row) for row in rows]

    def query_columns(self, connection: Any, query: str) -> list[SqlColumn]:
        """The result's columns from the server's row description (no row read), typed by pg_type
        as information_schema's udt_name would type them (INT4, NUMERIC, _TEXT...)."""
        description = connection.execute(f"SELECT * FROM ({query}) etl_q LIMIT 0").description
        names = dict(
            connection.execute(
                "SELECT oid, upper(typname) FROM pg_type WHERE oid = ANY(%s)",
                [sorted({column.type_code for column in description})],
            ).fetchall()
        )
        return [
            SqlColumn(column.name, names[column.type_code], column.precision, column.scale,
                      column.display_size if names[column.type_code] in {"VARCHAR", "BPCHAR"} else None)
            for column in description
        ]

    def primary_key(self, connection: Any, schema: str, table: str) -> list[str]:
        keys = self._index_columns(connection, schema, table, "i.indisprimary")
        return keys[0] if keys else []

    def unique_keys(self, connection: Any, schema: str, table: str) -> list[list[str]]:
        return self._index_columns(
            connection, schema, table, "i.indisunique AND i.indexprs IS NULL AND i.indpred IS NULL"
        )

    def _index_columns(self, connection: Any, schema: str, table: str, condition: str) -> list[list[str]]:
        rows = connection.execute(
            "SELECT i.indexrelid, a.attname FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, position) ON true"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum"
            f" WHERE n.nspname = %s AND c.relname = %s AND {condition}"
            " ORDER BY i.indexrelid, k.position",
            [schema, table],
        ).fetchall()
        indexes: dict[int, list[str]] = {}
        for index, column in rows:
            indexes.setdefault(index, []).append(column)
        return list(indexes.values())

    # --- validation -------------------------------------------------------------------

    def checksum_side(self, table: str, copies: dict[str, tuple[str, Any]], key: Sequence[str]
                      ) -> PostgresTableSide | None:
        """The table as a validation side hashed in SQL, for a mapping that copies its columns
        (`CompiledMapping.copies`: target column -> (source column, mapping type)) into a table whose
        key is `key` (target columns), or None.

        It stands for the mapped rows only when mapping each value can neither refuse it nor change
        it: every source column's type holds only values its mapping type keeps exactly
        (`_copied_exactly`), key columns are NOT NULL (the mapping rejects a null key), the table
        has no `where` or watermark filter, and no row holds a value a cast refuses (NaN, infinite
        numbers, dates and timestamps infinite or outside years 1-9999): the side counts those in
        the scan that hashes the rows, and one such row raises `RefusedRowsFound`, which sends the
        table back to Python."""
        options = self.config.tables[table]
        if options.where or options.watermark:
            return None
        meta = self.describe(table)
        by_name = {column.name: column for column in meta.columns}
        renamed: dict[str, str] = {}
        for target, (field, kind) in copies.items():
            column = by_name.get(field)
            if column is None or not _copied_exactly(column, kind):
                return None
            renamed[target] = column.name
        if any(name not in renamed or by_name[renamed[name]].nullable for name in key):
            return None
        # Dates and timestamps outside years 1-9999 (infinite ones included) are `OutOfRangeTime`s.
        refused = [(_OUTSIDE_PYTHON_YEARS if column.type in _DATES else _NOT_A_NUMBER).format(
                       sql.Identifier(column.name))
                   for column in (by_name[name] for name in renamed.values())
                   if column.type in _DATES or column.type in _NUMBERS - self.integer_types]
        return PostgresTableSide(self.config.dsn, meta.table, schema=meta.schema or "public", columns=renamed,
                                 connect=self._exact_json_connection,
                                 refused=sql.SQL(" OR ").join(refused) if refused else None)

    def _exact_json_connection(self) -> psycopg.Connection:
        """A connection whose json/jsonb values come as `read` makes them (numbers exact)."""
        connection = self.connect()
        set_json_loads(json_loads_exact, context=connection)
        return connection

    # --- types ------------------------------------------------------------------------

    def column_expression(self, column: SqlColumn) -> str:
        """Cast to text: interval (ISO-8601, months kept apart), JSON (parsed exactly here), and
        CHAR(n), whose cast to text drops the pad spaces (PostgreSQL docs, "Character Types")."""
        if column.type in _SELECTED_AS_TEXT:
            return f"{self.quote(column.name)}::text"
        return self.quote(column.name)

    def converter(self, column: SqlColumn) -> Converter | None:
        if column.type == "INTERVAL":
            return iso_interval
        if column.type in {"JSON", "JSONB"}:
            return json_loads_exact
        return None

    def mapping_type(self, column: SqlColumn) -> str | None:
        if column.type.startswith("_"):
            element = self.mapping_type(SqlColumn(column.name, column.type[1:], column.precision,
                                                  column.scale))
            if element is None:
                return None
            base = element.split("(")[0]  # a list's element type takes no arguments: unconstrained holds all
            return "list" if base == "json" else f"list({base})"
        if column.type == "NUMERIC":
            return decimal_type(column.precision, column.scale)
        if column.type in {"TIMESTAMP", "TIMESTAMPTZ"}:
            return f"{column.type.lower()}({6 if column.scale is None else column.scale})"
        return _MAPPING_TYPES.get(column.type, "string")

    def width(self, column: SqlColumn) -> int | None:
        if column.type in {"TEXT", "BYTEA", "JSON", "JSONB", "XML"} or column.type.startswith("_"):
            return None
        return 16 if column.length is None else column.length

    def holds_objects(self, column: SqlColumn) -> bool:
        return column.type.startswith("_")


_MAPPING_TYPES: dict[str, str | None] = {
    "INT2": "int", "INT4": "int", "INT8": "int", "FLOAT4": "float", "FLOAT8": "float", "BOOL": "bool",
    "DATE": "date", "TIME": "time", "UUID": "uuid", "BYTEA": "bytes", "JSON": "json", "JSONB": "json",
    "INTERVAL": None,
}
"""udt names -> mapping types (None: none holds an interval, read as a timedelta); the rest (text,
varchar, ...) are strings."""


def decoded_columns(text: str) -> dict[str, str | None]:
    """test_decoding's tuple text -> {column: value text} (None for null). Columns are
    `name[type]:value`, separated by spaces: a name is quoted like an identifier when it needs to
    be, a type ends at the first `]:`, a value is quoted with '' for a quote unless it is a bare
    word (numbers, booleans, null, unchanged-toast-datum). PostgreSQL's contrib/test_decoding.c."""
    columns: dict[str, str | None] = {}
    position = 0
    while position < len(text):
        if text[position] == '"':
            name, position = _quoted(text, position)
        else:
            end = text.index("[", position)
            name, position = text[position:end], end
        position = text.index("]:", position) + 2
        value: str | None
        if text.startswith("'", position):
            value, position = _quoted(text, position)
        else:
            end = text.find(" ", position)
            end = len(text) if end < 0 else end
            value = None if text[position:end] == "null" else text[position:end]
            position = end
        columns[name] = value
        position += 1  # the space between columns
    return columns


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The text quoted by the character at `start` (doubled inside), and where it ends."""
    quote = text[start]
    end = start + 1
    while True:
        end = text.index(quote, end)
        if not text.startswith(quote * 2, end):
            return text[start + 1 : end].replace(quote * 2, quote), end + 1
        end += 2


_DATES = frozenset({"DATE", "TIMESTAMP", "TIMESTAMPTZ"})
_OUTSIDE_PYTHON_YEARS = sql.SQL("NOT ({0} >= '0001-01-01' AND {0} < '10000-01-01')")
_NOT_A_NUMBER = sql.SQL("{0} IN ('NaN', 'Infinity', '-Infinity')")
_NUMBERS = frozenset({"INT2", "INT4", "INT8", "NUMERIC", "FLOAT4", "FLOAT8"})


def _out_of_range_loader(base: type[Loader]) -> type[Loader]:
    """`base` (psycopg's text loader of a date or time type), loading what Python's types cannot
    hold (`infinity`, `-infinity`, years past 9999 or BC, which psycopg refuses with a DataError)
    as an `OutOfRangeTime` of the server's text instead. A Python loader reads 4x slower than
    psycopg's own (1,000,000 timestamps: 6.4 s against 1.7 s), so it serves only the pages that
    need it (`SqlSource.pages`)."""

    class OutOfRangeLoader(base):  # type: ignore[valid-type,misc]
        def load(self, data: Any) -> Any:
            try:
                return super().load(data)
            except psycopg.DataError:
                return OutOfRangeTime(bytes(data).decode())

    return OutOfRangeLoader


_OUT_OF_RANGE_LOADERS = {"date": _out_of_range_loader(DateLoader),
                         "timestamp": _out_of_range_loader(TimestampLoader),
                         "timestamptz": _out_of_range_loader(TimestamptzLoader)}


def _copied_exactly(column: SqlColumn, kind: Any) -> bool:
    """Whether the mapping type `kind` (etl.coltypes.ColumnType) keeps every finite value of the
    source column exactly, as the Python values the source reads: no rounding, no refusal, no
    conversion (a naive timestamp into timestamptz would take a time zone)."""
    base = kind.base
    if base == "int":
        return column.type in {"INT2", "INT4", "INT8"}
    if base == "float":
        return column.type in {"FLOAT4", "FLOAT8"}
    if base == "decimal":
        if column.type in {"INT2", "INT4"} and kind.precision is None:
            return True
        if column.type != "NUMERIC":
            return False
        if kind.precision is None:
            return True
        if column.precision is None or column.scale is None:
            return False
        return column.scale <= (kind.scale or 0) and column.precision - column.scale <= kind.precision - (
            kind.scale or 0)
    if base in ("timestamp", "timestamptz"):
        wanted = "TIMESTAMP" if base == "timestamp" else "TIMESTAMPTZ"
        digits = 6 if column.scale is None else column.scale
        return column.type == wanted and digits <= (6 if kind.precision is None else kind.precision)
    return column.type in {"string": {"TEXT", "VARCHAR"}, "bool": {"BOOL"}, "date": {"DATE"},
                           "uuid": {"UUID"}, "bytes": {"BYTEA"}, "json": {"JSONB"}}.get(base, set())


def _settings(dsn: str) -> dict[str, Any]:
    try:
        return conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return {}


def _where(settings: dict[str, Any]) -> str:
    host = settings.get("host", "localhost")
    port = settings.get("port", 5432)
    return f"{host}:{port}/{settings.get('dbname', '')}"


def open_source(name: str, config: Config, limits: BatchLimits) -> PostgresSource:
    return PostgresSource(name, config, limits)
