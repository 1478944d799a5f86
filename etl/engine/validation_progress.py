"""Validation's progress, for a display: rows read on each side as validation reads them.

Validation runs deep below the command (run -> validate -> checksum passes on a thread pool), so it
announces progress to whoever watches (`watching`) instead of taking a callback through every layer.
Only the first pass is announced: the source read and mapped once, each target read back once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

Listener = Callable[[str, str, int], None]
"""Called with the side (`source` or `target`), the table (`source.table` or `target.table`) and
how many more rows that side has read."""

SOURCE, TARGET = "source", "target"
EVERY_ROWS = 1000
"""Target rows read back between announcements."""

_lock = threading.Lock()
_listeners: list[Listener] = []

T = TypeVar("T")


@contextmanager
def watching(listener: Listener) -> Iterator[None]:
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


def advanced(side: str, table: str, rows: int) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(side, table, rows)


def counted(rows: Iterable[T], side: str, table: str) -> Iterator[T]:
    """`rows`, announcing every EVERY_ROWS of them (and the rest at the end)."""
    pending = 0
    for row in rows:
        yield row
        pending += 1
        if pending == EVERY_ROWS:
            advanced(side, table, pending)
            pending = 0
    if pending:
        advanced(side, table, pending)
