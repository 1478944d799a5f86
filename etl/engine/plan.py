"""The plan of a run: which partitions of which source tables, and which of them this shard owns.

A plan is made once per job and kept in the state store, so that a resumed run continues the
very same key ranges even when a source would split its table differently today (new data,
sampled bounds). Only `--full-refresh` or a changed partition count makes a new plan.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from etl.errors import JobFileError, did_you_mean
from etl.records import Json, Partition

PLAN_STATE_KEY = "plan"
"""Name of the state-store value that holds the stored plan of a job."""


@dataclass(frozen=True)
class Shard:
    """`--shard K/N`: this process runs shard K (0-based, like AWS_BATCH_JOB_ARRAY_INDEX) of N."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match:
            raise JobFileError(
                f"--shard {text!r} is not of the form K/N",
                hint="give the shard index (0-based) and the number of shards, e.g. --shard 0/4",
            )
        index, count = int(match[1]), int(match[2])
        if count < 1 or not 0 <= index < count:
            raise JobFileError(
                f"--shard {text!r}: K must be between 0 and N-1 and N at least 1",
                hint=f"the shards of {count} are 0/{count} .. {max(count - 1, 0)}/{count}",
            )
        return cls(index, count)

    def owns(self, position: int) -> bool:
        """Partitions are dealt round-robin over the plan's stable order."""
        return position % self.count == self.index

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class TablePlan:
    """One source table: its mapping file and its partitions."""

    source: str
    table: str
    mapping: str
    """Mapping file path as written in the job file (relative to the job file's folder)."""
    requested: int
    """Partitions asked for in the job file (a source may return fewer for a small table)."""
    partitions: tuple[Partition, ...]

    @property
    def key(self) -> str:
        """`source.table`, the name reports and `--only` use."""
        return f"{self.source}.{self.table}"


@dataclass(frozen=True)
class Plan:
    """Tables x partitions of one job, in a stable order."""

    job: str
    tables: tuple[TablePlan, ...]
    shard: Shard | None = None
    owned: frozenset[str] = field(default_factory=frozenset)
    """Partition ids this process runs (all of them without a shard)."""

    def partitions(self) -> list[Partition]:
        """The partitions this process runs, in plan order."""
        return [p for t in self.tables for p in t.partitions if p.id in self.owned]

    def table(self, key: str) -> TablePlan:
        for table in self.tables:
            if table.key == key:
                return table
        raise KeyError(key)


def select_tables(available: Iterable[tuple[str, str]], only: Iterable[str] | None) -> list[tuple[str, str]]:
    """Apply `--only` to (source, table) pairs: each name is `table` or `source.table`; unknown names
    are errors."""
    pairs = list(available)
    if not only:
        return pairs
    chosen: set[tuple[str, str]] = set()
    for name in only:
        matches = [(s, t) for s, t in pairs if name in (t, f"{s}.{t}")]
        if not matches:
            names = [t for _, t in pairs] + [f"{s}.{t}" for s, t in pairs]
            raise JobFileError(
                f"--only {name!r}: no such source table in the job{did_you_mean(name, names)}",
                hint="the job's tables are " + ", ".join(f"{s}.{t}" for s, t in pairs),
            )
        chosen.update(matches)
    return [pair for pair in pairs if pair in chosen]


def key_range(source: object, partition: Partition) -> tuple[str | None, str | None]:
    """A partition's bounds as keys for people (`id=1001`: from inclusive, to exclusive; None:
    unbounded) where its source can say (`key_range`), else as the source encoded them."""
    described = getattr(source, "key_range", None)
    if described is not None:
        return described(partition)
    return tuple(  # type: ignore[return-value]
        None if bound is None else bound if isinstance(bound, str) else json.dumps(bound, default=str)
        for bound in (partition.lower, partition.upper))


def assign_shard(tables: Iterable[TablePlan], shard: Shard | None) -> frozenset[str]:
    """Ids of the partitions a shard owns; N shards together own every partition exactly once."""
    ids = [p.id for t in tables for p in t.partitions]
    if shard is None:
        return frozenset(ids)
    return frozenset(pid for position, pid in enumerate(ids) if shard.owns(position))


def stored_partitions(stored: Json, key: str, requested: int) -> tuple[Partition, ...] | None:
    """The partitions kept for `key` in the stored plan, if it was made with the same request."""
    if not isinstance(stored, Mapping):
        return None
    entry = stored.get(key)
    if not isinstance(entry, Mapping) or entry.get("requested") != requested:
        return None
    return tuple(Partition.from_json(text) for text in entry["partitions"])


def plan_to_state(tables: Iterable[TablePlan], previous: Json = None) -> dict[str, Json]:
    """The stored-plan value: previous entries kept (other tables, other shards), these replaced."""
    value: dict[str, Json] = dict(previous) if isinstance(previous, Mapping) else {}
    for table in tables:
        value[table.key] = {
            "requested": table.requested,
            "partitions": [p.to_json() for p in table.partitions],
        }
    return value
