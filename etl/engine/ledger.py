"""The ledger of an incremental job: which target rows each source record made, so that when the
record is deleted, filtered out, rejected or shrinks (an array with fewer elements), every row it
made before and makes no longer is deleted, in every target.

A delete event carries only the record's key, and a DynamoDB item made from an array element has a
key no delete event can recompute; so the keys are kept, per source key, in the state store
(`StateStore.ledger_*`). Rows of child tables a sink replaces with their parent (PostgreSQL) are
not kept: deleting or rewriting the parent replaces them.

Order, per batch: the sinks write the new rows, then the rows no longer made are deleted, then the
ledger is saved, then the checkpoint or change position. A crash between any two steps leaves the
ledger at or behind the targets, and replaying the batch deletes and writes the same rows again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from etl.errors import EtlError
from etl.records import Json, Partition, TableRows, TableSpec
from etl.sinks.base import Sink
from etl.sources.sqltypes import decode_key, encode_key
from etl.state.base import StateStore

if TYPE_CHECKING:
    from etl.job import Job
    from etl.mapping import CompiledMapping

PAGE = 1000
"""Ledger entries read at a time when looking for records the source no longer has."""


@dataclass(frozen=True)
class Settled:
    """What applying one batch to the ledger did."""

    rows_deleted: int
    """Target rows deleted because their record no longer makes them."""


class Ledger:
    """The ledger of one source table of a job, with the sinks and table specs of its mapping."""

    def __init__(self, store: StateStore, job: str, table: str, specs: Sequence[TableSpec],
                 sinks: Mapping[str, Sink], *, mark: str | None = None) -> None:
        self.store, self.job, self.table = store, job, table
        self.sinks = sinks
        self.mark = mark
        """Written into every entry this ledger saves: a re-read marks what it saw (etl/engine/catchup.py)."""
        self._specs = {f"{spec.target}.{spec.table}": spec for spec in specs
                       if not (spec.parent is not None and _replaces_children(sinks[spec.target]))}

    def settle(self, keys: Mapping[str, Json], made: Mapping[tuple[str, str], TableRows],
               unmade: Iterable[str] = ()) -> Settled:
        """Record what the records of one batch made, after the sinks wrote it, and delete what they
        made before and no longer make.

        `keys`: source key text -> the source's `key_of` JSON of every record of the batch that is
        now at the source (written, filtered or rejected: a record with no rows keeps no entry);
        `made`: the rows written, by (target, table), each with its record's key text; `unmade`: key
        texts of records deleted at the source or refused by a sink (their rows must all go)."""
        now: dict[str, dict[str, list]] = {}
        for (target, table), rows in made.items():
            name = f"{target}.{table}"
            spec = self._specs.get(name)
            if spec is None:
                continue
            for row, source_key in zip(rows.rows, rows.source_keys, strict=True):
                now.setdefault(source_key, {}).setdefault(name, []).append(
                    encode_key([row.get(column) for column in spec.key]))
        gone = set(unmade)
        touched = [*keys, *gone]
        before = self.store.ledger_get(self.job, self.table, touched) if touched else {}
        stale: dict[str, list[list]] = {}
        entries: dict[str, Json | None] = {}
        for key_text in touched:
            rows_now = {} if key_text in gone else now.get(key_text, {})
            for name, old in (before.get(key_text) or {}).get("r", {}).items():
                kept = {_hashable(key) for key in rows_now.get(name, [])}
                stale.setdefault(name, []).extend(key for key in old if _hashable(key) not in kept)
            if rows_now:
                made_now = {name: _unique(rows) for name, rows in rows_now.items()}
                entry = {"k": keys.get(key_text), "r": made_now}
                if self.mark is not None:
                    entry["m"] = self.mark
                entries[key_text] = entry
            elif key_text in before:
                entries[key_text] = None
        deleted = self._delete(stale)
        if entries:
            self.store.ledger_put(self.job, self.table, entries)
        return Settled(deleted)

    def entries(self) -> Iterator[list[tuple[str, Json]]]:
        """Every entry, a page at a time."""
        after: str | None = None
        while True:
            page, after = self.store.ledger_page(self.job, self.table, after, PAGE)
            if page:
                yield page
            if after is None:
                return

    def forget(self, key_texts: Sequence[str]) -> Settled:
        """Delete every row the records of `key_texts` made, and their entries."""
        return self.settle({}, {}, key_texts)

    def _delete(self, stale: dict[str, list[list]]) -> int:
        deleted = 0
        for name, keys in stale.items():
            if not keys:
                continue
            spec = self._specs.get(name)
            if spec is None:
                raise EtlError(f"table {self.table}: its ledger names target table {name}, which its mapping "
                               "no longer writes; rows of it cannot be deleted",
                               hint="run with --full-refresh after changing which tables a mapping writes")
            rows = [dict(zip(spec.key, decode_key(key), strict=True)) for key in _unique(keys)]
            deleted += self.sinks[spec.target].delete(spec, rows)
        return deleted


def _replaces_children(sink: Sink) -> bool:
    """Whether writing or deleting a parent row replaces its child rows in this sink."""
    return bool(getattr(sink, "replaces_children", False))


def _hashable(key: list) -> str:
    return json.dumps(key, sort_keys=True)


def _unique(keys: list[list]) -> list[list]:
    return list({_hashable(key): key for key in keys}.values())


def ledger_of(job: Job, store: StateStore, partition: Partition, mapping: CompiledMapping,
              sinks: Mapping[str, Sink], marks: Mapping[str, str]) -> Ledger | None:
    """The ledger a partition's worker keeps: only for incremental jobs (`incremental: true`)."""
    if not job.incremental:
        return None
    key = f"{partition.source}.{partition.table}"
    return Ledger(store, job.name, key, mapping.tables, sinks, mark=marks.get(key))
