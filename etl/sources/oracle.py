"""Oracle source: python-oracledb in thin mode (no Oracle client install), flashback reads AS OF SCN.

What differs from the generic SQL source: named binds (`:p0`), `FETCH FIRST n ROWS ONLY`, no
row-value comparison in keyset conditions, the ALL_* catalog views, NUMBER fetched as Decimal
and LOBs fetched whole (`fetch_decimals`/`fetch_lobs` on execute, python-oracledb docs
"Fetching Data": https://python-oracledb.readthedocs.io/en/latest/user_guide/sql_execution.html),
and one SCN captured at plan time so every partition reads the same committed state.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal

import oracledb
from pydantic import Field, SecretStr

from etl import security
from etl.errors import EtlError
from etl.records import Json
from etl.sources.base import BatchLimits, ChangeCapture
from etl.sources.sql import MarkScan, Params, SqlColumn, SqlSource, SqlSourceConfig, SqlTable, TableMeta
from etl.sources.sqltypes import (
    Converter,
    decimal_type,
    decimal_with_scale,
    parse_timestamp,
    raw_guid,
    read_lob,
    strip_char_padding,
    to_decimal,
    to_int,
    utc_timestamp,
    year_month_interval,
)

__all__ = ["Config", "OracleSource", "SqlTable", "Table", "open_source"]


class Table(SqlTable):
    changes: Literal["watermark", "scn"] | None = None
    """`watermark` (with `watermark:`), or `scn`: rows whose ORA_ROWSCN is past the stored SCN, and
    deletes by a flashback version query."""


JOB_SKELETON = """\
    type: oracle
    dsn: ${env:ETL_SOURCE_DSN}            # host:1521/service_name
    user: ${env:ETL_SOURCE_USER}
    password: ${env:ETL_SOURCE_PASSWORD}  # or ${secret:name#password}
"""
"""This source's section of a new job file (`--scaffold-job oracle`), indented under its name."""


class Config(SqlSourceConfig):
    type: Literal["oracle"]
    tables: dict[str, Table] = {}  # type: ignore[assignment]  # a SqlTable subclass; dict is invariant
    dsn: str
    """Easy Connect string: `host:1521/service`, or `tcps://host:2484/service` for TLS."""
    user: str
    password: SecretStr
    wallet_location: str | None = None
    """Directory holding ewallet.pem, for TCPS with a private certificate authority."""
    wallet_password: SecretStr | None = None
    ssl_server_dn_match: bool = True
    """Check that the server certificate's distinguished name matches the host (TCPS)."""
    ssl_server_cert_dn: str | None = None
    """The exact distinguished name the server certificate must have (TCPS)."""
    connect_timeout: float = Field(default=10.0, gt=0)


_SIZE = re.compile(r"\((\d+)\)")
_SCN_TOO_OLD = {1555, 8180, 8181, 30052}
"""ORA-01555 snapshot too old, ORA-08180 no snapshot found, ORA-08181 not a valid SCN, ORA-30052
invalid lower limit snapshot expression (a flashback version query older than undo holds)."""
_DESCRIBED_TYPES = {
    "VARCHAR": "VARCHAR2",
    "NVARCHAR": "NVARCHAR2",
    "TIMESTAMP_TZ": "TIMESTAMP WITH TIME ZONE",
    "TIMESTAMP_LTZ": "TIMESTAMP WITH LOCAL TIME ZONE",
    "INTERVAL_DS": "INTERVAL DAY TO SECOND",
    "INTERVAL_YM": "INTERVAL YEAR TO MONTH",
    "LONG_NVARCHAR": "LONG",
    "BINARY_DOUBLE": "BINARY_DOUBLE",
    "BINARY_FLOAT": "BINARY_FLOAT",
    "BINARY_INTEGER": "BINARY_INTEGER",
}
"""python-oracledb's DB_TYPE_* names (a query's description) -> ALL_TAB_COLUMNS.DATA_TYPE names."""
_MAPPING_TYPES: dict[str, str | None] = {
    "FLOAT": "decimal", "BINARY_FLOAT": "float", "BINARY_DOUBLE": "float", "DATE": "timestamp(0)",
    "RAW": "bytes", "BLOB": "bytes", "LONG RAW": "bytes", "JSON": "json", "INTERVAL DAY TO SECOND": None,
}
"""ALL_TAB_COLUMNS.DATA_TYPE -> mapping types (`OracleSource.mapping_type`; None: none holds a
day-to-second interval, read as a timedelta); the rest are text."""
_LOBS = {"CLOB", "NCLOB", "BLOB", "LONG", "LONG RAW", "XMLTYPE", "BFILE", "JSON"}
_TEXT_TIMESTAMP = 'YYYY-MM-DD"T"HH24:MI:SS.FF9'


