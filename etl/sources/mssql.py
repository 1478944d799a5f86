"""SQL Server source: pyodbc with Microsoft ODBC Driver 18 or FreeTDS, snapshot-isolation reads.

What differs from the generic SQL source: `[bracket]` quoting, `?` parameters, `TOP (n)`, no
row-value comparison, the sys.* catalog, and the types pyodbc cannot hand over as canonical
values: DATETIMEOFFSET arrives as raw bytes (ODBC SQL type -155, which pyodbc only returns
through an output converter: https://github.com/mkleehammer/pyodbc/wiki/Using-an-Output-Converter-function),
DATETIME2(7)/TIME(7) have 100 ns ticks, SQL_VARIANT has no ODBC type at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import pyodbc
from pydantic import Field, SecretStr, model_validator

from etl import security
from etl.errors import EtlError
from etl.records import Batch, Json
from etl.settings_types import Integer
from etl.sources.base import BatchLimits, ChangeCapture
from etl.sources.sql import (
    MarkScan,
    Params,
    SqlColumn,
    SqlSource,
    SqlSourceConfig,
    SqlTable,
    TableMeta,
    last_at_final,
)
from etl.sources.sqltypes import (
    MONEY_SCALE,
    Converter,
    datetimeoffset,
    decimal_type,
    decimal_with_scale,
    naive_timestamp,
    parse_timestamp,
    rowversion,
    sql_variant,
    strip_char_padding,
    to_date,
    to_time,
    uniqueidentifier,
)

__all__ = ["Config", "MssqlSource", "SqlTable", "Table", "open_source", "connection_string"]

SQL_SS_TIMESTAMPOFFSET = -155
"""ODBC type code of DATETIMEOFFSET (msodbcsql's sqlncli.h)."""


class Table(SqlTable):
    changes: Literal["watermark", "rowversion", "change_tracking"] | None = None
    """`watermark` (with `watermark:`), `rowversion` (the table's rowversion column, or the one
    `watermark:` names) or `change_tracking` (CHANGETABLE; deletes included)."""


JOB_SKELETON = """\
    type: mssql
    server: ${env:ETL_SOURCE_SERVER}
    database: ${env:ETL_SOURCE_DATABASE}
    user: ${env:ETL_SOURCE_USER}
    password: ${env:ETL_SOURCE_PASSWORD}  # or ${secret:name#password}
"""
"""This source's section of a new job file (`--scaffold-job mssql`), indented under its name."""


class Config(SqlSourceConfig):
    type: Literal["mssql"]
    tables: dict[str, Table] = {}  # type: ignore[assignment]  # a SqlTable subclass; dict is invariant
    dsn: SecretStr | None = None
    """A complete ODBC connection string; when given, the settings below are not used."""
    driver: str = "ODBC Driver 18 for SQL Server"
    """ODBC driver name as in odbcinst.ini: `ODBC Driver 18 for SQL Server` or `FreeTDS`."""
    server: str | None = None
    port: Integer = Field(default=1433, ge=1, le=65535)
    database: str | None = None
    user: str | None = None
    password: SecretStr | None = None
    encrypt: bool = True
    trust_server_certificate: bool = False
    tds_version: str = "7.4"
    """FreeTDS protocol version; 7.3+ is needed for DATE, TIME, DATETIME2 and DATETIMEOFFSET."""
    login_timeout: Integer = Field(default=10, gt=0)

    @model_validator(mode="after")
    def _server_or_dsn(self) -> Config:
        if self.dsn is None and self.server is None:
            raise ValueError("set either `dsn` (an ODBC connection string) or `server`")
        return self


def _braced(value: str) -> str:
    """An ODBC attribute value that may contain `;` or `}` (ODBC connection-string escaping)."""
    return "{" + value.replace("}", "}}") + "}"


def connection_string(config: Config) -> str:
    """The ODBC connection string for `config` (holds the password: never log it)."""
    if config.dsn is not None:
        return config.dsn.get_secret_value()
    freetds = "freetds" in config.driver.lower()
    parts: dict[str, str | None] = {"DRIVER": _braced(config.driver)}  # server: set when dsn is not
    if freetds:
        parts |= {"SERVER": config.server, "PORT": str(config.port), "TDS_Version": config.tds_version}
        parts["Encryption"] = "require" if config.encrypt else "off"
    else:
        parts |= {"SERVER": f"{config.server},{config.port}"}
        parts["Encrypt"] = "yes" if config.encrypt else "no"
        parts["TrustServerCertificate"] = "yes" if config.trust_server_certificate else "no"
    if config.database:
        parts["DATABASE"] = _braced(config.database)
    if config.user:
        parts["UID"] = _braced(config.user)
    if config.password:
        parts["PWD"] = _braced(config.password.get_secret_value())
    return ";".join(f"{key}={value}" for key, value in parts.items())


class MssqlSource(SqlSource):
    engine = "SQL Server"
    row_value_comparison = False
    version_sql = "SELECT CAST(SERVERPROPERTY('ProductVersion') AS NVARCHAR(128))"
    # the heap's or clustered index's row counts, kept by the engine (no scan)
    estimate_sql = ("SELECT SUM(p.rows) FROM sys.partitions AS p"
                    " JOIN sys.tables AS t ON t.object_id = p.object_id"
                    " JOIN sys.schemas AS s ON s.schema_id = t.schema_id"
                    " WHERE s.name = {schema} AND t.name = {table} AND p.index_id IN (0, 1)")
    integer_types = frozenset({"TINYINT", "SMALLINT", "INT", "BIGINT"})
    max_parameters = 2000  # a statement takes at most 2,100
    number_types = frozenset({"DECIMAL", "NUMERIC", "MONEY", "SMALLMONEY", "FLOAT", "REAL"})

    def __init__(self, name: str, config: Config, limits: BatchLimits) -> None:
        super().__init__(name, config, limits)
        self.config: Config = config

    # --- SQL text ---------------------------------------------------------------------

    def quote(self, identifier: str) -> str:
        return "[" + identifier.replace("]", "]]") + "]"

    def names_column(self, written: str, column: str) -> bool:
        """Identifiers compare ignoring case under the default (case-insensitive) collations."""
        return written.casefold() == column.casefold()

    def placeholder(self, index: int) -> str:
        return "?"

    def select_sql(
        self, columns: str, from_: str, conditions: list[str], order: str, limit: int | None
    ) -> str:
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        top = f"TOP ({int(limit)}) " if limit is not None else ""
        return f"SELECT {top}{columns} FROM {from_}{where} ORDER BY {order}"

    # --- connections ------------------------------------------------------------------

    def connection_string(self) -> str:
        """The configured ODBC string; with MARS (Multiple Active Result Sets) when a table has
        `children:`, whose streams are read at once over one connection, in one snapshot
        (`MARS_Connection=yes`: ODBC Driver 18 and FreeTDS's ODBC driver both take it)."""
        text = connection_string(self.config)
        nested = any(options.children for options in self.config.tables.values())
        if nested and "mars_connection" not in text.lower():
            text += ";MARS_Connection=yes"
        return text

    def connect(self) -> Any:
        config = self.config
        try:
            connection = pyodbc.connect(
                self.connection_string(), timeout=config.login_timeout, autocommit=False
            )
        except pyodbc.Error as error:
            secrets = [config.password.get_secret_value() if config.password else None]
            where = f"{config.server}:{config.port}"
            if config.dsn is not None:
                settings = _dsn_settings(config.dsn.get_secret_value())
                secrets += [settings.get("PWD"), settings.get("PASSWORD")]
                where = settings.get("SERVER", "the server in `dsn`")
            detail = error.args[-1] if error.args else error
            raise self.connection_failed(where, detail, secrets) from None
        connection.add_output_converter(SQL_SS_TIMESTAMPOFFSET, bytes)
        return connection

    def open_cursor(self, connection: Any, fetch_rows: int) -> Any:
        cursor = connection.cursor()
        cursor.arraysize = fetch_rows
        return cursor

    def begin_read(self, connection: Any, at: Json) -> None:
        level = "SNAPSHOT" if self.config.consistent else "READ COMMITTED"
        connection.execute(f"SET TRANSACTION ISOLATION LEVEL {level}")

    def execute(self, cursor: Any, sql: str, params: Params) -> None:
        try:
            cursor.execute(sql, self.bind(params))
        except pyodbc.Error as error:
            if "3952" in str(error):
                raise EtlError(
                    f"SQL Server source {self.name!r}: snapshot isolation is not enabled on the database",
                    hint="run ALTER DATABASE ... SET ALLOW_SNAPSHOT_ISOLATION ON, or set"
                    " `consistent: false` to read each page at READ COMMITTED",
                ) from None
            raise

    # --- incremental runs -------------------------------------------------------------

    def capture(self, meta: TableMeta, method: str) -> ChangeCapture:
        if method == "rowversion":
            column = self._rowversion_column(meta)
            return ChangeCapture(f"rowversion {column} (below MIN_ACTIVE_ROWVERSION())", deletes=False)
        if method == "change_tracking":
            return ChangeCapture("change tracking (CHANGETABLE)", deletes=True)
        return super().capture(meta, method)

    def _rowversion_column(self, meta: TableMeta) -> str:
        named = self.config.tables[meta.name].watermark
        found = [
            c.name
            for c in meta.columns
            if c.type == "TIMESTAMP" and (named is None or self.names_column(named, c.name))
        ]
        if not found:
            raise EtlError(
                f"SQL Server source {self.name!r}, table {meta.name!r}: `changes: rowversion` needs a"
                f" rowversion column{f' named {named!r}' if named else ''}",
                hint="add one (ALTER TABLE ... ADD row_version rowversion) or use `changes: change_tracking`",
            )
        return found[0]

    def _min_active_rowversion(self, connection: Any) -> int:
        """Every rowversion below it belongs to a committed row version: a transaction still open
        holds at least this one (docs: MIN_ACTIVE_ROWVERSION)."""
        ((value,),) = self._query(connection, "SELECT MIN_ACTIVE_ROWVERSION()", Params(self.placeholder))
        return int.from_bytes(value, "big")

    def mark_start(self, connection: Any, meta: TableMeta, method: str) -> Any:
        return self._min_active_rowversion(connection)

    def mark_scan(self, connection: Any, meta: TableMeta, method: str, start: Any) -> MarkScan:
        if method != "rowversion":
            return super().mark_scan(connection, meta, method, start)
        bound = self._min_active_rowversion(connection)
        return MarkScan(self.quote(self._rowversion_column(meta)), start, high=bound, final=bound)

    def mark_parameter(self, method: str, value: Any) -> Any:
        return value.to_bytes(8, "big") if method == "rowversion" else value

    def mark_value(self, method: str, value: Any) -> Any:
        return int.from_bytes(value, "big") if method == "rowversion" else value

    def key_parameter(self, column: SqlColumn, value: Any) -> Any:
        return value.to_bytes(8, "big") if column.type == "TIMESTAMP" else value

    def _versions(self, connection: Any, meta: TableMeta) -> tuple[int, int]:
        """CHANGE_TRACKING_CURRENT_VERSION() and the table's CHANGE_TRACKING_MIN_VALID_VERSION."""
        params = Params(self.placeholder)
        sql = (
            "SELECT CHANGE_TRACKING_CURRENT_VERSION(),"
            f" CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID({params.add(self.qualified(meta))}))"
        )
        ((current, minimum),) = self._query(connection, sql, params)
        if current is None or minimum is None:
            raise EtlError(
                f"SQL Server source {self.name!r}, table {meta.name!r}: change tracking is not enabled"
                f" on the {'database' if current is None else 'table'}",
                hint="ALTER DATABASE ... SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 7 DAYS);"
                " ALTER TABLE ... ENABLE CHANGE_TRACKING",
            )
        return int(current), int(minimum)

    def log_position(self, meta: TableMeta, method: str) -> Json:
        with self._catalog_lock:
            current, _ = self._versions(self._metadata_connection(), meta)
        return {"method": method, "version": current}

    def log_changes(
        self, meta: TableMeta, method: str, position: dict, fields: Sequence[str] | None, wait_ms: int
    ) -> Iterator[Batch]:
        """The net changes after the stored version (one row per key, its last operation), joined
        to the rows as they are now; a key whose row is gone or no longer matches `where:` is a
        delete. Read in one SNAPSHOT transaction (with `consistent`) in (version, key) pages."""
        stored = int(position["version"])
        connection = self.connect()
        try:
            self.begin_read(connection, None)
            current, minimum = self._versions(connection, meta)
            if stored < minimum:
                raise EtlError(
                    f"SQL Server source {self.name!r}, table {meta.name!r}: the changes after version"
                    f" {stored} are no longer kept (the oldest change tracking still has is {minimum})",
                    hint="run a full load again (without --incremental), and catch up more often than"
                    " the database's CHANGE_RETENTION",
                )
            key = [self.quote(name) for name in meta.key]
            outer = [self.quote(f"etl_k{i}") for i in range(len(key))]
            version, operation, found = (self.quote(name) for name in ("etl_v", "etl_op", "etl_found"))
            plan = self.read_plan(meta, fields, [*outer, version, operation, found])
            where = self.config.tables[meta.name].where
            table = self.qualified(meta)

            def page(after: tuple | None) -> tuple[str, Params]:
                params = Params(self.placeholder)
                joined = f"(SELECT * FROM {table} WHERE ({where}))" if where else table
                inner = (
                    f"SELECT t.*, {', '.join(f'ct.{k} AS {o}' for k, o in zip(key, outer, strict=True))},"
                    f" ct.SYS_CHANGE_VERSION AS {version}, ct.SYS_CHANGE_OPERATION AS {operation},"
                    f" CASE WHEN t.{key[0]} IS NULL THEN 0 ELSE 1 END AS {found}"
                    f" FROM CHANGETABLE(CHANGES {table}, {params.add(stored)}) AS ct"
                    f" LEFT JOIN {joined} AS t ON "
                    + " AND ".join(f"t.{k} = ct.{k}" for k in key)
                )
                conditions = [f"{version} <= {params.add(current)}"]
                if after is not None:
                    conditions.append(self.after_condition([version, *outer], after, params))
                order = ", ".join([version, *outer])
                columns = ", ".join(plan.expressions)
                sql = self.select_sql(columns, f"({inner}) AS c", conditions, order, self.config.page_rows)
                return sql, params

            positions = plan.extra_positions
            order = [positions[len(key)], *positions[: len(key)]]

            def batches() -> Iterator[Batch]:
                for chunk in self.pages(connection, plan, page, order, None):
                    batch = self._tracked_batch(meta, plan, chunk, positions)
                    last = int(chunk[-1][positions[len(key)]])
                    batch.resume_after = {"method": method, "version": max(stored, last - 1)}
                    yield batch

            yield from last_at_final(batches(), lambda: {"method": method, "version": current}, position)
        finally:
            connection.close()

    def _tracked_batch(self, meta: TableMeta, plan: Any, rows: list, positions: list[int]) -> Batch:
        width = len(meta.key)
        operation_at, found_at = positions[width + 1], positions[width + 2]
        present = [row for row in rows if row[found_at] and row[operation_at] != "D"]
        gone = [tuple(row[p] for p in positions[:width]) for row in rows
                if not (row[found_at] and row[operation_at] != "D")]
        batch = self.to_batch(meta, plan, present) if present else Batch([], None)
        batch.deletes = self.key_records(meta, gone)
        inserts = sum(1 for row in present if row[operation_at] == "I")
        kinds = {"insert": inserts, "update": len(present) - inserts, "delete": len(gone)}
        batch.kinds = {kind: count for kind, count in kinds.items() if count}
        return batch

    # --- catalog ----------------------------------------------------------------------

    def _rows(self, connection: Any, sql: str, *params: Any) -> list[tuple]:
        cursor = connection.cursor()
        try:
            cursor.execute(sql, params)
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def _object(self, schema: str, table: str) -> str:
        return f"{self.quote(schema)}.{self.quote(table)}"

    def find_tables(self, connection: Any, schema: str | None, table: str) -> list[tuple[str, str]]:
        return self._rows(
            connection,
            "SELECT s.name, o.name FROM sys.objects o JOIN sys.schemas s ON s.schema_id = o.schema_id"
            " WHERE o.type IN ('U', 'V') AND LOWER(o.name) = LOWER(?)"
            " AND (? IS NULL OR LOWER(s.name) = LOWER(?))",
            table,
            schema,
            schema,
        )

    def default_schema(self, connection: Any) -> str:
        return self._rows(connection, "SELECT SCHEMA_NAME()")[0][0]

    def some_tables(self, connection: Any, schema: str | None) -> list[str]:
        rows = self._rows(
            connection,
            "SELECT TOP (20) s.name + '.' + o.name FROM sys.objects o"
            " JOIN sys.schemas s ON s.schema_id = o.schema_id"
            " WHERE o.type = 'U' AND s.name = COALESCE(?, SCHEMA_NAME()) ORDER BY 1",
            schema,
        )
        return [row[0] for row in rows]

    def all_tables(self, connection: Any) -> list[tuple[str, str, bool]]:
        return self._rows(
            connection,
            "SELECT s.name, o.name, CASE WHEN o.type = 'V' THEN 1 ELSE 0 END"
            " FROM sys.objects o JOIN sys.schemas s ON s.schema_id = o.schema_id"
            " WHERE o.type IN ('U', 'V') AND o.is_ms_shipped = 0",
        )

    def columns(self, connection: Any, schema: str, table: str) -> list[SqlColumn]:
        rows = self._rows(
            connection,
            "SELECT c.name, UPPER(TYPE_NAME(c.system_type_id)), c.precision, c.scale, c.max_length,"
            " c.is_nullable FROM sys.columns c WHERE c.object_id = OBJECT_ID(?) ORDER BY c.column_id",
            self._object(schema, table),
        )
        return _sql_columns(rows)

    def query_columns(self, connection: Any, query: str) -> list[SqlColumn]:
        """The result's columns as SQL Server describes them without running the query
        (sys.dm_exec_describe_first_result_set), typed as sys.columns types them."""
        rows = self._rows(
            connection,
            "SELECT name, UPPER(TYPE_NAME(system_type_id)), precision, scale, max_length, is_nullable"
            " FROM sys.dm_exec_describe_first_result_set(?, NULL, 0) WHERE is_hidden = 0"
            " ORDER BY column_ordinal",
            query,
        )
        return _sql_columns(rows)

    def _indexes(self, connection: Any, schema: str, table: str, condition: str) -> list[list[str]]:
        rows = self._rows(
            connection,
            "SELECT i.index_id, c.name FROM sys.indexes i"
            " JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id"
            " JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id"
            f" WHERE i.object_id = OBJECT_ID(?) AND ic.is_included_column = 0 AND {condition}"
            " ORDER BY i.index_id, ic.key_ordinal",
            self._object(schema, table),
        )
        indexes: dict[int, list[str]] = {}
        for index, column in rows:
            indexes.setdefault(index, []).append(column)
        return list(indexes.values())

    def primary_key(self, connection: Any, schema: str, table: str) -> list[str]:
        keys = self._indexes(connection, schema, table, "i.is_primary_key = 1")
        return keys[0] if keys else []

    def unique_keys(self, connection: Any, schema: str, table: str) -> list[list[str]]:
        return self._indexes(connection, schema, table, "i.is_unique = 1 AND i.has_filter = 0")

    # --- types ------------------------------------------------------------------------

    def exact_key(self, column: SqlColumn) -> bool:
        return not (column.type in {"DATETIME2", "TIME", "DATETIMEOFFSET"} and (column.scale or 0) > 6)

    def column_expression(self, column: SqlColumn) -> str:
        name = self.quote(column.name)
        kind = column.type
        if kind == "DATETIME2" and (column.scale or 0) > 6:
            return f"CONVERT(VARCHAR(27), {name}, 126)"
        if kind == "TIME" and (column.scale or 0) > 6:
            return f"CONVERT(VARCHAR(16), {name})"
        if kind == "XML":
            return f"CONVERT(NVARCHAR(MAX), {name})"
        if kind == "SQL_VARIANT":
            date_types = "'date', 'time', 'datetime', 'datetime2', 'smalldatetime', 'datetimeoffset'"
            base = f"CONVERT(NVARCHAR(128), SQL_VARIANT_PROPERTY({name}, 'BaseType'))"
            return (
                f"{base} + N'|' + CASE WHEN {base} IN ({date_types})"
                f" THEN CONVERT(NVARCHAR(4000), {name}, 126) ELSE CONVERT(NVARCHAR(4000), {name}) END"
            )
        if kind in {"HIERARCHYID", "GEOMETRY", "GEOGRAPHY"}:
            return f"{name}.ToString()"
        return name

    def converter(self, column: SqlColumn) -> Converter | None:
        kind = column.type
        if kind in {"DECIMAL", "NUMERIC"}:
            return decimal_with_scale(column.scale or 0)
        if kind in {"MONEY", "SMALLMONEY"}:
            return MONEY_SCALE
        if kind in {"DATETIME", "SMALLDATETIME"}:
            return naive_timestamp
        if kind == "DATETIME2":
            return _naive_text_timestamp if (column.scale or 0) > 6 else naive_timestamp
        if kind == "DATETIMEOFFSET":
            return datetimeoffset
        if kind == "DATE":
            return to_date
        if kind == "TIME":
            return to_time
        if kind == "UNIQUEIDENTIFIER":
            return uniqueidentifier
        if kind in {"CHAR", "NCHAR"}:
            return strip_char_padding
        if kind == "TIMESTAMP":  # ROWVERSION's type name in sys.types
            return rowversion
        if kind == "SQL_VARIANT":
            return sql_variant
        return None

    def mapping_type(self, column: SqlColumn) -> str | None:
        kind, scale = column.type, column.scale
        if kind in {"DECIMAL", "NUMERIC"}:
            return decimal_type(column.precision, scale or 0)
        if kind in {"DATETIME2", "DATETIMEOFFSET"}:
            zone = "tz" if kind == "DATETIMEOFFSET" else ""
            return f"timestamp{zone}({min(7 if scale is None else scale, 6)})"
        return _MAPPING_TYPES.get(kind, "string")

    def width(self, column: SqlColumn) -> int | None:
        if column.type in {"TEXT", "NTEXT", "IMAGE", "XML", "SQL_VARIANT"}:
            return None
        return column.length


_MAPPING_TYPES = {
    "TINYINT": "int", "SMALLINT": "int", "INT": "int", "BIGINT": "int", "MONEY": "decimal(19,4)",
    "SMALLMONEY": "decimal(10,4)", "FLOAT": "float", "REAL": "float", "BIT": "bool", "DATE": "date",
    "TIME": "time", "DATETIME": "timestamp(3)", "SMALLDATETIME": "timestamp(0)", "UNIQUEIDENTIFIER": "uuid",
    "BINARY": "bytes", "VARBINARY": "bytes", "IMAGE": "bytes", "TIMESTAMP": "int", "SQL_VARIANT": "json",
}
"""sys.types names -> mapping types (`MssqlSource.mapping_type`); the rest are text."""


def _naive_text_timestamp(text: str) -> Any:
    return parse_timestamp(text, aware=False)


def _dsn_settings(dsn: str) -> dict[str, str]:
    """KEY=value pairs of an ODBC connection string (braced values unescaped), keys upper-cased."""
    settings: dict[str, str] = {}
    position = 0
    while position < len(dsn):
        equals = dsn.find("=", position)
        if equals < 0:
            break
        key = dsn[position:equals].strip().upper()
        position = equals + 1
        if dsn.startswith("{", position):
            value, position = _braced_value(dsn, position + 1)
        else:
            end = dsn.find(";", position)
            end = len(dsn) if end < 0 else end
            value, position = dsn[position:end], end
        settings[key] = value
        position += 1  # the ';'
    return settings


def _braced_value(dsn: str, position: int) -> tuple[str, int]:
    value = []
    while position < len(dsn):
        if dsn[position] == "}":
            if dsn.startswith("}}", position):
                value.append("}")
                position += 2
                continue
            return "".join(value), position + 1
        value.append(dsn[position])
        position += 1
    return "".join(value), position


_YES = {"yes", "true", "mandatory", "strict", "require", "required"}


def _server_host(server: str) -> str | None:
    """`tcp:host,1433`, `host\\instance`, `(local)` or `.` -> the host (None for this machine's names)."""
    host = server.strip()
    host = host.split(":", 1)[1] if host.lower().startswith(("tcp:", "np:", "lpc:")) else host
    host = host.split(",")[0].split("\\")[0].strip()
    return None if host.lower() in ("", ".", "(local)", "(localdb)") else host


def endpoints(config: Config) -> list[security.Endpoint]:
    """The server and how the connection is secured (etl/security.py decides whether that is allowed).

    Microsoft ODBC Driver 18 encrypts by default and validates the certificate unless
    TrustServerCertificate=yes (older drivers default to Encrypt=no); FreeTDS encrypts but does
    not validate the certificate here, so it counts as unverified. The driver connects to
    `Address=` (or `Addr=`) when given, `Server=` otherwise. A `DSN=` data source (odbc.ini) may set
    the address, Encrypt and TrustServerCertificate itself: what the connection string leaves to it
    cannot be checked, so counts as unencrypted, to an unknown host.
    """
    settings = _dsn_settings(connection_string(config))
    driver = settings.get("DRIVER", "")
    source = settings.get("DSN", "") if "DRIVER" not in settings else ""
    if "freetds" in driver.lower():
        encrypted = settings.get("ENCRYPTION", "request").lower() in _YES
        verified, setting = False, f"FreeTDS, Encryption={settings.get('ENCRYPTION', 'request')}"
    elif source and ("ENCRYPT" not in settings or "TRUSTSERVERCERTIFICATE" not in settings):
        encrypted = verified = False
        setting = f"Encrypt and TrustServerCertificate left to ODBC data source {source}"
    else:
        default = "yes" if "18" in driver or not driver else "no"
        encrypt = settings.get("ENCRYPT", default).lower()
        trust = settings.get("TRUSTSERVERCERTIFICATE", "no").lower() in _YES
        encrypted = encrypt in _YES
        verified = encrypted and (encrypt == "strict" or not trust)
        setting = f"Encrypt={encrypt}" + (", TrustServerCertificate=yes" if trust else "")
    address = settings.get("ADDRESS") or settings.get("ADDR")
    server = address or settings.get("SERVER", "")
    if source and not address:  # the data source's own Address= would win over a Server= here
        host: str | None = f"the server of ODBC data source {source}"
    else:
        host = _server_host(server)
    return [
        security.Endpoint(
            protocol="SQL Server",
            host=host,
            encrypted=encrypted,
            verified=verified,
            fix="use `driver: ODBC Driver 18 for SQL Server` with `encrypt: true` and "
            "`trust_server_certificate: false` (Encrypt=yes;TrustServerCertificate=no in a `dsn`)",
            setting=setting,
            origin="Address" if address else "",
        )
    ]


def _sql_columns(rows: list[tuple]) -> list[SqlColumn]:
    """(name, type, precision, scale, max_length, is_nullable) rows -> columns (-1: MAX, unbounded)."""
    return [
        SqlColumn(name, kind, precision, scale, None if length == -1 else length, bool(nullable))
        for name, kind, precision, scale, length, nullable in rows
    ]


def open_source(name: str, config: Config, limits: BatchLimits) -> MssqlSource:
    return MssqlSource(name, config, limits)
