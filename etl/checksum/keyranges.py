"""Buckets as ranges of the leading key column: the same-engine bucketing two pushdown sides agree on.

The canonical bucket of a row is a hash of its key encoding (docs/checksum.md §8), which any
side can compute but no index can find. When both sides can checksum by key range (two
PostgreSQL tables whose leading key column is NOT NULL and an integer or a text on both), bucket
i instead holds the rows whose leading key value k has thresholds[i-1] <= k < thresholds[i]: no
key hash per row, and the rows of a mismatched bucket are a range read. Row hashes are unchanged,
so a bucket's checksum is still exact, and every row falls in exactly one range whatever the
thresholds are: they decide only how many rows pass 2 reads per changed row.

A single integer key is cut into ranges of equal width between the sides' lowest and highest
keys. A text key, or a composite key, is cut at quantiles of the leading column drawn from a
sample of the source side (`KeyRanges.at_quantiles`). Text is compared as its first
`NAME_BYTES` bytes (PostgreSQL's `name`, cut at a character boundary) in code point order, which
is Python's `str` order and the "C" collation's over UTF-8: `width_bucket` binary-searches an
array of a fixed-length type such as `name`, but walks an array of `text` element by element
(PostgreSQL's arrayfuncs.c, `width_bucket_array_variable`; measured, 4,096 text thresholds cost
8 s per 1,000,000 rows, `name` 0.15 s). Keys sharing those bytes share a range, on both sides alike.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from etl.checksum.buckets import BucketChecksums
from etl.checksum.native import NativePlan
from etl.checksum.tolerances import Tolerances
from etl.records import TableSpec

KeySpan = tuple[int, int] | tuple[None, None]
"""(lowest key, highest key) of a side, or (None, None) when the side is empty."""

RangeKind = Literal["int", "text"]
"""What a side's leading key column holds, when it can be cut into ranges."""

NAME_BYTES = 63
"""The bytes of a text PostgreSQL's `name` keeps (NAMEDATALEN - 1 in a default build; a side checks
its server's, `PostgresTableSide.range_kind`)."""

KEYS_PER_RANGE = 250
MAX_RANGES = 4096
"""A wide key span is cut into one range per `KEYS_PER_RANGE` keys, up to `MAX_RANGES`: PostgreSQL
sums 4,096 ranges as fast as 256 (1,000,000 rows with a jsonb column: 2.0-2.25 s against
2.06-2.41 s per side; 65,536 ranges took 3.1 s), while pass 2 reads and hashes in Python every row
of a mismatched range: about 250 rows instead of 3,900 for one changed row in 1,000,000."""


