"""Column types of the mapping language, parsed once into frozen values (`decimal(10,2)`,
`timestamptz(6)`, `list(int)`).

One grammar and one class for every layer: the mapping checks and casts values with it, both sinks
derive their physical types from it (so a DynamoDB attribute type and a PostgreSQL column type of
one column always agree on what it is), and `records.Column.parsed_type` carries it. The database
engines' own type names that checksums meet in catalogs (`int4`, `double precision`, `NUMBER`) are
read into the same class by `engine_type`, and `type_of` reads either kind of name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from etl.errors import MappingError

SCALARS = frozenset(
    {"string", "int", "decimal", "float", "bool", "date", "time", "timestamp", "timestamptz", "uuid", "bytes"}
)
KNOWN = SCALARS | {"json", "list", "set"}
ALIASES = {
    "map": "json",
    "str": "string",
    "integer": "int",
    "boolean": "bool",
    "text": "string",
    "timestamp with time zone": "timestamptz",
    "jsonb": "json",
    "binary": "bytes",
}
"""Other names of a type, accepted for the type's own name."""
DEFAULT_TIMESTAMP_PRECISION = 6
_TYPE = re.compile(r"^([a-z]+)\s*(?:[(<\[]\s*(.*?)\s*[)>\]])?$")
_NUMBER = re.compile(r"^\s*\d+\s*$")


class ColumnTypeError(MappingError, ValueError):
    """A type text that is not a column type; the message names the text and the rule it breaks."""


@dataclass(frozen=True)
class ColumnType:
    """A parsed column type: its base name plus either numeric arguments or an element type."""

    base: str
    """The type's own name: string, int, decimal, float, bool, date, time, timestamp, timestamptz,
    uuid, bytes, json, list or set."""
    args: tuple[int, ...] = ()
    """Numeric arguments: (precision, scale) of decimal, (precision,) of timestamps (6 unless given),
    (length,) of string; empty when the type has none."""
    element: ColumnType | None = None
    """Element type of `list(...)`/`set(...)`; None when unspecified (any JSON-like value)."""
    padded: bool = False
    """A string blank-padded to its declared length (an engine's char(n)); only `engine_type` makes one."""

    @property
    def precision(self) -> int | None:
        return self.args[0] if self.args else None

    @property
    def scale(self) -> int | None:
        return self.args[1] if len(self.args) > 1 else None

    @property
    def is_number(self) -> bool:
        """An exact number: int or decimal."""
        return self.base in ("int", "decimal")

    @property
    def is_timestamp(self) -> bool:
        return self.base in ("timestamp", "timestamptz")

    @property
    def text(self) -> str:
        """The type as a mapping writes it, arguments included: `decimal(10,2)`, `list(int)`."""
        if self.element is not None:
            return f"{self.base}({self.element.text})"
        if self.args:
            return f"{self.base}({','.join(map(str, self.args))})"
        return self.base

    def __str__(self) -> str:
        return self.text


@lru_cache(maxsize=1024)
def parse_type(text: str) -> ColumnType:
    """Parse a type text (cached: each text is parsed once); raises ColumnTypeError saying what is wrong."""
    lowered = text.strip().lower()
    match = _TYPE.match(ALIASES.get(lowered, lowered))
    if not match or ALIASES.get(match.group(1), match.group(1)) not in KNOWN:
        raise ColumnTypeError(f"unknown type `{text}`")
    base, inner = ALIASES.get(match.group(1), match.group(1)), match.group(2)
    if base in ("list", "set") and inner:
        return _collection(text, base, inner)
    if inner is not None and not all(_NUMBER.match(part) for part in inner.split(",")):
        raise ColumnTypeError(f"unknown type `{text}`")
    args = tuple(int(part) for part in inner.split(",")) if inner is not None else ()
    if base == "decimal":
        return _decimal(text, args)
    if base in ("timestamp", "timestamptz"):
        if len(args) > 1 or (args and args[0] > DEFAULT_TIMESTAMP_PRECISION):
            raise ColumnTypeError(f"{base}(p) takes one precision 0..6 (Python keeps microseconds)")
        return ColumnType(base, args or (DEFAULT_TIMESTAMP_PRECISION,))
    if args and not (base == "string" and len(args) == 1):
        raise ColumnTypeError(f"unknown type `{text}`")
    return ColumnType(base, args)


def _decimal(text: str, args: tuple[int, ...]) -> ColumnType:
    if not args:
        return ColumnType("decimal")
    if len(args) > 2:
        raise ColumnTypeError(f"unknown type `{text}`")
    precision, scale = args[0], args[1] if len(args) > 1 else 0
    if not 1 <= precision <= 38 or scale > precision:
        raise ColumnTypeError(f"decimal({precision},{scale}) needs 1 <= p <= 38 and 0 <= s <= p")
    return ColumnType("decimal", (precision, scale))


