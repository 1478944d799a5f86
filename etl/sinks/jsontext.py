"""JSON text for canonical Python values, without losing anything on the way.

`json.dumps` would turn a Decimal into an error (or, with a float fallback, into a rounded float).
Here a Decimal is written with all its digits — as a JSON number for PostgreSQL jsonb (whose
numbers are arbitrary-precision numerics) or as a string for dead letters, where the reader must
get the exact text back.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import uuid
from decimal import Decimal
from typing import Any

_string = json.JSONEncoder(ensure_ascii=False).encode
_fast = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def dumps(value: Any, *, decimals_as_strings: bool = False) -> str:
    """JSON text of `value`; raises ValueError for what JSON cannot hold exactly (NaN, Infinity).

    With `decimals_as_strings` (dead letters) nothing raises: Decimals, NaN and Infinity become
    their exact text, and a value of a type JSON has no form for becomes its `str()`.
    """
    try:  # the C encoder, for the common case of nothing but JSON's own types
        return _fast(value)
    except (TypeError, ValueError):
        pass
    parts: list[str] = []
    _write(value, parts, decimals_as_strings, "")
    return "".join(parts)


def _write(value: Any, out: list[str], decimals_as_strings: bool, path: str) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        if (math.isnan(value) or math.isinf(value)) and decimals_as_strings:
            out.append(_string(repr(value)))
        elif math.isnan(value) or math.isinf(value):
            raise ValueError(f"{path or 'value'}: {value!r} has no JSON representation")
        else:
            out.append(repr(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            if decimals_as_strings:
                out.append(_string(str(value)))
                return
            raise ValueError(f"{path or 'value'}: Decimal {value} has no JSON representation")
        out.append(_string(str(value)) if decimals_as_strings else str(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, dict):
        out.append("{")
        for index, (name, member) in enumerate(value.items()):
            if index:
                out.append(",")
            out.append(_string(str(name)))
            out.append(":")
            _write(member, out, decimals_as_strings, f"{path}.{name}" if path else str(name))
        out.append("}")
    elif isinstance(value, list | tuple | set | frozenset):
        members = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        out.append("[")
        for index, member in enumerate(members):
            if index:
                out.append(",")
            _write(member, out, decimals_as_strings, f"{path}[{index}]")
        out.append("]")
    elif isinstance(value, bytes | bytearray | memoryview):
        out.append(_string(base64.b64encode(bytes(value)).decode("ascii")))
    elif isinstance(value, dt.datetime | dt.date | dt.time):
        out.append(_string(value.isoformat()))
    elif isinstance(value, uuid.UUID):
        out.append(_string(str(value)))
    elif isinstance(value, dt.timedelta):
        out.append(_string(str(value)))
    elif decimals_as_strings:
        out.append(_string(str(value)))
    else:
        raise ValueError(f"{path or 'value'}: a {type(value).__name__} has no JSON representation")
