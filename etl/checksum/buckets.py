"""Bucketed, order-independent checksums: per bucket (row count, sum of row hashes mod 2^128).

A sum, unlike XOR, does not cancel two equal rows, and it can be updated and merged in any
order, so partitions are checksummed in parallel (even on other machines) and merged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from etl.checksum.rowhash import RowHasher
from etl.checksum.tolerances import Tolerances
from etl.records import TableSpec

MODULUS = 1 << 128


@dataclass
class BucketChecksums:
    """Per-bucket (count, hash sum) of one table side. `counts[i]`/`sums[i]` belong to bucket i."""

    buckets: int = 256
    counts: list[int] = field(default_factory=list)
    sums: list[int] = field(default_factory=list)
    hasher: RowHasher | None = field(default=None, repr=False, compare=False)
    """Set by `for_table`; needed only by `add(row)`."""

    @classmethod
    def for_table(
        cls, spec: TableSpec, *, buckets: int = 256, tolerances: Tolerances | None = None
    ) -> BucketChecksums:
        """An empty accumulator that hashes rows of `spec` with `tolerances`."""
        return cls(buckets, hasher=RowHasher(spec, tolerances))

    def add(self, row: dict) -> None:
        """Hash one row (a dict in the target model) into its bucket."""
        if self.hasher is None:
            raise ValueError("add(row) needs an accumulator made by BucketChecksums.for_table")
        bucket, row_hash = self.hasher.bucket_and_hash(row, self.buckets)
        self.counts[bucket] += 1
        self.sums[bucket] = (self.sums[bucket] + row_hash) % MODULUS

    def add_all(self, rows: Iterable[dict]) -> BucketChecksums:
        for row in rows:
            self.add(row)
        return self

    def __post_init__(self) -> None:
        if self.buckets < 1:
            raise ValueError("buckets must be at least 1")
        if not self.counts:
            self.counts = [0] * self.buckets
        if not self.sums:
            self.sums = [0] * self.buckets
        if len(self.counts) != self.buckets or len(self.sums) != self.buckets:
            raise ValueError(f"expected {self.buckets} counts and sums")

    def add_hash(self, bucket: int, row_hash: int) -> None:
        self.counts[bucket] += 1
        self.sums[bucket] = (self.sums[bucket] + row_hash) % MODULUS

    def merge(self, other: BucketChecksums) -> BucketChecksums:
        """Add `other` (e.g. another partition of the same table) into this accumulator."""
        if other.buckets != self.buckets:
            raise ValueError(f"cannot merge {other.buckets} buckets into {self.buckets}")
        for i in range(self.buckets):
            self.counts[i] += other.counts[i]
            self.sums[i] = (self.sums[i] + other.sums[i]) % MODULUS
        return self

    @property
    def rows(self) -> int:
        return sum(self.counts)

    def mismatched(self, other: BucketChecksums) -> list[int]:
        """Buckets whose count or sum differ from `other`'s."""
        if other.buckets != self.buckets:
            raise ValueError(f"cannot compare {self.buckets} buckets with {other.buckets}")
        return [
            i
            for i in range(self.buckets)
            if self.counts[i] != other.counts[i] or self.sums[i] != other.sums[i]
        ]

    def to_dict(self) -> dict:
        return {"buckets": self.buckets, "counts": self.counts, "sums": [f"{s:032x}" for s in self.sums]}

    @classmethod
    def from_dict(cls, data: dict) -> BucketChecksums:
        return cls(data["buckets"], list(data["counts"]), [int(s, 16) for s in data["sums"]])

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> BucketChecksums:
        return cls.from_dict(json.loads(text))
