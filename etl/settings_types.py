"""Value types shared by every section of a job file.

Pydantic's lax mode reads `true` as 1 and `false` as 0 wherever an integer is expected, so
`parallelism: true` or `partitions: yes` would pass as numbers. `Integer` refuses booleans and
otherwise converts as pydantic does (`"4"` from a `${env:...}` reference still reads as 4).
Every count, size, port or timeout in a job file's settings is an `Integer`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator


def refuse_boolean(value: object) -> object:
    """A boolean where a number is meant: `expected an integer` (the job-file message adds the value)."""
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    return value


Integer = Annotated[int, BeforeValidator(refuse_boolean)]
"""An integer setting that a YAML boolean (`true`, `yes`, `on`) never satisfies."""
