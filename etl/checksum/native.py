"""Same-engine row hashes: two sides on one engine hash rows with the engine's own hash functions.

The canonical row hash (MD5 of the canonical encoding, §8 of docs/checksum.md) lets any side be
compared with any other, but building the encoding and its MD5 is most of a SQL checksum's cost.
Two sides of the same engine can instead hash each column with the engine's own hash function of
its type, where that function is exact under the canonical comparison (equal values hash alike,
and values the canonical encoding tells apart almost never do). Such row hashes are meaningful
only between those two sides: both must hash every column the same way (`NativePlan.agree`), and
a probe value shows that both servers' hash functions give the same results.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from etl.checksum.tolerances import Tolerances
from etl.records import TableSpec

NATIVE_BUCKET = "__etl_native_bucket"
"""The field a side's rows carry their hash bucket in when the buckets are the engine's own hashes
of the key (no other side could recompute them)."""


@dataclass(frozen=True)
class NativeHashing:
    """What one side can hash with its engine's functions."""

    engine: str
    """The engine and the hash of a fixed probe row on this server: two sides agree only when equal."""
    classes: Mapping[str, str | None]
    """Spec column -> its hash class (columns of one class hash equal values alike), or None for a
    column hashed through its canonical encoding instead."""


@dataclass(frozen=True)
class NativePlan:
    """How both sides hash a table's rows: `native` columns by their value, the others by their
    canonical encoding."""

    native: frozenset[str]

    @classmethod
    def agree(cls, sides: tuple[NativeHashing | None, NativeHashing | None]) -> NativePlan | None:
        """The plan both sides can follow, or None when either cannot hash natively or their servers'
        hash functions differ. A column is hashed by value only when both sides put it in one class."""
        first, second = sides
        if first is None or second is None or first.engine != second.engine:
            return None
        if set(first.classes) != set(second.classes):
            return None
        return cls(frozenset(name for name, kind in first.classes.items()
                             if kind is not None and kind == second.classes[name]))


@runtime_checkable
class NativeHashSide(Protocol):
    """A pushdown side whose engine can hash rows itself (its `range_checksums`, `bucket_checksums`
    and `rows_in_buckets` then take `native=`)."""

    def native_hashing(self, spec: TableSpec, tolerances: Tolerances) -> NativeHashing | None:
        """The side's native hashing of `spec`'s columns, or None when it has none."""
