"""Guards for reading the files a user hands in (backup histories, manifests, dump metadata).

Every malformed input becomes an `EtlError` naming the file (and the byte offset, line or field
where known) instead of a Python exception: unreadable or missing files, folders where a file is
expected, text that is not UTF-8, JSON that does not parse or nests too deeply, and values of the
wrong type.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from etl.errors import EtlError

_UTF16_BOMS = {b"\xff\xfe": "utf-16-le", b"\xfe\xff": "utf-16-be"}
"""Byte order marks of UTF-16 text: Windows PowerShell's `Out-File` and `>` write UTF-16LE with one."""


def read_text(path: str | Path, what: str, *, error: type[EtlError] = EtlError) -> str:
    """The file's text: UTF-8 (an optional BOM dropped), or UTF-16 when it starts with a UTF-16
    byte order mark."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as problem:
        raise error(f"cannot read {what} {path}: {problem.strerror or problem}") from None
    encoding, skip = _UTF16_BOMS.get(raw[:2], "utf-8-sig"), 2 if raw[:2] in _UTF16_BOMS else 0
    try:
        return raw[skip:].decode(encoding)
    except UnicodeDecodeError as problem:
        name = "UTF-16" if skip else "UTF-8"
        raise error(f"{path}: byte offset {problem.start + skip}: not {name} text",
                    hint=f"export the {what} as UTF-8") from None


def parse_json(text: str, path: str | Path, *, error: type[EtlError] = EtlError,
               object_pairs_hook: Any = None) -> Any:
    """JSON text of `path`, with line:column for syntax errors; too-deep nesting is refused.
    `object_pairs_hook` as json.loads takes it (e.g. `list` to keep every field in order)."""
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook)
    except json.JSONDecodeError as problem:
        raise error(f"{path}:{problem.lineno}:{problem.colno}: invalid JSON: {problem.msg}") from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply") from None


def load_json(path: str | Path, what: str, *, error: type[EtlError] = EtlError) -> Any:
    return parse_json(read_text(path, what, error=error), path, error=error)


def json_rows(data: Any, path: str | Path, what: str, *, error: type[EtlError] = EtlError) -> list[dict]:
    """`data` as a list of JSON objects, naming the first entry that is not one."""
    if not isinstance(data, list):
        raise error(f"{path}: expected a JSON list of {what} rows, found {type(data).__name__}")
    for number, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise error(f"{path}: row {number} is {type(row).__name__}, not an object of {what} columns")
    return data


def csv_rows(text: str, path: str | Path, *, error: type[EtlError] = EtlError) -> list[dict]:
    """CSV text with a header row as one dict per row (cells past the header under None)."""
    try:
        return list(csv.DictReader(text.splitlines()))
    except csv.Error as problem:
        raise error(f"{path}: not CSV text ({problem})") from None


def whole_number(value: Any, where: str, field: str, *, error: type[EtlError] = EtlError) -> int:
    """`value` (a number or its text) as an int; booleans, fractions, NaN, infinities and other
    types are refused naming `where` and `field`."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise error(f"{where}: {field} {value!r} is not a whole number")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise error(f"{where}: {field} {value!r} is not a whole number")
        return int(value)
    try:
        return int(value)
    except ValueError:
        raise error(f"{where}: {field} {value!r} is not a whole number") from None