def range_count(spans: Iterable[KeySpan], buckets: int) -> int:
    """How many ranges `validate_table` cuts the sides' key span into: at least `buckets`."""
    lows = [low for low, _high in spans if low is not None]
    highs = [high for _low, high in spans if high is not None]
    if not lows:
        return buckets
    return max(buckets, min(MAX_RANGES, -(-(max(highs) - min(lows) + 1) // KEYS_PER_RANGE)))


def ranges_for_rows(rows: int, buckets: int) -> int:
    """How many ranges a table of about `rows` rows is cut into at quantiles: at least `buckets`."""
    return max(buckets, min(MAX_RANGES, -(-rows // KEYS_PER_RANGE)))


@dataclass(frozen=True)
class KeyRanges:
    """Buckets 0..len(thresholds) of the leading key column `column`; bucket i holds the rows whose
    value k has thresholds[i-1] <= k < thresholds[i] (unbounded below for bucket 0, above for the
    last). `kind` says how the sides compare the values: as integers, or as text in code point order."""

    column: str
    thresholds: tuple[int, ...] | tuple[str, ...]
    kind: RangeKind = "int"

    @classmethod
    def spanning(cls, column: str, spans: Iterable[KeySpan], buckets: int) -> KeyRanges:
        """Equal-width ranges covering every side's keys, at most `buckets` of them."""
        lows = [low for low, _high in spans if low is not None]
        highs = [high for _low, high in spans if high is not None]
        if not lows:
            return cls(column, ())
        low, high = min(lows), max(highs)
        width = -(-(high - low + 1) // buckets)  # ceiling division: at least 1, as high >= low
        return cls(column, tuple(t for t in (low + i * width for i in range(1, buckets)) if t <= high))

    @classmethod
    def at_quantiles(cls, column: str, kind: RangeKind, quantiles: Iterable, ranges: int) -> KeyRanges | None:
        """Ranges cut at `quantiles` (the leading column's values at evenly spaced fractions of a
        sample, in order): at most `ranges` of them, or None when the column has too few distinct
        values for half as many (a leading column of a few values, whose ranges would each hold a
        large part of the table: hash buckets do better there)."""
        values = list(quantiles)
        step = len(values) / ranges
        picked = [values[int(i * step)] for i in range(1, ranges)] if values else []
        thresholds = tuple(dict.fromkeys(picked))  # in order, without repeats
        if len(thresholds) + 1 < ranges // 2:
            return None
        return cls(column, thresholds, kind)

    @property
    def buckets(self) -> int:
        return len(self.thresholds) + 1

    def bucket(self, row: dict) -> int:
        value = row[self.column]
        return bisect_right(self.thresholds, name_prefix(value) if self.kind == "text" else value)

    def bounds(self, wanted: Iterable[int]) -> list[tuple[int | str | None, int | str | None]]:
        """The key ranges [low, high) of the `wanted` buckets, adjacent buckets merged; None is
        unbounded."""
        edges = (None, *self.thresholds, None)
        merged: list[tuple[int | str | None, int | str | None]] = []
        previous = None
        for bucket in sorted(wanted):
            if merged and previous == bucket - 1:
                merged[-1] = (merged[-1][0], edges[bucket + 1])
            else:
                merged.append((edges[bucket], edges[bucket + 1]))
            previous = bucket
        return merged


def name_prefix(text: str) -> str:
    """`text` as PostgreSQL's `text::name` makes it: its longest prefix of whole characters that
    fits in `NAME_BYTES` bytes of UTF-8 (`text_name` clips with `pg_mbcliplen`)."""
    data = text.encode()
    return text if len(data) <= NAME_BYTES else data[:NAME_BYTES].decode(errors="ignore")


@runtime_checkable
class KeyRangeSide(Protocol):
    """A pushdown side that can also checksum and fetch by key range."""

    def range_kind(self, spec: TableSpec, tolerances: Tolerances, *, native: NativePlan | None = None
                   ) -> RangeKind | None:
        """What the leading key column holds ("int": an integer, "text": a text compared by its
        code points), or None when it cannot be cut into ranges: it may be NULL, is of another
        type, a tolerance changes its strings, or the rows cannot be hashed where they live
        (canonically, or by `native`)."""

    def key_span(self, spec: TableSpec, tolerances: Tolerances, *, native: NativePlan | None = None
                 ) -> KeySpan | None:
        """The side's lowest and highest key, or None when its key is not one NOT NULL integer
        column or its rows cannot be hashed where they live (canonically, or by `native`)."""

    def key_quantiles(self, spec: TableSpec, tolerances: Tolerances, buckets: int) -> KeyRanges | None:
        """Ranges of the leading key column cut at quantiles of a sample of this side's rows (at
        least `buckets` of them, more for a large table, `ranges_for_rows`), or None when the side
        cannot sample itself or the column has too few distinct values."""

    def range_checksums(self, spec: TableSpec, ranges: KeyRanges, tolerances: Tolerances, *,
                        native: NativePlan | None = None) -> BucketChecksums:
        """Per key range (count, sum of row hashes mod 2^128: canonical ones, or the engine's own
        that both sides agreed on, `native`)."""

    def rows_in_ranges(
        self, spec: TableSpec, ranges: KeyRanges, wanted: frozenset[int], tolerances: Tolerances
    ) -> Iterable[dict]:
        """The rows of the `wanted` key ranges only."""
