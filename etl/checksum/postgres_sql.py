"""A PostgreSQL table as a validation side that hashes its rows in SQL (pushdown).

The SQL builds, per row, the very bytes of the canonical encoding (docs/checksum.md) and takes
their ``md5``: the bucket checksums equal the Python path's, so a PostgreSQL side can be
compared with any other side, and only the rows of mismatched buckets ever leave the server.

Pushdown covers the column types whose canonical bytes SQL can produce exactly: integers and
numeric (in number columns, within +-1E1000), float4/float8 (in float columns), text, varchar,
char(n), boolean, date, time, timestamp, timestamptz, uuid and bytea; and the tolerances
timestamp precision, NFC and trailing blanks. With any other column type, or
case-insensitive keys (SQL's ``lower`` is not Python's ``casefold``), `bucket_checksums`
returns None and the validator hashes the streamed rows in Python instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from etl.checksum.buckets import MODULUS, BucketChecksums
from etl.checksum.canonical import (
    TAG_BOOL,
    TAG_BYTES,
    TAG_DATE,
    TAG_FLOAT,
    TAG_NUMBER,
    TAG_STRING,
    TAG_TIME,
    TAG_TIMESTAMP_NAIVE,
    TAG_TIMESTAMP_UTC,
    TAG_UUID,
    column_base,
    encode,
)
from etl.checksum.keyranges import KeyRanges, KeySpan
from etl.checksum.tolerances import Tolerances
from etl.coltypes import ColumnType, engine_type
from etl.records import TableSpec

_NULL_CODE = encode(None)
_FETCH_ROWS = 5000


def _bytea(data: bytes) -> sql.Composable:
    return sql.SQL("'\\x{}'::bytea").format(sql.SQL(data.hex()))


_MICROS_1970_TO_2000 = 946_684_800_000_000


def _micros(
    expression: sql.Composable, send: str, tolerances: Tolerances, epoch_offset: int
) -> sql.Composable:
    """int8 microseconds since PostgreSQL's epoch (2000-01-01; midnight for times): the `send`
    function's own output when exact, else truncated to the precision tolerance."""
    precision = tolerances.timestamp_precision
    if precision is None or precision >= 6:
        return sql.SQL("{}({})").format(sql.SQL(send), expression)
    quantum = sql.Literal(10 ** (6 - precision))
    micros = sql.SQL("(extract(epoch from {}) * 1000000 - {})").format(expression, sql.Literal(epoch_offset))
    return sql.SQL("int8send((floor({} / {}) * {})::int8)").format(micros, quantum, quantum)


