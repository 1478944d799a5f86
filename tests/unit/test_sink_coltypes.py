"""Column type names of the mapping language, as both sinks read them."""

import pytest

from etl.coltypes import ColumnType, parse_type
from etl.errors import MappingError


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("string", ColumnType("string")),
        ("decimal(10,2)", ColumnType("decimal", (10, 2))),
        ("timestamptz(6)", ColumnType("timestamptz", (6,))),
        ("list(int)", ColumnType("list", element=ColumnType("int"))),
        ("set<string>", ColumnType("set", element=ColumnType("string"))),
        ("JSON", ColumnType("json")),
    ],
)
def test_parse(text, parsed):
    assert parse_type(text) == parsed


@pytest.mark.parametrize("text", ["varchar", "decimal(a,b)", "list(json)", ""])
def test_unknown_types_are_mapping_errors(text):
    with pytest.raises(MappingError):
        parse_type(text)
