"""Driver row -> record dict, by a function generated once per select-list width.

Every relational row becomes a record here, so this step sets the pace of extraction:
`dict(zip(names, row))` steps a zip iterator per value, while a dict display
`{k0: row[0], k1: row[1], ...}` builds the dict in one go and takes about half the time.
The generated text holds only positions and parameter names; the column names, which come
from the database catalog, are bound as arguments and never become code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

RecordMaker = Callable[[Sequence[Any]], dict[str, Any]]


@lru_cache(maxsize=64)
def _maker_factory(width: int) -> Callable[..., RecordMaker]:
    keys = ", ".join(f"k{i}" for i in range(width))
    items = ", ".join(f"k{i}: row[{i}]" for i in range(width))
    text = (
        f"def factory({keys}):\n"
        f"    def make_record(row):\n"
        f"        return {{{items}}}\n"
        f"    return make_record\n"
    )
    namespace: dict[str, Any] = {}
    exec(compile(text, f"<record maker, {width} columns>", "exec"), namespace)  # noqa: S102 - no catalog text
    return namespace["factory"]


def record_maker(names: Sequence[str]) -> RecordMaker:
    """A function taking a row (any sequence at least as long as `names`) to {name: value}."""
    return _maker_factory(len(names))(*names)