JSONB_FUNCTION = "pg_temp.etl_canonical_jsonb"
JSONB_FUNCTION_SQL = r"""
CREATE OR REPLACE FUNCTION pg_temp.etl_canonical_jsonb(v jsonb) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    kind text := jsonb_typeof(v);
    payload bytea;
    number numeric;
    digits text;
    point int;
    exponent int;
    trimmed text;
BEGIN
    IF kind = 'object' THEN
        IF v ? '$binary' AND (SELECT count(*) FROM jsonb_object_keys(v)) = 1
                AND jsonb_typeof(v -> '$binary') = 'object'
                AND (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(v -> '$binary') AS k)
                    = ARRAY['base64', 'subType']
                AND v -> '$binary' -> 'subType' = '"00"'::jsonb
                AND jsonb_typeof(v -> '$binary' -> 'base64') = 'string'
                AND (v -> '$binary' ->> 'base64')
                    ~ '^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$'
        THEN
            payload := decode(v -> '$binary' ->> 'base64', 'base64');
            RETURN '\x79'::bytea || int4send(octet_length(payload)) || payload;
        END IF;
        SELECT coalesce(string_agg('\x73'::bytea || int4send(octet_length(convert_to(key, 'UTF8')))
                                   || convert_to(key, 'UTF8') || MEMBER(value), ''::bytea
                                   ORDER BY octet_length(convert_to(key, 'UTF8')), convert_to(key, 'UTF8')),
                        ''::bytea)
            INTO payload FROM jsonb_each(v);
        RETURN '\x6d'::bytea || int4send(octet_length(payload)) || payload;
    ELSIF kind = 'array' THEN
        SELECT coalesce(string_agg(MEMBER(element), ''::bytea ORDER BY position), ''::bytea)
            INTO payload FROM jsonb_array_elements(v) WITH ORDINALITY AS a(element, position);
        RETURN '\x6c'::bytea || int4send(octet_length(payload)) || payload;
    ELSIF kind = 'string' THEN
        payload := convert_to(v #>> '{}', 'UTF8');
        RETURN '\x73'::bytea || int4send(octet_length(payload)) || payload;
    ELSIF kind = 'number' THEN
        number := v::numeric;
        IF number <> 0 AND (abs(number) >= 1e1001 OR abs(number) < 1e-1000) THEN
            -- beyond fixed notation: digits without leading or trailing zeros, then E and the
            -- exponent of the last digit kept (docs/checksum.md §3)
            digits := trim_scale(abs(number))::text;
            point := position('.' in digits);
            exponent := CASE WHEN point = 0 THEN 0 ELSE point - length(digits) END;
            digits := ltrim(replace(digits, '.', ''), '0');
            trimmed := rtrim(digits, '0');
            exponent := exponent + length(digits) - length(trimmed);
            payload := convert_to(CASE WHEN number < 0 THEN '-' ELSE '' END || trimmed || 'E' || exponent,
                                  'UTF8');
        ELSE
            payload := convert_to(trim_scale(number)::text, 'UTF8');
        END IF;
        RETURN '\x6e'::bytea || int4send(octet_length(payload)) || payload;
    ELSIF kind = 'boolean' THEN
        RETURN CASE WHEN v::boolean THEN '\x620000000101'::bytea ELSE '\x620000000100'::bytea END;
    END IF;
    RETURN '\x4e00000000'::bytea;
END
$$
""".replace("MEMBER(value)", "MEMBER(member)").replace("MEMBER(element)", "MEMBER(member)")


def _member_sql(name: str) -> str:
    """A container member's encoding: scalars inline (a function call per member is most of the
    cost), containers and numbers beyond fixed notation through the function."""
    text = f"convert_to({name} #>> '{{}}', 'UTF8')"
    number = f"convert_to(trim_scale({name}::numeric)::text, 'UTF8')"
    return f"""CASE jsonb_typeof({name})
        WHEN 'string' THEN '\\x73'::bytea || int4send(octet_length({text})) || {text}
        WHEN 'boolean' THEN CASE WHEN {name}::boolean THEN '\\x620000000101'::bytea
                                 ELSE '\\x620000000100'::bytea END
        WHEN 'null' THEN '\\x4e00000000'::bytea
        WHEN 'number' THEN CASE WHEN abs({name}::numeric) < 1e1001
                                     AND ({name}::numeric = 0 OR abs({name}::numeric) >= 1e-1000)
            THEN '\\x6e'::bytea || int4send(octet_length({number})) || {number}
            ELSE pg_temp.etl_canonical_jsonb({name}) END
        ELSE pg_temp.etl_canonical_jsonb({name}) END"""


JSONB_FUNCTION_SQL = JSONB_FUNCTION_SQL.replace(
    "MEMBER(member), ''::bytea\n", _member_sql("value") + ", ''::bytea\n", 1).replace(
    "MEMBER(member), ''::bytea ORDER BY position",
    _member_sql("element") + ", ''::bytea ORDER BY position", 1)
assert "MEMBER" not in JSONB_FUNCTION_SQL
"""The canonical encoding (docs/checksum.md) of a jsonb value as the PostgreSQL sink reads it back
(`jsontext.loads`: numbers exact, `$binary` tags as bytes), as a function in the session's temporary
schema: maps by the encoding of their keys, lists in order, numbers as `trim_scale` prints them (or
`digitsEexponent` beyond +-1E1000), strings, booleans, null."""


