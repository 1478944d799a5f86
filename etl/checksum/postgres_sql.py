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

Against another PostgreSQL side, rows can instead be hashed with PostgreSQL's own hash functions
(`native_hashing`, etl/checksum/native.py): much cheaper than MD5, and jsonb columns too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

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
from etl.checksum.diff import RefusedRowsFound
from etl.checksum.keyranges import MAX_RANGES, NAME_BYTES, KeyRanges, KeySpan, RangeKind, ranges_for_rows
from etl.checksum.native import NATIVE_BUCKET, NativeHashing, NativePlan
from etl.checksum.tolerances import Tolerances
from etl.coltypes import ColumnType, engine_type
from etl.records import TableSpec

_NULL_CODE = encode(None)
_FETCH_ROWS = 5000
_SAMPLE_PAGES = 1000
"""The pages `key_quantiles` samples (all of a smaller table): about 80,000 short rows, some 20 per
range of the most ranges a table is cut into, read and sorted in a few tens of milliseconds."""


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
    if length is not None:
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


def _stored_base(physical: _Physical) -> str:
    """The base of a table column's type, "" when `engine_type` does not know it."""
    return physical[0].base if physical[0] is not None else ""


def _key_hash(key: sql.Composable) -> sql.Composable:
    """`bucket_of` before its modulo: the first 4 bytes of md5(key encoding), unsigned."""
    return sql.SQL("('x' || lpad(substr(md5({}), 1, 8), 16, '0'))::bit(64)::int8").format(key)


def _sums_per_bucket(hashed: sql.Composable) -> sql.Composed:
    """Per bucket of `hashed` (rows of bucket, high, low, refused): count, sums of the signed high
    and low 64-bit halves of the row hashes, how many low halves are negative, and how many rows
    meet `refused`. OFFSET 0 keeps `hashed` a subquery scan whose hashes the aggregate only reads:
    flattened into it, `low` would be computed again for its FILTER (PostgreSQL does not share
    common subexpressions)."""
    return sql.SQL(
        "SELECT bucket, count(*), sum(high), sum(low), count(*) FILTER (WHERE low < 0),"
        " count(*) FILTER (WHERE refused) FROM ({} OFFSET 0) AS hashed GROUP BY bucket"
    ).format(hashed)


def _checksum_query(table: sql.Composable, bucket: sql.Composable, row: sql.Composable,
                    refused: sql.Composable) -> sql.Composed:
    """`_sums_per_bucket` of md5(row encoding): the hex digest parsed once, as bit(128), in a
    subquery that OFFSET 0 keeps from being flattened, which would hash each row once per use."""
    return _sums_per_bucket(sql.SQL(
        "SELECT bucket, substring(hash from 1 for 64)::int8 AS high,"
        " substring(hash from 65 for 64)::int8 AS low, refused FROM ("
        "  SELECT {bucket} AS bucket, ('x' || md5({row}))::bit(128) AS hash, {refused} AS refused"
        " FROM {table} OFFSET 0) AS rows"
    ).format(bucket=bucket, row=row, table=table, refused=refused))


_NATIVE_CLASSES = frozenset({"int", "decimal", "string", "bool", "date", "time", "timestamp", "timestamptz",
                             "uuid", "bytes", "json"})
"""Column types (`ColumnType.base` of the table's column) whose PostgreSQL extended hash function is
exact under the canonical comparison; a class is a base (equal values of one base hash alike across
its PostgreSQL types). Each hashes the value, not its text: integers across int2/int4/int8 alike
(PostgreSQL's cross-type hash joins rely on it), numeric by value (1.0 and 1.00 alike, as the
canonical encoding's trimmed text), timestamps, dates and times by their microseconds. jsonb is
hashed as its text (`_native_row`): jsonb's own hash is blind to nesting (`false`, `[false]` and
`[[false]]` hash alike), while its text is one per value (keys sorted) and keeps the scale of
numbers, so equal texts are equal documents, and the rare documents that differ only in a number's
scale (1.5, 1.50) are sent to the canonical hashes by `validate_table`. Not here, hence hashed
through their canonical encoding: floats (the hash makes -0 and 0 alike, the encoding does not),
char(n) (its hash ignores the blank padding a client sees) and every other type."""

_STRING_CLASSES = frozenset({"string", "json"})
_TIME_CLASSES = frozenset({"time", "timestamp", "timestamptz"})

