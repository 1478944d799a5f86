"""Compare two sides of a table: bucket checksums first, then rows of mismatched buckets only.

Pass 1 reads both sides once (at the same time) and keeps only 2 x `buckets` counters. Pass 2
reads both sides again (at the same time) and holds only the rows of mismatched buckets, keyed
by key encoding, so memory grows with the differing buckets, not the table.

A side is a zero-argument callable returning a fresh iterable of rows. A side may also offer
pushdown (see `ChecksumSide`): its own `bucket_checksums` (e.g. computed in SQL) and
`rows_in_buckets` (only the rows of some buckets), which the validator then prefers. When both
sides can checksum by ranges of the same leading key column (`KeyRangeSide`), buckets are key
ranges instead of key hashes, so pass 2 reads only those ranges (the same-engine mode, keyranges.py).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from etl.checksum.buckets import BucketChecksums
from etl.checksum.canonical import MISSING, column_base
from etl.checksum.keyranges import KeyRanges, KeyRangeSide, range_count
from etl.checksum.native import NATIVE_BUCKET, NativeHashSide, NativePlan
from etl.checksum.results import Difference, FieldDifference, TableValidation
from etl.checksum.rowhash import RowHasher, bucket_of
from etl.checksum.tolerances import Tolerances
from etl.records import TableSpec

RowSource = Callable[[], Iterable[dict]]


class RefusedRowsFound(Exception):
    """A source side hashed where it lives holds a row its mapping would refuse (a value a cast
    refuses): its checksums cannot stand for the mapped rows, so the table is compared the Python
    way, where the mapping rejects that record. Found in the same scan that hashes the rows."""


@runtime_checkable
class ChecksumSide(Protocol):
    """A row source that can do part of the work where the rows live (optional pushdown)."""

    def __call__(self) -> Iterable[dict]: ...

    def bucket_checksums(
        self, spec: TableSpec, buckets: int, tolerances: Tolerances
    ) -> BucketChecksums | None:
        """The side's bucket checksums, identical to the Python path's, or None when it cannot
        (a column type or tolerance it does not support): the validator then hashes rows itself."""

    def rows_in_buckets(
        self, spec: TableSpec, wanted: frozenset[int], buckets: int, tolerances: Tolerances
    ) -> Iterable[dict]:
        """Rows whose bucket is in `wanted` (it may return more; extra rows are filtered out)."""


def checksum_side(
    side: RowSource, spec: TableSpec, *, buckets: int = 256, tolerances: Tolerances | None = None,
    native: NativePlan | None = None,
) -> BucketChecksums:
    """Bucket checksums of one side, pushed down when the side offers it; `native`: the engine's own
    row hashes both sides agreed on (native.py), for a `NativeHashSide`."""
    tolerances = tolerances or Tolerances()
    if native is not None:
        pushed = side.bucket_checksums(spec, buckets, tolerances, native=native)  # type: ignore[attr-defined]
        assert pushed is not None  # both sides' native_hashing promised it
        return pushed
    if isinstance(side, ChecksumSide):
        pushed = side.bucket_checksums(spec, buckets, tolerances)
        if pushed is not None:
            return pushed
    return BucketChecksums.for_table(spec, buckets=buckets, tolerances=tolerances).add_all(side())


def _rows_in(
    side: RowSource, spec: TableSpec, wanted: frozenset[int], buckets: int, tolerances: Tolerances
) -> Iterable[dict]:
    if isinstance(side, ChecksumSide):
        return side.rows_in_buckets(spec, wanted, buckets, tolerances)
    return side()


def _ordered_bits(value: float) -> int:
    """Doubles mapped to integers whose difference counts units in the last place."""
    bits = struct.unpack(">q", struct.pack(">d", value))[0]
    return bits if bits >= 0 else -(bits & 0x7FFF_FFFF_FFFF_FFFF)


def within_ulps(a: Any, b: Any, ulps: int) -> bool:
    """True when two float-column values are at most `ulps` apart (NaN equals only NaN)."""
    if not isinstance(a, float | int | Decimal) or not isinstance(b, float | int | Decimal):
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    x, y = float(a), float(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return abs(_ordered_bits(x) - _ordered_bits(y)) <= ulps


class _Drill:
    """Pass 2: classify the rows of mismatched buckets."""

    def __init__(
        self, spec: TableSpec, hasher: RowHasher, result: TableValidation, tolerances: Tolerances
    ) -> None:
        self.spec = spec
        self.hasher = hasher
        self.result = result
        self.float_columns = (
            {c.name for c in spec.columns if column_base(c.type) == "float"}
            if tolerances.float_ulps is not None
            else set()
        )
        self.ulps = tolerances.float_ulps or 0
        self.explained: set[int] = set()
        """Buckets where pass 2 found a difference or rows equal only within a tolerance."""

    def key(self, row: dict) -> dict[str, Any]:
        return {name: row.get(name, MISSING) for name in self.spec.key}

    def record(self, difference: Difference) -> None:
        self.explained.add(difference.bucket)
        if difference.kind == "missing":
            self.result.missing += 1
        elif difference.kind == "extra":
            self.result.extra += 1
        elif difference.kind == "duplicate":
            self.result.duplicates += 1
        else:
            self.result.changed += 1
        if len(self.result.differences) < self.result.max_differences:
            self.result.differences.append(difference)

    def compare(self, bucket: int, source: dict, target: dict) -> None:
        if self.hasher.row_hash(source) == self.hasher.row_hash(target):
            return
        source_codes = self.hasher.field_encodings(source)
        target_codes = self.hasher.field_encodings(target)
        fields = []
        for name, code in source_codes.items():
            if code == target_codes[name]:
                continue
            s, t = source.get(name, MISSING), target.get(name, MISSING)
            if name in self.float_columns and within_ulps(s, t, self.ulps):
                continue
            fields.append(FieldDifference(name, s, t))
        if fields:
            self.record(Difference("changed", self.key(source), bucket, tuple(fields)))
        else:
            self.explained.add(bucket)


def validate_table(
    spec: TableSpec,
    source_rows: RowSource,
    target_rows: RowSource,
    *,
    buckets: int = 256,
    tolerances: Tolerances | None = None,
    max_differences: int = 100,
    max_rows_held: int = 500_000,
    source_checksums: BucketChecksums | None = None,
    target_checksums: BucketChecksums | None = None,
    native_hashes: bool = True,
) -> TableValidation:
    """Prove `target_rows` equal `source_rows` (both in the target model) or list what differs.

    `source_checksums`/`target_checksums`: pass-1 results already accumulated (e.g. by the run
    engine while loading, merged over partitions); that side is then read only to drill down.
    Differences are counted in full; at most `max_differences` are listed. Pass 2 holds at most
    about `max_rows_held` rows, reading the sides once more per group of buckets beyond that.
    `native_hashes`: let two sides of one engine hash rows with its own functions (native.py); a
    bucket whose native sums differ while its rows compare equal is then settled by comparing the
    table again with the canonical hashes.
    """
    tolerances = tolerances or Tolerances()
    hasher = RowHasher(spec, tolerances)
    with ThreadPoolExecutor(2, thread_name_prefix="etl-checksum") as pool:
        # The two sides are read at once: their servers (or a server's two cores) work in parallel.
        ranges = native = None
        if source_checksums is None and target_checksums is None and native_hashes:
            native = _native_plan(spec, (source_rows, target_rows), tolerances, pool)
            ranges = _key_ranges(spec, (source_rows, target_rows), buckets, tolerances, pool, native)
        if ranges is not None:
            source_checksums, target_checksums = pool.map(
                lambda side: side.range_checksums(spec, ranges, tolerances, native=native),
                (source_rows, target_rows),
            )
        pending = [
            pool.submit(checksum_side, side, spec, buckets=buckets, tolerances=tolerances, native=native)
            for side, given in ((source_rows, source_checksums), (target_rows, target_checksums))
            if given is None
        ]
        if source_checksums is None:
            source_checksums = pending.pop(0).result()
        if target_checksums is None:
            target_checksums = pending.pop(0).result()
    mismatched = source_checksums.mismatched(target_checksums)
    result = TableValidation(
        table=spec.table,
        target=spec.target,
        rows_source=source_checksums.rows,
        rows_target=target_checksums.rows,
        buckets=source_checksums.buckets,
        mismatched_buckets=mismatched,
        tolerances=tolerances.active(),
        max_differences=max_differences,
        row_hashes="canonical" if native is None else "native",
    )
    if ranges is None and native is not None:

        def locate(key: bytes, row: dict) -> int:
            return row.pop(NATIVE_BUCKET)

        def fetch(side: RowSource, wanted: frozenset[int]) -> Iterable[dict]:
            # native plans come only from NativeHashSides (_native_plan), which have this method
            return side.rows_in_buckets(spec, wanted, buckets, tolerances, native=native)  # type: ignore[attr-defined]
    elif ranges is None:

        def locate(key: bytes, row: dict) -> int:
            return bucket_of(key, buckets)

        def fetch(side: RowSource, wanted: frozenset[int]) -> Iterable[dict]:
            return _rows_in(side, spec, wanted, buckets, tolerances)
    else:

        def locate(key: bytes, row: dict) -> int:
            return ranges.bucket(row)

        def fetch(side: RowSource, wanted: frozenset[int]) -> Iterable[dict]:
            # key ranges come only from sides that checksum in SQL (_key_ranges), which have this method
            return side.rows_in_ranges(spec, ranges, wanted, tolerances)  # type: ignore[attr-defined]

    for wanted in _rounds(mismatched, source_checksums, target_checksums, max_rows_held):
        _drill_down(
            spec,
            hasher,
            (source_rows, target_rows),
            (source_checksums, target_checksums),
            wanted,
            result,
            tolerances,
            locate,
            fetch,
        )
    if native is not None and result.unresolved_buckets:
        # Rows equal under the canonical comparison yet unequal native sums: a jsonb number written
        # with another scale (its text differs), or a side that changed between the passes.
        return validate_table(spec, source_rows, target_rows, buckets=buckets, tolerances=tolerances,
                              max_differences=max_differences, max_rows_held=max_rows_held,
                              native_hashes=False)
    return result


def _native_plan(
    spec: TableSpec, sides: tuple[RowSource, RowSource], tolerances: Tolerances, pool: ThreadPoolExecutor
) -> NativePlan | None:
    """The engine's own row hashes when both sides are of one engine and agree on them (native.py)."""
    if not all(isinstance(side, NativeHashSide) for side in sides):
        return None
    hashings = list(pool.map(lambda side: side.native_hashing(spec, tolerances), sides))
    return NativePlan.agree((hashings[0], hashings[1]))