_Payload = tuple[bytes, sql.Composable, int | None]
_Physical = tuple[ColumnType | None, int, bool]
"""A table column's type (its catalog name read by `engine_type`; None: no column type), typmod and
NOT NULL."""


def _payload(
    column: sql.Composable, base: str, stored: ColumnType | None, typmod: int, tolerances: Tolerances
) -> _Payload | None:
    """(tag, payload expression, fixed payload length or None) of one column whose spec type's base is
    `base` and whose table column is of type `stored`, or None if SQL cannot produce the canonical
    bytes for it."""
    if stored is None:
        return None
    if base in ("int", "decimal", "float"):
        return _number_payload(column, base, stored)
    if stored.base == "string":
        return _text_payload(column, stored, typmod, tolerances)
    if stored.base == "bool":
        return TAG_BOOL, sql.SQL("CASE WHEN {} THEN '\\x01'::bytea ELSE '\\x00'::bytea END").format(column), 1
    if stored.base == "date":
        return TAG_DATE, sql.SQL("date_send({})").format(column), 4
    if stored.base == "timestamptz":
        return TAG_TIMESTAMP_UTC, _micros(column, "timestamptz_send", tolerances, _MICROS_1970_TO_2000), 8
    if stored.base == "timestamp":
        return TAG_TIMESTAMP_NAIVE, _micros(column, "timestamp_send", tolerances, _MICROS_1970_TO_2000), 8
    if stored.base == "time":
        return TAG_TIME, _micros(column, "time_send", tolerances, 0), 8
    if stored.base == "uuid":
        return TAG_UUID, sql.SQL("uuid_send({})").format(column), 16
    if stored.base == "bytes":
        return TAG_BYTES, column, None
    if stored.base == "json" and base != "set" and not tolerances.unicode_nfc and not tolerances.rstrip_char:
        return b"", sql.SQL("{}({})").format(sql.SQL(JSONB_FUNCTION), column), -1
    return None


def _number_payload(column: sql.Composable, base: str, stored: ColumnType) -> _Payload | None:
    """A column of a number or float type: integers and numerics as their text, floats as float8."""
    if base != "float" and stored.base == "int":
        return TAG_NUMBER, sql.SQL("convert_to({}::text, 'UTF8')").format(column), None
    if base != "float" and stored.base == "decimal":
        # Fixed notation only: PostgreSQL never prints exponents; numbers beyond 1E1000 would differ.
        return TAG_NUMBER, sql.SQL("convert_to(trim_scale({})::text, 'UTF8')").format(column), None
    if base == "float" and stored.base == "float":
        expression = sql.SQL("CASE WHEN {c} = 'NaN' THEN {nan} ELSE float8send({c}::float8) END").format(
            c=column, nan=_bytea(encode(float("nan"), "float")[5:])
        )
        return TAG_FLOAT, expression, 8
    return None


def _text_payload(
    column: sql.Composable, stored: ColumnType, typmod: int, tolerances: Tolerances
) -> _Payload | None:
    """A text column's UTF-8 bytes, blank-padded like the client sees char(n), with the tolerances."""
    text: sql.Composable = column
    if stored.padded:
        if typmod < 5:
            return None
        text = sql.SQL("rpad({}::text, {})").format(column, sql.Literal(typmod - 4))
    if tolerances.unicode_nfc:
        text = sql.SQL("normalize({}, NFC)").format(text)
    if tolerances.rstrip_char:
        text = sql.SQL("rtrim({}, ' ')").format(text)
    return TAG_STRING, sql.SQL("convert_to({}, 'UTF8')").format(text), None