_NATIVE_PROBE = sql.SQL(
    "SELECT hashint8extended(hash_record_extended(ROW(-7::int8, 40000::int4, 'é ß'::text COLLATE \"C\","
    " 12.50::numeric, '2024-02-29 12:00:00.5+00'::timestamptz, '2024-02-29 12:00'::timestamp,"
    " '2024-02-29'::date, '12:00:01'::time, true, '6f1c0bd2-0000-4000-8000-000000000001'::uuid,"
    " '\\x00ff'::bytea, '{\"b\": [1, 2.50, \"x\"], \"a\": null}'::jsonb::text COLLATE \"C\","
    " NULL::text), 0), 0)"
)
"""A fixed row of every native class hashed as the checksum hashes rows: two servers whose results
differ (another hash implementation, byte order or server encoding) are not compared natively."""


def _native_class(base: str, stored: ColumnType | None, tolerances: Tolerances) -> str | None:
    """The hash class of a column whose spec type's base is `base` and whose table column is of type
    `stored`, or None when its canonical encoding must be hashed instead: a float spec type, a type
    outside `_NATIVE_CLASSES`, char(n), or a tolerance that changes its values before hashing."""
    if stored is None or stored.base not in _NATIVE_CLASSES or stored.padded or base == "float":
        return None
    if stored.base == "json" and base == "set":
        return None
    if stored.base in _STRING_CLASSES and (tolerances.unicode_nfc or tolerances.rstrip_char):
        return None
    precision = tolerances.timestamp_precision
    if stored.base in _TIME_CLASSES and precision is not None and precision < 6:
        return None
    return stored.base


def _native_checksum_query(
    table: sql.Composable, bucket: sql.Composable, row: sql.Composable, refused: sql.Composable
) -> sql.Composed:
    """`_sums_per_bucket` of the engine's own row hashes: two 64-bit hashes of the row, each
    `hash_record_extended` (which combines the columns' hashes linearly) passed through
    `hashint8extended`, so a bucket's sum depends on which values share a row, not only on each
    column's values (a swap of two rows' values would otherwise cancel out). The row is built once
    (jsonb's text included) in a subquery OFFSET 0 keeps apart, and hashed once per seed."""
    return _sums_per_bucket(sql.SQL(
        "SELECT bucket, hashint8extended(hash_record_extended(r, 0), 0) AS high,"
        " hashint8extended(hash_record_extended(r, 1), 1) AS low, refused FROM ("
        "  SELECT {bucket} AS bucket, {row} AS r, {refused} AS refused FROM {table} OFFSET 0) AS rows"
    ).format(bucket=bucket, row=row, table=table, refused=refused))


def _read_checksums(
    conn: psycopg.Connection, query: sql.Composed, params: tuple | None, buckets: int, table: str
) -> BucketChecksums:
    checksums = BucketChecksums(buckets)
    refused = 0
    for bucket, count, high, low, negative_lows, refused_rows in conn.execute(query, params):
        # Signed 64-bit halves: a negative high half is off by 2^128 (vanishes mod 2^128);
        # each negative low half is 2^64 short.
        checksums.counts[bucket] = count
        checksums.sums[bucket] = ((int(high) << 64) + int(low) + (negative_lows << 64)) % MODULUS
        refused += refused_rows
    if refused:
        raise RefusedRowsFound(f"{table}: rows with a value the mapping refuses: {refused}")
    return checksums