def oracle_column(
    name: str,
    data_type: str,
    precision: int | None,
    scale: int | None,
    data_length: int | None,
    nullable: str,
) -> SqlColumn:
    """An ALL_TAB_COLUMNS row -> SqlColumn; `TIMESTAMP(9) WITH TIME ZONE` -> type without size, scale 9."""
    sizes = _SIZE.findall(data_type)
    base = _SIZE.sub("", data_type).upper()
    if base.startswith(("TIMESTAMP", "INTERVAL DAY")) and sizes:
        scale = int(sizes[-1])
    length = None if base in _LOBS else data_length
    return SqlColumn(name, base, precision, scale, length, nullable == "Y")


_DESCRIPTOR_ADDRESS = re.compile(
    r"\(\s*ADDRESS\s*=(.*?\(\s*HOST\s*=\s*([^)\s]+)\s*\).*?)\)\s*(?=\(|\))", re.IGNORECASE | re.DOTALL
)
_EASY_CONNECT_HOST = re.compile(r"^(?:([a-z]+)://)?(\[[^\]]+\]|[^:/?]+)", re.IGNORECASE)


def _easy_connect_addresses(dsn: str) -> list[tuple[str | None, bool]]:
    """(host, TCPS?) for every host of an Easy Connect (Plus) string: address lists separated by `;`,
    hosts by `,`, each list with its own optional `protocol://` (TCP when not said)."""
    scheme = re.match(r"^([a-z]+)://", dsn, re.IGNORECASE)
    rest = dsn[scheme.end():] if scheme else dsn
    # the service name starts at the first / that is not part of a `protocol://` or inside [...]
    path = re.search(r"(?<![/:])/(?!/)(?![^\[]*\])", rest)
    found: list[tuple[str | None, bool]] = []
    for index, address_list in enumerate((rest[:path.start()] if path else rest).split(";")):
        written = (scheme.group(0) if scheme and index == 0 else "") + address_list.strip()
        match = _EASY_CONNECT_HOST.match(written)
        tcps = bool(match and (match.group(1) or "").lower() == "tcps")
        body = written[match.end(1) + 3:] if match and match.group(1) else written
        for entry in body.split(","):
            host = _EASY_CONNECT_HOST.match(entry.strip())
            found.append((host.group(2) if host else entry.strip() or None, tcps))
    return found or [(dsn, False)]


def endpoints(config: Config) -> list[security.Endpoint]:
    """Every address of the DSN and how it is secured (etl/security.py decides whether that is allowed).

    TCPS is what encrypts: an Easy Connect `tcps://host:port/service` or a descriptor whose every
    ADDRESS says (PROTOCOL=TCPS). A bare name is a tnsnames.ora alias, which cannot be checked here.
    """
    verified = config.ssl_server_dn_match or config.ssl_server_cert_dn is not None
    dsn = config.dsn.strip()
    if dsn.startswith("("):
        addresses = [
            (host, bool(re.search(r"PROTOCOL\s*=\s*TCPS", body, re.IGNORECASE)))
            for body, host in _DESCRIPTOR_ADDRESS.findall(dsn)
        ] or [(None, False)]
    elif "/" in dsn or ":" in dsn:
        addresses = _easy_connect_addresses(dsn)
    else:
        addresses = [(f"tnsnames alias {dsn}", False)]
    return [
        security.Endpoint(
            protocol="Oracle",
            host=host,
            encrypted=tcps,
            verified=tcps and verified,
            fix="connect with TCPS: write dsn: tcps://host:2484/service (or (PROTOCOL=TCPS) in the "
            "descriptor) and keep ssl_server_dn_match: true",
            setting="TCP" if not tcps else "ssl_server_dn_match: false",
        )
        for host, tcps in addresses
    ]