def _value_code(
    column: str, base: str, physical: _Physical, tolerances: Tolerances, lead: bytes = b""
) -> sql.Composable | None:
    """SQL for `lead` + the canonical encoding of the table's column `column`; constant bytes are
    merged into one literal and NOT NULL columns skip the null test, because per-row concatenations
    are the main cost."""
    stored, typmod, not_null = physical
    identifier = sql.Identifier(column)
    part = _payload(identifier, base, stored, typmod, tolerances)
    if part is None:
        return None
    tag, payload, length = part
    if length == -1:  # the payload is a whole encoding already (jsonb)
        value = payload
        if not_null:
            return sql.SQL("{} || {}").format(_bytea(lead), value) if lead else value
    elif length is not None:
        value = sql.SQL("{} || {}").format(_bytea(tag + length.to_bytes(4, "big")), payload)
    elif not_null:
        value = None
    else:
        value = sql.SQL("{} || int4send(octet_length({})) || {}").format(_bytea(tag), payload, payload)
    if not_null:
        if value is None:
            return sql.SQL("{} || int4send(octet_length({})) || {}").format(
                _bytea(lead + tag), payload, payload
            )
        return sql.SQL("{} || {}").format(_bytea(lead), value) if lead else value
    guarded = sql.SQL("(CASE WHEN {} IS NULL THEN {} ELSE {} END)").format(
        identifier, _bytea(_NULL_CODE), value
    )
    return sql.SQL("{} || {}").format(_bytea(lead), guarded) if lead else guarded


def _is_json(physical: _Physical) -> bool:
    return physical[0] is not None and physical[0].base == "json"


def _key_hash(key: sql.Composable) -> sql.Composable:
    """`bucket_of` before its modulo: the first 4 bytes of md5(key encoding), unsigned."""
    return sql.SQL("('x' || lpad(substr(md5({}), 1, 8), 16, '0'))::bit(64)::int8").format(key)


def _checksum_query(table: sql.Composable, bucket: sql.Composable, row: sql.Composable) -> sql.Composed:
    """Per bucket: count, sums of the signed high and low 64-bit halves of md5(row encoding), and
    how many low halves are negative. The hex digest is parsed once, as bit(128); OFFSET 0 keeps
    the subquery from being flattened, which would hash each row once per use."""
    return sql.SQL(
        "SELECT bucket, count(*), sum(high), sum(low), count(*) FILTER (WHERE low < 0) FROM ("
        " SELECT bucket, substring(hash from 1 for 64)::int8 AS high,"
        " substring(hash from 65 for 64)::int8 AS low FROM ("
        "  SELECT {bucket} AS bucket, ('x' || md5({row}))::bit(128) AS hash FROM {table} OFFSET 0) AS hashed"
        ") AS split GROUP BY bucket"
    ).format(bucket=bucket, row=row, table=table)


def _read_checksums(
    conn: psycopg.Connection, query: sql.Composed, params: tuple | None, buckets: int
) -> BucketChecksums:
    checksums = BucketChecksums(buckets)
    for bucket, count, high, low, negative_lows in conn.execute(query, params):
        # Signed 64-bit halves: a negative high half is off by 2^128 (vanishes mod 2^128);
        # each negative low half is 2^64 short.
        checksums.counts[bucket] = count
        checksums.sums[bucket] = ((int(high) << 64) + int(low) + (negative_lows << 64)) % MODULUS
    return checksums


