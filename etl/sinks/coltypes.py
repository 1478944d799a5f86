"""Parse the mapping language's column type names (`decimal(10,2)`, `timestamptz(6)`, `list(int)`).

Both sinks derive their physical types from these; keeping the parser in one place means the
DynamoDB attribute type and the PostgreSQL column type of a column always agree on what it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from etl.errors import MappingError

KNOWN = {
    "string", "int", "decimal", "float", "bool", "date", "time", "timestamp", "timestamptz",
    "uuid", "bytes", "json", "list", "set",
}
SCALARS = KNOWN - {"json", "list", "set"}
_TYPE = re.compile(r"^\s*([a-z]+)\s*(?:[(<\[]\s*([^)>\]]*?)\s*[)>\]])?\s*$")


@dataclass(frozen=True)
class ColumnType:
    """A parsed column type: its base name plus either numeric arguments or an element type."""

    name: str
    args: tuple[int, ...] = ()
    """Numeric arguments: (precision, scale) of decimal, (precision,) of timestamps, (length,) of string."""
    element: ColumnType | None = None
    """Element type of `list(...)`/`set(...)`; None when unspecified (any JSON-like value)."""

    @property
    def is_timestamp(self) -> bool:
        return self.name in ("timestamp", "timestamptz")


def parse_type(text: str) -> ColumnType:
    """Parse a type name; raise MappingError naming the text when it is not one we know."""
    match = _TYPE.match(text.lower())
    if not match or match.group(1) not in KNOWN:
        raise MappingError(
            f"unknown column type {text!r}",
            hint="use one of: " + ", ".join(sorted(KNOWN)) + " (with arguments where they apply)",
        )
    name, inner = match.group(1), match.group(2)
    if not inner:
        return ColumnType(name)
    if name in ("list", "set"):
        element = parse_type(inner)
        if element.name not in SCALARS:
            raise MappingError(f"column type {text!r}: elements of a {name} must be scalars")
        return ColumnType(name, element=element)
    try:
        args = tuple(int(part) for part in inner.split(","))
    except ValueError:
        raise MappingError(f"column type {text!r}: arguments must be whole numbers") from None
    return ColumnType(name, args=args)