def _key_ranges(
    spec: TableSpec,
    sides: tuple[RowSource, RowSource],
    buckets: int,
    tolerances: Tolerances,
    pool: ThreadPoolExecutor,
    native: NativePlan | None,
) -> KeyRanges | None:
    """Key-range buckets when both sides can checksum by ranges of the same leading key column (the
    same-engine mode, keyranges.py; at least `buckets` ranges, more for a large table), else None:
    hash buckets are used. A single integer key is cut into ranges of equal width between the
    sides' keys; a text or composite key at quantiles of a sample of the source side."""
    source, target = sides
    if not (isinstance(source, KeyRangeSide) and isinstance(target, KeyRangeSide)):
        return None
    kinds = list(pool.map(lambda side: side.range_kind(spec, tolerances, native=native), (source, target)))
    if kinds[0] is None or kinds[0] != kinds[1]:
        return None
    if kinds[0] == "int" and len(spec.key) == 1:
        spans = list(pool.map(lambda side: side.key_span(spec, tolerances, native=native), (source, target)))
        if any(span is None for span in spans):
            return None
        return KeyRanges.spanning(spec.key[0], spans, range_count(spans, buckets))
    return source.key_quantiles(spec, tolerances, buckets)


def _rounds(
    mismatched: list[int], source: BucketChecksums, target: BucketChecksums, max_rows_held: int
) -> Iterator[frozenset[int]]:
    """Mismatched buckets in groups holding at most `max_rows_held` rows (both sides, from the
    bucket counts) each, so that even two wholly different tables are compared in bounded memory;
    each group costs one more read of each side."""
    group: list[int] = []
    held = 0
    for bucket in mismatched:
        rows = source.counts[bucket] + target.counts[bucket]
        if group and held + rows > max_rows_held:
            yield frozenset(group)
            group, held = [], 0
        group.append(bucket)
        held += rows
    if group:
        yield frozenset(group)