class OracleSource(SqlSource):
    engine = "Oracle"
    row_value_comparison = False
    pseudo_columns = frozenset({"ORA_ROWSCN"})
    version_sql = "SELECT version FROM product_component_version WHERE ROWNUM = 1"  # readable by PUBLIC
    # NUM_ROWS of the optimizer statistics: NULL until DBMS_STATS gathered them
    estimate_sql = "SELECT num_rows FROM all_tables WHERE owner = {schema} AND table_name = {table}"

    def __init__(self, name: str, config: Config, limits: BatchLimits) -> None:
        super().__init__(name, config, limits)
        self.config: Config = config

    # --- SQL text ---------------------------------------------------------------------

    def names_column(self, written: str, column: str) -> bool:
        """Oracle folds unquoted identifiers to upper case (`composer` names `COMPOSER`)."""
        return written.upper() == column

    def placeholder(self, index: int) -> str:
        return f":p{index}"

    def bind(self, params: Params) -> Any:
        return {f"p{index}": value for index, value in enumerate(params.values)}

    def from_clause(self, meta: Any, at: Json) -> str:
        table = self.qualified(meta)
        if meta.query is not None:  # a derived table takes no flashback clause: the query says its own
            return table
        return table if at is None else f"{table} AS OF SCN {int(at)}"

    def select_sql(
        self, columns: str, from_: str, conditions: list[str], order: str, limit: int | None
    ) -> str:
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        tail = f" FETCH FIRST {int(limit)} ROWS ONLY" if limit is not None else ""
        return f"SELECT {columns} FROM {from_}{where} ORDER BY {order}{tail}"

    # --- connections ------------------------------------------------------------------

    def connect(self) -> Any:
        config = self.config
        wallet_password = config.wallet_password.get_secret_value() if config.wallet_password else None
        password = config.password.get_secret_value()
        try:
            connection = oracledb.connect(
                user=config.user,
                password=password,
                dsn=config.dsn,
                tcp_connect_timeout=config.connect_timeout,
                wallet_location=config.wallet_location,
                wallet_password=wallet_password,
                ssl_server_dn_match=config.ssl_server_dn_match,
                ssl_server_cert_dn=config.ssl_server_cert_dn,
            )
        except oracledb.Error as error:
            where = f"{config.dsn} as {config.user}"
            raise self.connection_failed(where, error, [password, wallet_password]) from None
        # Binary collation for ORDER BY and comparisons alike, or keyset pages could skip rows.
        connection.cursor().execute("ALTER SESSION SET TIME_ZONE = 'UTC' NLS_SORT = BINARY NLS_COMP = BINARY")
        return connection

    def open_cursor(self, connection: Any, fetch_rows: int) -> Any:
        cursor = connection.cursor()
        cursor.arraysize = fetch_rows
        cursor.prefetchrows = fetch_rows + 1
        return cursor

    def execute(self, cursor: Any, sql: str, params: Params) -> None:
        try:
            cursor.execute(sql, self.bind(params), fetch_lobs=False, fetch_decimals=True)
        except oracledb.DatabaseError as error:
            code = getattr(error.args[0], "code", None) if error.args else None
            if code in _SCN_TOO_OLD:
                raise EtlError(
                    f"Oracle source {self.name!r}: the plan's SCN is no longer readable"
                    f" (ORA-{code:05d}: undo data for that point in time is gone)",
                    hint="plan the job again so that it reads at a new SCN (a catch-up: run a full load),"
                    " or raise UNDO_RETENTION",
                ) from None
            raise

    def consistency_point(self, connection: Any) -> Json:
        """The current SCN; TIMESTAMP_TO_SCN when the user may not run DBMS_FLASHBACK."""
        cursor = connection.cursor()
        try:
            try:
                cursor.execute("SELECT DBMS_FLASHBACK.GET_SYSTEM_CHANGE_NUMBER FROM DUAL")
            except oracledb.DatabaseError:
                cursor.execute("SELECT TIMESTAMP_TO_SCN(SYSTIMESTAMP) FROM DUAL")
            ((scn,),) = cursor.fetchall()
            return int(scn)
        finally:
            cursor.close()

    # --- incremental runs -------------------------------------------------------------

    def capture(self, meta: TableMeta, method: str) -> ChangeCapture:
        if method == "scn":
            return ChangeCapture("scn (ORA_ROWSCN; deletes by flashback version query)", deletes=True)
        return super().capture(meta, method)

    def mark_start(self, connection: Any, meta: TableMeta, method: str) -> Any:
        return self.consistency_point(connection) + 1

    def mark_scan(self, connection: Any, meta: TableMeta, method: str, start: Any) -> MarkScan:
        """Rows AS OF the current SCN whose ORA_ROWSCN is at or past the stored one. ORA_ROWSCN is the
        commit SCN of the row (of its block without ROWDEPENDENCIES: then later, never earlier), so
        a row committed after the read's SCN is not visible to it and has a later ORA_ROWSCN."""
        if method != "scn":
            return super().mark_scan(connection, meta, method, start)
        scn = self.consistency_point(connection)
        return MarkScan("ORA_ROWSCN", start, at=scn, final=scn + 1)

    def mark_value(self, method: str, value: Any) -> Any:
        return int(value) if method == "scn" else value

    def mark_deletes(
        self, connection: Any, meta: TableMeta, method: str, start: Any, scan: MarkScan
    ) -> Iterator[list[dict]]:
        """Keys with a delete version (VERSIONS_OPERATION 'D') between the stored SCN and the read's,
        whose row does not exist at the read's SCN (a key deleted and inserted again is a change the
        scan has read). Undo must still hold that range, as for `AS OF SCN`."""
        if method != "scn":
            return
        key = [self.quote(name) for name in meta.key]
        params = Params(self.placeholder)
        table = self.qualified(meta)
        low, high = int(start), int(scan.at)
        sql = (
            f"SELECT DISTINCT {', '.join(f'v.{k}' for k in key)}"
            f" FROM {table} VERSIONS BETWEEN SCN {low} AND {high} v"
            f" WHERE v.VERSIONS_OPERATION = 'D' AND v.VERSIONS_STARTSCN >= {params.add(low)}"
            f" AND NOT EXISTS (SELECT 1 FROM {table} AS OF SCN {high} t WHERE "
            + " AND ".join(f"t.{k} = v.{k}" for k in key)
            + f") ORDER BY {', '.join(str(i + 1) for i in range(len(key)))}"
        )
        cursor = self.open_cursor(connection, self.limits.records)
        try:
            self.execute(cursor, sql, params)
            while rows := cursor.fetchmany(self.limits.records):
                yield self.key_records(meta, rows)
        finally:
            cursor.close()

    def key_parameter(self, column: SqlColumn, value: Any) -> Any:
        return value.bytes if column.type == "RAW" and column.length == 16 else value

    def values_table(self, rows: list[list[str]], names: list[str]) -> str:
        """No VALUES list before Oracle 23: one SELECT ... FROM DUAL per row, UNION ALL."""
        first = ", ".join(f"{value} AS {name}" for value, name in zip(rows[0], names, strict=True))
        rest = "".join(f" UNION ALL SELECT {', '.join(row)} FROM DUAL" for row in rows[1:])
        return f"(SELECT {first} FROM DUAL{rest}) v"

    # --- catalog ----------------------------------------------------------------------

    def _rows(self, connection: Any, sql: str, binds: dict[str, Any]) -> list[tuple]:
        cursor = connection.cursor()
        try:
            cursor.execute(sql, binds)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def find_tables(self, connection: Any, schema: str | None, table: str) -> list[tuple[str, str]]:
        return self._rows(
            connection,
            "SELECT OWNER, TABLE_NAME FROM ALL_TABLES WHERE UPPER(TABLE_NAME) = UPPER(:t)"
            " AND (:s IS NULL OR UPPER(OWNER) = UPPER(:s))"
            " UNION ALL SELECT OWNER, VIEW_NAME FROM ALL_VIEWS WHERE UPPER(VIEW_NAME) = UPPER(:t)"
            " AND (:s IS NULL OR UPPER(OWNER) = UPPER(:s))",
            {"t": table, "s": schema},
        )

    def default_schema(self, connection: Any) -> str:
        return self._rows(connection, "SELECT SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA') FROM DUAL", {})[0][0]

    def some_tables(self, connection: Any, schema: str | None) -> list[str]:
        rows = self._rows(
            connection,
            "SELECT OWNER || '.' || TABLE_NAME FROM ALL_TABLES"
            " WHERE OWNER = NVL(:s, SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA'))"
            " ORDER BY 1 FETCH FIRST 20 ROWS ONLY",
            {"s": schema},
        )
        return [row[0] for row in rows]

    def all_tables(self, connection: Any) -> list[tuple[str, str, bool]]:
        return self._rows(
            connection,
            "SELECT OWNER, TABLE_NAME, 0 FROM ALL_TABLES WHERE OWNER NOT IN"
            " (SELECT USERNAME FROM ALL_USERS WHERE ORACLE_MAINTAINED = 'Y')"
            " UNION ALL SELECT OWNER, VIEW_NAME, 1 FROM ALL_VIEWS WHERE OWNER NOT IN"
            " (SELECT USERNAME FROM ALL_USERS WHERE ORACLE_MAINTAINED = 'Y')",
            {},
        )

    def columns(self, connection: Any, schema: str, table: str) -> list[SqlColumn]:
        rows = self._rows(
            connection,
            "SELECT COLUMN_NAME, DATA_TYPE, DATA_PRECISION, DATA_SCALE, DATA_LENGTH, NULLABLE"
            " FROM ALL_TAB_COLUMNS WHERE OWNER = :s AND TABLE_NAME = :t ORDER BY COLUMN_ID",
            {"s": schema, "t": table},
        )
        return [oracle_column(*row) for row in rows]

    def query_columns(self, connection: Any, query: str) -> list[SqlColumn]:
        """The result's columns from the statement's description (`WHERE 1 = 0`: no row read), named
        as ALL_TAB_COLUMNS names their types; a timestamp of unknown precision counts as 9 digits."""
        cursor = connection.cursor()
        try:
            cursor.execute(f"SELECT * FROM ({query}) WHERE 1 = 0")
            description = list(cursor.description)
        finally:
            cursor.close()
        columns = []
        for name, kind, _display, size, precision, scale, _null_ok in description:
            base = kind.name.removeprefix("DB_TYPE_")
            base = _DESCRIBED_TYPES.get(base, base.replace("_", " "))
            if base.startswith("TIMESTAMP") and scale is None:
                scale = 9
            columns.append(oracle_column(name, base, precision, scale, size, "Y"))
        return columns

    def primary_key(self, connection: Any, schema: str, table: str) -> list[str]:
        rows = self._rows(
            connection,
            "SELECT cc.COLUMN_NAME FROM ALL_CONSTRAINTS c JOIN ALL_CONS_COLUMNS cc"
            " ON cc.OWNER = c.OWNER AND cc.CONSTRAINT_NAME = c.CONSTRAINT_NAME"
            " WHERE c.OWNER = :s AND c.TABLE_NAME = :t AND c.CONSTRAINT_TYPE = 'P' ORDER BY cc.POSITION",
            {"s": schema, "t": table},
        )
        return [row[0] for row in rows]

    def unique_keys(self, connection: Any, schema: str, table: str) -> list[list[str]]:
        rows = self._rows(
            connection,
            "SELECT i.INDEX_NAME, ic.COLUMN_NAME FROM ALL_INDEXES i JOIN ALL_IND_COLUMNS ic"
            " ON ic.INDEX_OWNER = i.OWNER AND ic.INDEX_NAME = i.INDEX_NAME"
            " WHERE i.TABLE_OWNER = :s AND i.TABLE_NAME = :t AND i.UNIQUENESS = 'UNIQUE'"
            " AND i.INDEX_TYPE = 'NORMAL' ORDER BY i.INDEX_NAME, ic.COLUMN_POSITION",
            {"s": schema, "t": table},
        )
        indexes: dict[str, list[str]] = {}
        for index, column in rows:
            indexes.setdefault(index, []).append(column)
        return list(indexes.values())

    # --- types ------------------------------------------------------------------------

    number_types = frozenset({"NUMBER", "FLOAT", "BINARY_FLOAT", "BINARY_DOUBLE"})

    def is_integer(self, column: SqlColumn) -> bool:
        return column.type in {"NUMBER", "INTEGER"} and column.scale is not None and column.scale <= 0

    def exact_key(self, column: SqlColumn) -> bool:
        return not (column.type.startswith(("TIMESTAMP", "INTERVAL DAY")) and (column.scale or 0) > 6)

    def column_expression(self, column: SqlColumn) -> str:
        name = self.quote(column.name)
        if column.type in {"TIMESTAMP WITH TIME ZONE", "TIMESTAMP WITH LOCAL TIME ZONE"}:
            name = f"SYS_EXTRACT_UTC({name})"
        elif column.type == "XMLTYPE":
            return f"XMLSERIALIZE(DOCUMENT {name} AS CLOB)"
        elif column.type != "TIMESTAMP":
            return name
        if (column.scale or 0) > 6:
            return f"TO_CHAR({name}, '{_TEXT_TIMESTAMP}')"
        return name

    def converter(self, column: SqlColumn) -> Converter | None:
        kind, scale = column.type, column.scale
        if kind in {"NUMBER", "INTEGER"}:
            if scale is None:
                return to_decimal
            return to_int if scale <= 0 else decimal_with_scale(scale)
        if kind in {"FLOAT"}:
            return to_decimal
        if kind in {"CHAR", "NCHAR"}:
            return strip_char_padding
        if kind in {"CLOB", "NCLOB", "BLOB", "XMLTYPE"}:
            return read_lob
        if kind == "RAW" and column.length == 16:
            return raw_guid
        if kind == "INTERVAL YEAR TO MONTH":
            return year_month_interval
        if kind in {"TIMESTAMP WITH TIME ZONE", "TIMESTAMP WITH LOCAL TIME ZONE"}:
            return utc_timestamp
        if kind == "TIMESTAMP" and (scale or 0) > 6:
            return _naive_text_timestamp
        return None

    def width(self, column: SqlColumn) -> int | None:
        return column.length

    def mapping_type(self, column: SqlColumn) -> str | None:
        kind, scale = column.type, column.scale
        if kind in {"NUMBER", "INTEGER"}:
            if scale is not None and scale <= 0 and column.precision is not None and column.precision <= 18:
                return "int"
            return decimal_type(column.precision, scale)
        if kind.startswith("TIMESTAMP"):
            zoned = "TIME ZONE" in kind
            return f"timestamp{'tz' if zoned else ''}({min(6 if scale is None else scale, 6)})"
        if kind == "RAW" and column.length == 16:
            return "uuid"
        return _MAPPING_TYPES.get(kind, "string")


def _naive_text_timestamp(text: str) -> Any:
    return parse_timestamp(text, aware=False)


def open_source(name: str, config: Config, limits: BatchLimits) -> OracleSource:
    return OracleSource(name, config, limits)
