"""Value types shared by every section of a job file.

Pydantic's lax mode reads `true` as 1 and `false` as 0 wherever an integer is expected, so
`parallelism: true` or `partitions: yes` would pass as numbers. `Integer` refuses booleans and
otherwise converts as pydantic does (`"4"` from a `${env:...}` reference still reads as 4).
Every count, size, port or timeout in a job file's settings is an `Integer`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError


def refuse_boolean(value: object) -> object:
    """A boolean where a number is meant: `expected an integer` (the job-file message adds the value)."""
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    return value


Integer = Annotated[int, BeforeValidator(refuse_boolean)]
"""An integer setting that a YAML boolean (`true`, `yes`, `on`) never satisfies."""


DESCRIBED = "value_described"
"""Error type of a message that already says what is wrong with the value: the job-file message
does not add `got <value>` after it (etl/job/problems.py)."""


def described(message: str) -> PydanticCustomError:
    """A validation error whose message needs no `got <value>` (e.g. it names one part of a URI)."""
    return PydanticCustomError(DESCRIBED, message)
