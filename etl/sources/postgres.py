"""PostgreSQL source: psycopg 3, named (server-side) cursors, one exported repeatable-read snapshot.

Only what differs from the generic SQL source lives here: the catalog queries, the session
settings that make values canonical (TimeZone UTC, ISO intervals, exact JSON numbers) and
the snapshot that every partition of a run imports (`pg_export_snapshot`, PostgreSQL docs
"Snapshot Synchronization Functions": https://www.postgresql.org/docs/15/functions-admin.html).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import set_json_loads

from etl import security
from etl.checksum.postgres_sql import PostgresTableSide
from etl.records import Json
from etl.sources.base import BatchLimits
from etl.sources.rowrecords import RecordMaker
from etl.sources.sql import SqlColumn, SqlSource, SqlSourceConfig, SqlTable
from etl.sources.sqltypes import Converter, iso_interval, json_loads_exact

log = logging.getLogger(__name__)

__all__ = ["Config", "PostgresSource", "SqlTable", "open_source"]


class Config(SqlSourceConfig):
    type: Literal["postgres"]
    dsn: str
    """libpq connection string or URI (`host=... dbname=... user=...`); use ${secret:..} for the password."""


_SESSION = "-c TimeZone=UTC -c IntervalStyle=iso_8601"
_cursor_names = itertools.count()
_SELECTED_AS_TEXT = frozenset({"INTERVAL", "JSON", "JSONB", "BPCHAR"})


def endpoints(config: Config) -> list[security.Endpoint]:
    """Every host of the DSN and how it is secured (etl/security.py decides whether that is allowed)."""
    return security.libpq_endpoints(config.dsn)


class PostgresSource(SqlSource):
    engine = "PostgreSQL"
    row_value_comparison = True
    integer_types = frozenset({"INT2", "INT4", "INT8"})
    records_by_driver = True

    def __init__(self, name: str, config: Config, limits: BatchLimits) -> None:
        super().__init__(name, config, limits)
        self.config: Config = config
        self._exporter: psycopg.Connection | None = None

    # --- connections ------------------------------------------------------------------

    def names_column(self, written: str, column: str) -> bool:
        """PostgreSQL folds unquoted identifiers to lower case (`Composer` names `composer`)."""
        return written.lower() == column

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

    def columns(self, connection: Any, schema: str, table: str) -> list[SqlColumn]:
        rows = connection.execute(
            "SELECT column_name, upper(udt_name), numeric_precision,"
            " coalesce(numeric_scale, datetime_precision), character_maximum_length, is_nullable = 'YES'"
            " FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
            " ORDER BY ordinal_position",
            [schema, table],
        ).fetchall()
        return [SqlColumn(*row) for row in rows]

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
        numbers, dates and timestamps: counted first; one such row sends the table back to Python)."""
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
        refused = [sql.SQL("NOT isfinite({})").format(sql.Identifier(column.name)) if column.type in _DATES
                   else sql.SQL("{} IN ('NaN', 'Infinity', '-Infinity')").format(sql.Identifier(column.name))
                   for column in map(by_name.get, renamed.values())
                   if column.type in _DATES or column.type in _NUMBERS - self.integer_types]
        if refused:
            query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {})").format(
                sql.Identifier(meta.schema or "public", meta.table), sql.SQL(" OR ").join(refused))
            with self._catalog_lock:
                if self._metadata_connection().execute(query).fetchone()[0]:
                    return None
        return PostgresTableSide(self.config.dsn, meta.table, schema=meta.schema or "public", columns=renamed,
                                 connect=self._exact_json_connection)

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

    def width(self, column: SqlColumn) -> int | None:
        if column.type in {"TEXT", "BYTEA", "JSON", "JSONB", "XML"} or column.type.startswith("_"):
            return None
        return 16 if column.length is None else column.length

    def holds_objects(self, column: SqlColumn) -> bool:
        return column.type.startswith("_")


_DATES = frozenset({"DATE", "TIMESTAMP", "TIMESTAMPTZ"})
_NUMBERS = frozenset({"INT2", "INT4", "INT8", "NUMERIC", "FLOAT4", "FLOAT8"})


def _copied_exactly(column: SqlColumn, kind: Any) -> bool:
    """Whether the mapping type `kind` (etl.mapping.types.ColumnType) keeps every finite value of the
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