def _drill_down(
    spec: TableSpec,
    hasher: RowHasher,
    sides: tuple[RowSource, RowSource],
    checksums: tuple[BucketChecksums, BucketChecksums],
    wanted: frozenset[int],
    result: TableValidation,
    tolerances: Tolerances,
    locate: Callable[[bytes, dict], int],
    fetch: Callable[[RowSource, frozenset[int]], Iterable[dict]],
) -> None:
    """Pass 2 for the `wanted` buckets: `fetch` reads a side's rows of (at least) those buckets,
    `locate` gives a row's bucket from its key encoding or the row."""
    drill = _Drill(spec, hasher, result, tolerances)

    def rows_of_wanted_buckets(side: RowSource) -> list[tuple[bytes, int, dict]]:
        selected = []
        for row in fetch(side, wanted):
            key = hasher.key_encoding(row)
            bucket = locate(key, row)
            if bucket in wanted:
                selected.append((key, bucket, row))
        return selected

    # Both sides' rows of the mismatched buckets are fetched at once; only those rows are held.
    with ThreadPoolExecutor(2, thread_name_prefix="etl-drill") as pool:
        source_rows, target_rows = pool.map(rows_of_wanted_buckets, sides)
    held: dict[bytes, tuple[int, dict]] = {}
    for key, bucket, row in source_rows:
        if key in held:
            drill.record(Difference("duplicate", drill.key(row), bucket, (), side="source"))
        held[key] = (bucket, row)
    seen: set[bytes] = set()
    for key, bucket, row in target_rows:
        if key in seen:
            drill.record(Difference("duplicate", drill.key(row), bucket, (), side="target"))
            continue
        seen.add(key)
        source = held.pop(key, None)
        if source is None:
            drill.record(Difference("extra", drill.key(row), bucket))
        else:
            drill.compare(bucket, source[1], row)
    for bucket, row in held.values():
        drill.record(Difference("missing", drill.key(row), bucket))
    for bucket in sorted(wanted - drill.explained):
        # Equal rows yet unequal checksums: a side changed between the two passes.
        result.unresolved_buckets += 1
        if len(result.differences) < result.max_differences:
            result.differences.append(
                Difference(
                    "bucket",
                    {},
                    bucket,
                    source_count=checksums[0].counts[bucket],
                    target_count=checksums[1].counts[bucket],
                )
            )