class PostgresTableSide:
    """A table in PostgreSQL as a `ChecksumSide`: rows streamed through a server-side cursor,
    bucket checksums computed by the server when the columns allow it. Against another such side
    whose key is the same single NOT NULL integer column, it checksums and fetches by key range
    (`KeyRangeSide`, see keyranges.py)."""

    def __init__(self, dsn: str, table: str, *, schema: str = "public",
                 columns: Mapping[str, str] | None = None,
                 connect: Callable[[], psycopg.Connection] | None = None, hash_jsonb: bool = False) -> None:
        self.dsn = dsn
        self.hash_jsonb = hash_jsonb
        """Hash jsonb columns in SQL (`JSONB_FUNCTION`): exact, but measured slower than hashing the
        streamed rows in Python on a server that shares the client's cores (docs/benchmarks.md), so
        off unless asked for; without it a table with a jsonb column is hashed in Python."""
        self._connect = connect or (lambda: psycopg.connect(self.dsn))
        """Opens a connection (the owner's: its TLS settings and credentials); the side closes it."""
        self.table = table
        self.schema = schema
        self.columns = dict(columns) if columns is not None else None
        """The spec's column names -> the table's (a source table whose columns a mapping copies
        under other names); None: the same names, and rows carry every column of the table."""
        self._physical_columns: dict[str, _Physical] | None = None
        self._jsonb: bool | None = None
        self._code_cache: dict[
            tuple[TableSpec, Tolerances], tuple[sql.Composable, sql.Composable] | None
        ] = {}

    def _name(self) -> sql.Composable:
        return sql.Identifier(self.schema, self.table)

    def _column(self, name: str) -> str:
        """The table's own name of the spec's column `name`."""
        return name if self.columns is None else self.columns.get(name, name)

    def _select(self) -> sql.Composable:
        """`SELECT` list giving rows under the spec's names."""
        if self.columns is None:
            return sql.SQL("*")
        return sql.SQL(", ").join(sql.SQL("{} AS {}").format(sql.Identifier(physical), sql.Identifier(name))
                                  for name, physical in self.columns.items())

    def _stream(self, query: sql.Composed, params: tuple = ()) -> Iterator[dict]:
        with self._connect() as conn, conn.transaction():
            conn.execute("SET LOCAL TimeZone = 'UTC'")
            with conn.cursor(name="etl_checksum_rows", row_factory=dict_row) as cursor:
                cursor.itersize = _FETCH_ROWS
                cursor.execute(query, params)
                yield from cursor

    def __call__(self) -> Iterator[dict]:
        return self._stream(sql.SQL("SELECT {} FROM {}").format(self._select(), self._name()))

    def _physical(self) -> dict[str, _Physical]:
        """Column name -> (column type, typmod, NOT NULL); empty unless the server encoding is UTF8
        (the canonical strings are UTF-8)."""
        if self._physical_columns is None:
            with self._connect() as conn:
                if conn.execute("SHOW server_encoding").fetchone() != ("UTF8",):
                    found = []
                else:
                    found = conn.execute(
                        "SELECT a.attname, t.typname, a.atttypmod, a.attnotnull"
                        " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
                        " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                        (self._name().as_string(conn),),
                    ).fetchall()
            self._physical_columns = {
                name: (engine_type(pg_type), typmod, not_null) for name, pg_type, typmod, not_null in found
            }
        return self._physical_columns

    def _codes(self, spec: TableSpec, tolerances: Tolerances) -> tuple[sql.Composable, sql.Composable] | None:
        """SQL for (key encoding, row encoding), or None when not every column can be pushed down."""
        if (spec, tolerances) not in self._code_cache:
            self._code_cache[(spec, tolerances)] = self._build_codes(spec, tolerances)
        return self._code_cache[(spec, tolerances)]

    def _build_codes(
        self, spec: TableSpec, tolerances: Tolerances
    ) -> tuple[sql.Composable, sql.Composable] | None:
        if tolerances.case_insensitive_keys:
            return None
        physical = self._physical()
        bases = {column.name: column_base(column.type) for column in spec.columns}
        if any(self._column(name) not in physical for name in bases) or \
                any(name not in bases for name in spec.key):
            return None
        row_parts = [
            _value_code(self._column(name), bases[name], physical[self._column(name)], tolerances,
                        lead=encode(name))
            for name in sorted(bases)
        ]
        key_parts = [_value_code(self._column(name), bases[name], physical[self._column(name)], tolerances)
                     for name in spec.key]
        if any(part is None for part in row_parts + key_parts):
            return None
        if any(_is_json(physical[self._column(name)]) for name in spec.key):
            return None
        if any(_is_json(physical[self._column(name)]) for name in bases) and \
                (not self.hash_jsonb or not self._jsonb_function()):
            return None
        row = sql.SQL(" || ").join(row_parts)
        key = sql.SQL(" || ").join(key_parts)
        return key, row

    def _jsonb_function(self) -> bool:
        """Whether this side's connections can have `JSONB_FUNCTION` (a role without the TEMPORARY
        privilege cannot create it: its jsonb columns are then hashed in Python)."""
        if self._jsonb is None:
            try:
                with self._connect() as conn:
                    conn.execute(JSONB_FUNCTION_SQL)
                self._jsonb = True
            except psycopg.Error:
                self._jsonb = False
        return self._jsonb

    def _session(self) -> psycopg.Connection:
        """A connection ready for the checksum queries (`JSONB_FUNCTION` created when it may be used)."""
        conn = self._connect()
        if self._jsonb:
            conn.execute(JSONB_FUNCTION_SQL)
        return conn

    def pushes_down(self, spec: TableSpec, tolerances: Tolerances) -> bool:
        """Whether every column of `spec` is hashed in SQL (else checksums are computed in Python)."""
        return self._codes(spec, tolerances) is not None

    def bucket_checksums(
        self, spec: TableSpec, buckets: int, tolerances: Tolerances
    ) -> BucketChecksums | None:
        codes = self._codes(spec, tolerances)
        if codes is None:
            return None
        key, row = codes
        bucket = sql.SQL("{} % {}").format(_key_hash(key), sql.Literal(buckets))
        with self._session() as conn:
            return _read_checksums(conn, _checksum_query(self._name(), bucket, row), None, buckets)

    def rows_in_buckets(
        self, spec: TableSpec, wanted: frozenset[int], buckets: int, tolerances: Tolerances
    ) -> Iterator[dict]:
        codes = self._codes(spec, tolerances)
        if codes is None:
            return self()
        query = sql.SQL("SELECT {select} FROM {table} WHERE {bucket} %% {n} = ANY(%s)").format(
            select=self._select(),
            table=self._name(),
            bucket=_key_hash(codes[0]),
            n=sql.Literal(buckets),
        )
        return self._stream(query, (sorted(wanted),))

    def key_span(self, spec: TableSpec, tolerances: Tolerances) -> KeySpan | None:
        if len(spec.key) != 1 or self._codes(spec, tolerances) is None:
            return None
        stored, _typmod, not_null = self._physical()[self._column(spec.key[0])]
        if stored is None or stored.base != "int" or not not_null:
            return None
        query = sql.SQL("SELECT min({key}), max({key}) FROM {table}").format(
            key=sql.Identifier(self._column(spec.key[0])), table=self._name()
        )
        with self._connect() as conn:
            # min and max are both NULL (None, None) only for an empty table: the key is NOT NULL.
            low, high = conn.execute(query).fetchone() or (None, None)  # an aggregate: always one row
        return low, high

    def range_checksums(self, spec: TableSpec, ranges: KeyRanges, tolerances: Tolerances) -> BucketChecksums:
        codes = self._codes(spec, tolerances)
        if codes is None:
            raise ValueError(f"{self.table}: range checksums need columns hashable in SQL (see key_span)")
        bucket = sql.SQL("width_bucket({}, %s::int8[])").format(sql.Identifier(self._column(ranges.column)))
        with self._session() as conn:
            query = _checksum_query(self._name(), bucket, codes[1])
            return _read_checksums(conn, query, (list(ranges.thresholds),), ranges.buckets)

    def rows_in_ranges(
        self, spec: TableSpec, ranges: KeyRanges, wanted: frozenset[int], tolerances: Tolerances
    ) -> Iterator[dict]:
        key = sql.Identifier(self._column(ranges.column))
        conditions: list[sql.Composable] = []
        params: list[int] = []
        for low, high in ranges.bounds(wanted):
            parts: list[sql.Composable] = []
            if low is not None:
                parts.append(sql.SQL("{} >= %s").format(key))
                params.append(low)
            if high is not None:
                parts.append(sql.SQL("{} < %s").format(key))
                params.append(high)
            conditions.append(sql.SQL("({})").format(sql.SQL(" AND ").join(parts or [sql.SQL("true")])))
        query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
            self._select(), self._name(), sql.SQL(" OR ").join(conditions or [sql.SQL("false")])
        )
        return self._stream(query, tuple(params))