def _collection(text: str, base: str, inner: str) -> ColumnType:
    element = parse_type(inner)
    if element.base not in SCALARS:
        raise ColumnTypeError(f"type `{text}`: elements of a {base} must be scalars")
    return ColumnType(base, element=element)


_INT, _DECIMAL, _FLOAT = ColumnType("int"), ColumnType("decimal"), ColumnType("float")
_STRING, _CHAR, _BYTES = ColumnType("string"), ColumnType("string", padded=True), ColumnType("bytes")
_TIMESTAMP = ColumnType("timestamp", (DEFAULT_TIMESTAMP_PRECISION,))
_TIMESTAMPTZ = ColumnType("timestamptz", (DEFAULT_TIMESTAMP_PRECISION,))
ENGINE_TYPES: dict[str, ColumnType] = {
    # PostgreSQL (pg_type.typname, as its catalogs and information_schema's udt_name print it)
    "int2": _INT, "int4": _INT, "int8": _INT, "numeric": _DECIMAL, "float4": _FLOAT, "float8": _FLOAT,
    "bool": ColumnType("bool"), "text": _STRING, "varchar": _STRING, "bpchar": _CHAR, "bytea": _BYTES,
    "date": ColumnType("date"), "time": ColumnType("time"), "timestamp": _TIMESTAMP,
    "timestamptz": _TIMESTAMPTZ, "uuid": ColumnType("uuid"), "jsonb": ColumnType("json"),
    # SQL Server (TYPE_NAME of sys.columns)
    "tinyint": _INT, "smallint": _INT, "int": _INT, "bigint": _INT, "decimal": _DECIMAL,
    "smallmoney": _DECIMAL, "float": _FLOAT, "real": _FLOAT, "char": _CHAR, "nchar": _CHAR,
    "nvarchar": _STRING, "ntext": _STRING, "binary": _BYTES, "varbinary": _BYTES, "image": _BYTES,
    "datetime": _TIMESTAMP, "datetime2": _TIMESTAMP, "smalldatetime": _TIMESTAMP,
    "datetimeoffset": _TIMESTAMPTZ, "uniqueidentifier": ColumnType("uuid"),
    # Oracle (ALL_TAB_COLUMNS.DATA_TYPE without its sizes)
    "number": _DECIMAL, "varchar2": _STRING, "nvarchar2": _STRING, "clob": _STRING, "nclob": _STRING,
    "long": _STRING, "raw": _BYTES, "long raw": _BYTES, "blob": _BYTES,
    "timestamp with time zone": _TIMESTAMPTZ, "timestamp with local time zone": _TIMESTAMPTZ,
    # other spellings of the types above
    "integer": _INT, "double": _FLOAT, "double precision": _FLOAT,
}
"""Engines' own type names (lower case, without arguments) -> the column type holding their values.

Left out on purpose, so that checksums hash their values as they always have (as no type: numbers as
numbers, floats included): PostgreSQL's json (hashed in SQL only as jsonb), and the names one engine
uses for another type than a name above stands for in another engine (PostgreSQL's money, bit and
interval). Oracle's BINARY_FLOAT and BINARY_DOUBLE are not listed either, and `float` is SQL Server's
double: Oracle's FLOAT is a decimal NUMBER, so restore verification takes each column's type from
the reader that reads it (`SqlSource.mapping_type`, etl/restore/cli.py `table_spec`) and uses these
names only where the reader names none."""
_ENGINE_NAME = re.compile(r"[a-z][a-z0-9_ ]*")


def engine_type(name: str) -> ColumnType | None:
    """The column type of an engine's own type name (`int4`, `NUMERIC(10,2)`: its arguments are left
    aside), or None when `ENGINE_TYPES` does not know the name."""
    match = _ENGINE_NAME.match(name.strip().lower())
    return ENGINE_TYPES.get(match.group(0).strip()) if match else None


@lru_cache(maxsize=1024)
def type_of(text: str) -> ColumnType | None:
    """The column type a type text names, as a mapping writes it (`decimal(10,2)`) or else as an engine
    does (`engine_type`), or None when it is neither (checksums hash such a column's values as no type)."""
    try:
        return parse_type(text)
    except ColumnTypeError:
        return engine_type(text) or _mapping_base(text)


def _mapping_base(text: str) -> ColumnType | None:
    """A mapping type's base name with arguments the grammar refuses (`float(53)`, `decimal(50,2)`)."""
    match = _ENGINE_NAME.match(text.strip().lower())
    base = ALIASES.get(match.group(0).strip(), match.group(0).strip()) if match else ""
    return ColumnType(base) if base in KNOWN else None