class PostgresTableSide:
    """A table in PostgreSQL as a `ChecksumSide`: rows streamed through a server-side cursor,
    bucket checksums computed by the server when the columns allow it. Against another such side
    whose key is the same single NOT NULL integer column, it checksums and fetches by key range
    (`KeyRangeSide`, see keyranges.py)."""

    def __init__(self, dsn: str, table: str, *, schema: str = "public",
                 columns: Mapping[str, str] | None = None,
                 connect: Callable[[], psycopg.Connection] | None = None,
                 refused: sql.Composable | None = None) -> None:
        self.dsn = dsn
        self.refused = refused if refused is not None else sql.SQL("false")
        """True for a row the mapping would refuse (a source table standing for its mapped rows): its
        checksums, which count such rows in the same scan, then raise `RefusedRowsFound`."""
        self._connect = connect or (lambda: psycopg.connect(self.dsn))
        """Opens a connection (the owner's: its TLS settings and credentials); the side closes it."""
        self.table = table
        self.schema = schema
        self.columns = dict(columns) if columns is not None else None
        """The spec's column names -> the table's (a source table whose columns a mapping copies
        under other names); None: the same names, and rows carry every column of the table."""
        self._physical_columns: dict[str, _Physical] | None = None
        self._probe: str | None = None
        """The native probe's result on this server (`_NATIVE_PROBE`), "" without native hashing."""
        self._name_bytes = 0
        """How many bytes of a text this server's `name` keeps (`keyranges.name_prefix`), read with the
        catalog (`_physical`)."""
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
                    (self._name_bytes,) = conn.execute(
                        "SELECT octet_length(repeat('x', 1000)::name)").fetchone() or (0,)
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
        if not self._hashable_in_sql(spec, tolerances):
            return None
        physical = self._physical()
        bases = {column.name: column_base(column.type) for column in spec.columns}
        row_parts = [
            _value_code(self._column(name), bases[name], physical[self._column(name)], tolerances,
                        lead=encode(name))
            for name in sorted(bases)
        ]
        key_parts = [_value_code(self._column(name), bases[name], physical[self._column(name)], tolerances)
                     for name in spec.key]
        if any(part is None for part in row_parts + key_parts):
            return None
        row = sql.SQL(" || ").join(row_parts)
        key = sql.SQL(" || ").join(key_parts)
        return key, row

    def _hashable_in_sql(self, spec: TableSpec, tolerances: Tolerances) -> bool:
        """What both ways of hashing in SQL need: every column of `spec` in this table, the key among
        them, and letter case of keys not ignored (SQL's `lower` is not Python's `casefold`)."""
        physical = self._physical()
        names = {column.name for column in spec.columns}
        return not tolerances.case_insensitive_keys and all(name in names for name in spec.key) and all(
            self._column(name) in physical for name in names)

    def pushes_down(self, spec: TableSpec, tolerances: Tolerances) -> bool:
        """Whether every column of `spec` is hashed in SQL, canonically or natively against another
        PostgreSQL side (else checksums are computed in Python)."""
        return self._codes(spec, tolerances) is not None or self.native_hashing(spec, tolerances) is not None

    def native_hashing(self, spec: TableSpec, tolerances: Tolerances) -> NativeHashing | None:
        """PostgreSQL's own hashing of `spec`'s rows (etl/checksum/native.py): a hash class per
        column of `_NATIVE_CLASSES`, the canonical encoding for the others. None when a column has
        neither, letter case of keys is ignored, or the server has no `hash_record_extended`
        (before PostgreSQL 14)."""
        if not self._hashable_in_sql(spec, tolerances):
            return None
        physical = self._physical()
        classes: dict[str, str | None] = {}
        for column in spec.columns:
            name = self._column(column.name)
            base, found = column_base(column.type), physical[name]
            classes[column.name] = _native_class(base, found[0], tolerances)
            if classes[column.name] is None and _value_code(name, base, found, tolerances) is None:
                return None
        probe = self._native_probe()
        return None if probe is None else NativeHashing(f"postgresql:{probe}", classes)

    def _native_probe(self) -> str | None:
        if self._probe is None:
            try:
                with self._connect() as conn:
                    found = conn.execute(_NATIVE_PROBE).fetchone()
                self._probe = str(found[0]) if found else ""
            except psycopg.Error:
                self._probe = ""
        return self._probe or None

    def _native_row(self, spec: TableSpec, tolerances: Tolerances, plan: NativePlan,
                    names: Iterable[str] | None = None) -> sql.Composable:
        """`ROW(...)` of `spec`'s columns in name order (or of `names`, in their order): `plan.native`
        ones as they are (text, and jsonb as its text, in the C collation, whose hash is of the
        bytes: a nondeterministic collation hashes `a` and `A` alike), the others as their
        canonical encoding."""
        physical = self._physical()
        types = {column.name: column.type for column in spec.columns}
        parts: list[sql.Composable] = []
        for column in sorted(types) if names is None else names:
            name = self._column(column)
            if column not in plan.native:
                code = _value_code(name, column_base(types[column]), physical[name], tolerances)
                assert code is not None  # native_hashing checked every column
                parts.append(code)
            elif _stored_base(physical[name]) == "string":
                parts.append(sql.SQL('{} COLLATE "C"').format(sql.Identifier(name)))
            elif _stored_base(physical[name]) == "json":
                parts.append(sql.SQL('{}::text COLLATE "C"').format(sql.Identifier(name)))
            else:
                parts.append(sql.Identifier(name))
        return sql.SQL("ROW({})").format(sql.SQL(", ").join(parts))

    def native_checksum_query(self, spec: TableSpec, tolerances: Tolerances, plan: NativePlan,
                              bucket: sql.Composable) -> sql.Composed:
        """The query summing PostgreSQL's own hashes of the rows per `bucket` (`_native_checksum_query`)."""
        row = self._native_row(spec, tolerances, plan)
        return _native_checksum_query(self._name(), bucket, row, self.refused)

    def _native_bucket(self, spec: TableSpec, buckets: int, tolerances: Tolerances,
                       plan: NativePlan) -> sql.Composable:
        """A row's hash bucket from PostgreSQL's own hash of its key (seed 2: independent of the row
        hashes), which only the two sides compute; the drill-down reads it with the rows."""
        key = self._native_row(spec, tolerances, plan, spec.key)
        return sql.SQL("mod(hashint8extended(hash_record_extended({}, 2), 2) & {}, {})").format(
            key, sql.Literal(2**63 - 1), sql.Literal(buckets))

    def bucket_checksums(
        self, spec: TableSpec, buckets: int, tolerances: Tolerances, *, native: NativePlan | None = None
    ) -> BucketChecksums | None:
        """Per hash bucket of the key: the canonical row hashes and buckets (§8), or with `native`
        (agreed with the other side, `NativePlan.agree`) PostgreSQL's own."""
        if native is not None:
            bucket = self._native_bucket(spec, buckets, tolerances, native)
            query = self.native_checksum_query(spec, tolerances, native, bucket)
        else:
            codes = self._codes(spec, tolerances)
            if codes is None:
                return None
            bucket = sql.SQL("{} % {}").format(_key_hash(codes[0]), sql.Literal(buckets))
            query = _checksum_query(self._name(), bucket, codes[1], self.refused)
        with self._connect() as conn:
            return _read_checksums(conn, query, None, buckets, self.table)

    def rows_in_buckets(
        self, spec: TableSpec, wanted: frozenset[int], buckets: int, tolerances: Tolerances, *,
        native: NativePlan | None = None,
    ) -> Iterator[dict]:
        """The rows of the `wanted` buckets; with `native`, each with its bucket as `NATIVE_BUCKET`."""
        if native is not None:
            bucket = self._native_bucket(spec, buckets, tolerances, native)
            query = sql.SQL(
                "SELECT {select}, {bucket} AS {field} FROM {table} WHERE {bucket} = ANY(%s)").format(
                select=self._select(), bucket=bucket, field=sql.Identifier(NATIVE_BUCKET), table=self._name())
            return self._stream(query, (sorted(wanted),))
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

    def range_kind(self, spec: TableSpec, tolerances: Tolerances, *, native: NativePlan | None = None
                   ) -> RangeKind | None:
        # A native plan comes from `native_hashing` of both sides, which hash every column in SQL.
        if native is None and self._codes(spec, tolerances) is None:
            return None
        return self._leading_kind(spec, tolerances)

    def _leading_kind(self, spec: TableSpec, tolerances: Tolerances) -> RangeKind | None:
        """`range_kind` of a table whose rows are hashed in SQL: from the leading key column's type."""
        stored, _typmod, not_null = self._physical()[self._column(spec.key[0])]
        if stored is None or not not_null:
            return None
        if stored.base == "int":
            return "int"
        if stored.base != "string" or stored.padded or tolerances.unicode_nfc or tolerances.rstrip_char:
            return None
        return "text" if self._name_bytes == NAME_BYTES else None

    def key_span(self, spec: TableSpec, tolerances: Tolerances, *, native: NativePlan | None = None
                 ) -> KeySpan | None:
        if len(spec.key) != 1 or self.range_kind(spec, tolerances, native=native) != "int":
            return None
        query = sql.SQL("SELECT min({key}), max({key}) FROM {table}").format(
            key=sql.Identifier(self._column(spec.key[0])), table=self._name()
        )
        with self._connect() as conn:
            # min and max are both NULL (None, None) only for an empty table: the key is NOT NULL.
            low, high = conn.execute(query).fetchone() or (None, None)  # an aggregate: always one row
        return low, high

    def key_quantiles(self, spec: TableSpec, tolerances: Tolerances, buckets: int) -> KeyRanges | None:
        kind = self._leading_kind(spec, tolerances) if self._hashable_in_sql(spec, tolerances) else None
        if kind is None:
            return None
        column = self._column(spec.key[0])
        fractions = [i / MAX_RANGES for i in range(1, MAX_RANGES)]
        try:
            with self._connect() as conn:
                # a partitioned table's pages are its partitions' (pg_partition_tree lists them,
                # and nothing for a table that is not partitioned)
                found = conn.execute(
                    "SELECT coalesce((SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree(t)),"
                    " pg_relation_size(t))::int8 / current_setting('block_size')::int8"
                    " FROM (SELECT %s::regclass AS t) AS relation",
                    (self._name().as_string(conn),)).fetchone()
                pages = found[0] if found else 0
                percent = 100.0 if pages <= _SAMPLE_PAGES else 100.0 * _SAMPLE_PAGES / pages
                # SYSTEM reads whole pages at random; REPEATABLE makes the sample, hence the
                # ranges, the same on every run over the same table.
                query = sql.SQL(
                    "SELECT count(*), percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY {key})"
                    " FROM {table} TABLESAMPLE SYSTEM (%s) REPEATABLE (0)").format(
                    key=self._range_key(column, kind), table=self._name())
                sampled, quantiles = conn.execute(query, (fractions, percent)).fetchone() or (0, None)
        except psycopg.Error:
            return None  # a relation TABLESAMPLE cannot read (a foreign table): hash buckets instead
        if not sampled or quantiles is None:
            return None
        rows = int(sampled * 100.0 / percent)
        return KeyRanges.at_quantiles(spec.key[0], kind, quantiles, ranges_for_rows(rows, buckets))

    @staticmethod
    def _range_key(column: str, kind: RangeKind) -> sql.Composable:
        """The leading key column as the ranges compare it: text as a `name` by its bytes (UTF-8: code
        points; keyranges.py says why `name`)."""
        if kind == "text":
            return sql.SQL('{}::name COLLATE "C"').format(sql.Identifier(column))
        return sql.Identifier(column)

    @staticmethod
    def _range_type(kind: RangeKind) -> sql.Composable:
        return sql.SQL("name" if kind == "text" else "int8")

    def range_checksums(self, spec: TableSpec, ranges: KeyRanges, tolerances: Tolerances, *,
                        native: NativePlan | None = None) -> BucketChecksums:
        bucket = sql.SQL("width_bucket({}, %s::{}[])").format(
            self._range_key(self._column(ranges.column), ranges.kind), self._range_type(ranges.kind))
        if native is not None:
            query = self.native_checksum_query(spec, tolerances, native, bucket)
        else:
            codes = self._codes(spec, tolerances)
            if codes is None:
                raise ValueError(f"{self.table}: range checksums need columns hashable in SQL (see key_span)")
            query = _checksum_query(self._name(), bucket, codes[1], self.refused)
        with self._connect() as conn:
            return _read_checksums(conn, query, (list(ranges.thresholds),), ranges.buckets, self.table)

    def rows_in_ranges(
        self, spec: TableSpec, ranges: KeyRanges, wanted: frozenset[int], tolerances: Tolerances
    ) -> Iterator[dict]:
        key = self._range_key(self._column(ranges.column), ranges.kind)
        bound = sql.SQL("%s::{}").format(self._range_type(ranges.kind))
        conditions: list[sql.Composable] = []
        params: list[int | str] = []
        for low, high in ranges.bounds(wanted):
            parts: list[sql.Composable] = []
            if low is not None:
                parts.append(sql.SQL("{} >= {}").format(key, bound))
                params.append(low)
            if high is not None:
                parts.append(sql.SQL("{} < {}").format(key, bound))
                params.append(high)
            conditions.append(sql.SQL("({})").format(sql.SQL(" AND ").join(parts or [sql.SQL("true")])))
        query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
            self._select(), self._name(), sql.SQL(" OR ").join(conditions or [sql.SQL("false")])
        )
        return self._stream(query, tuple(params))
