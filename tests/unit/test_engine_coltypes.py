"""The engines' own type names that checksums and restore verification meet in catalogs, read into the
one column-type model (etl.coltypes.engine_type, type_of)."""

import pytest

from etl.checksum.canonical import column_base
from etl.coltypes import ENGINE_TYPES, ColumnType, engine_type, type_of

INT = ColumnType(base="int", args=(), element=None, padded=False)
DECIMAL = ColumnType(base="decimal", args=(), element=None, padded=False)
FLOAT = ColumnType(base="float", args=(), element=None, padded=False)
STRING = ColumnType(base="string", args=(), element=None, padded=False)
CHAR = ColumnType(base="string", args=(), element=None, padded=True)
BYTES = ColumnType(base="bytes", args=(), element=None, padded=False)
BOOL = ColumnType(base="bool", args=(), element=None, padded=False)
DATE = ColumnType(base="date", args=(), element=None, padded=False)
TIME = ColumnType(base="time", args=(), element=None, padded=False)
TIMESTAMP = ColumnType(base="timestamp", args=(6,), element=None, padded=False)
TIMESTAMPTZ = ColumnType(base="timestamptz", args=(6,), element=None, padded=False)
UUID = ColumnType(base="uuid", args=(), element=None, padded=False)
JSON = ColumnType(base="json", args=(), element=None, padded=False)

POSTGRES = {
    "int2": INT, "int4": INT, "int8": INT, "numeric": DECIMAL, "float4": FLOAT, "float8": FLOAT,
    "bool": BOOL, "text": STRING, "varchar": STRING, "bpchar": CHAR, "bytea": BYTES, "date": DATE,
    "time": TIME, "timestamp": TIMESTAMP, "timestamptz": TIMESTAMPTZ, "uuid": UUID, "jsonb": JSON,
    # hashed in Python as no type, as they always were
    "json": None, "money": None, "bit": None, "interval": None, "timetz": None, "_int4": None,
    "_text": None, "xml": None, "inet": None, "name": None, "citext": None,
}
SQLSERVER = {
    "tinyint": INT, "smallint": INT, "int": INT, "bigint": INT, "decimal": DECIMAL, "numeric": DECIMAL,
    "smallmoney": DECIMAL, "float": FLOAT, "real": FLOAT, "bit": None, "money": None,
    "char": CHAR, "nchar": CHAR, "varchar": STRING, "nvarchar": STRING, "text": STRING, "ntext": STRING,
    "binary": BYTES, "varbinary": BYTES, "image": BYTES, "date": DATE, "time": TIME,
    "datetime": TIMESTAMP, "datetime2": TIMESTAMP, "smalldatetime": TIMESTAMP,
    "datetimeoffset": TIMESTAMPTZ, "uniqueidentifier": UUID, "xml": None, "sql_variant": None,
    "hierarchyid": None, "geography": None,
}
ORACLE = {
    "number": DECIMAL, "float": FLOAT, "binary_float": None, "binary_double": None,
    "varchar2": STRING, "nvarchar2": STRING, "char": CHAR, "nchar": CHAR, "clob": STRING,
    "nclob": STRING, "long": STRING, "raw": BYTES, "long raw": BYTES, "blob": BYTES, "date": DATE,
    "timestamp": TIMESTAMP, "timestamp with time zone": TIMESTAMPTZ,
    "timestamp with local time zone": TIMESTAMPTZ, "interval day to second": None,
    "interval year to month": None, "rowid": None, "xmltype": None, "bfile": None,
}
OTHER_SPELLINGS = {"integer": INT, "double": FLOAT, "double precision": FLOAT}


@pytest.mark.parametrize(
    "name, parsed", [*POSTGRES.items(), *SQLSERVER.items(), *ORACLE.items(), *OTHER_SPELLINGS.items()]
)
def test_engine_type_names(name, parsed):
    assert engine_type(name) == parsed
    assert engine_type(name.upper()) == parsed  # catalogs print upper case (SQL Server, Oracle)


def test_every_listed_name_is_pinned():
    assert set(ENGINE_TYPES) == {
        name for table in (POSTGRES, SQLSERVER, ORACLE, OTHER_SPELLINGS) for name, parsed in table.items()
        if parsed is not None
    }


@pytest.mark.parametrize(
    "name, parsed", [("NUMERIC(10,2)", DECIMAL), ("float(53)", FLOAT), ("varchar2(20 char)", STRING),
                     ("", None), ("(int)", None)]
)
def test_arguments_of_an_engine_name_are_left_aside(name, parsed):
    assert engine_type(name) == parsed


@pytest.mark.parametrize(
    "text, parsed",
    [
        # mapping types first, as the mapping language reads them
        ("decimal(10,2)", ColumnType("decimal", (10, 2))),
        ("set(string)", ColumnType("set", element=STRING)),
        ("timestamptz(3)", ColumnType("timestamptz", (3,))),
        ("json", JSON),
        # then engines' names (restore verification), and mapping bases with arguments the grammar refuses
        ("int4", INT),
        ("number", DECIMAL),
        ("double precision", FLOAT),
        ("decimal(50,2)", DECIMAL),
        ("set(nothing)", ColumnType("set")),
        ("binary_double", None),
        ("", None),
    ],
)
def test_type_of_reads_mapping_and_engine_names(text, parsed):
    assert type_of(text) == parsed


@pytest.mark.parametrize(
    "text, base",
    [("float8", "float"), ("real", "float"), ("FLOAT", "float"), ("int4", "int"), ("number", "decimal"),
     ("set(int)", "set"), ("list(float)", "list"), ("binary_double", ""), ("money", ""), ("", "")],
)
def test_checksums_read_the_parsed_base(text, base):
    assert column_base(text) == base
