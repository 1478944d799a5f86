"""The partition worker: read -> map -> write every sink -> flush dead letters -> checkpoint.

The order is the whole point. A batch's checkpoint is saved only after every sink returned from
`write` (durable) and the dead-letter store flushed its rejects, so a crash at any moment
leaves the checkpoint at or behind what the targets hold; sinks are idempotent, so replaying
the batches after the checkpoint changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, cast

from etl.engine import faults
from etl.engine.accounting import Counts, count_reasons
from etl.engine.control import RunControl
from etl.engine.ledger import Ledger
from etl.engine.mapcheck import SourceFit, against_first_read
from etl.engine.prefetch import Prefetcher
from etl.engine.turns import Turn
from etl.errors import EtlError
from etl.mapping import CompiledMapping
from etl.mapping.reads import ReadPath, present
from etl.records import Batch, Json, Partition, Reject, TableRows
from etl.sinks.base import Sink
from etl.sources.base import Source
from etl.state.base import Checkpoint, StateStore

log = logging.getLogger(__name__)


class DeadLetters(Protocol):
    """Where rejects go (`etl.sinks.deadletter`); `flush` returns once they are durable."""

    def add(self, rejects: Sequence[Reject]) -> int: ...

    def flush(self) -> None: ...


class BatchMapping(Protocol):
    """The parts of `etl.mapping.CompiledMapping` the worker uses."""

    fields: list[str] | None

    @property
    def reads(self) -> Sequence[ReadPath]:
        """Source paths the mapping reads; the worker notes which of them the records have."""

    def apply(self, records: list[dict], key_text, *, source_table: str = ""): ...


@dataclass
class PartitionWork:
    """One partition to run, with where its last run stopped."""

    partition: Partition
    resume_after: Json = None
    counts: Counts = field(default_factory=Counts)
    """Cumulative counts from the checkpoint (zero for a fresh partition)."""
    present: frozenset[str] = frozenset()
    """Ids of the mapping's reads (`ReadPath.id`) that earlier runs of this partition found in a record."""
    check_sample: int = 0
    """When not 0, the first partition of a schemaless table read from its start: the table's
    mapping is checked against that many of its first records (`etl.engine.mapcheck`)."""
    empty_at_start: dict[str, frozenset[str]] = field(default_factory=dict)
    """Per target, its child tables that held no row when this run began (`Sink.prepare`)."""


@dataclass
class PartitionOutcome:
    partition: str
    table: str
    """`source.table`."""
    counts: Counts
    """Cumulative counts, including earlier runs of this partition."""
    run: Counts
    """What this run added."""
    done: bool
    """The partition was read to its end."""
    batches: int
    started: float
    """Wall-clock time (time.time()) the partition started in this run."""
    seconds: float
    warnings: dict[str, int] = field(default_factory=dict)
    """What the source counted in its `warnings` while reading this partition in this run
    (precision loss, a snapshot fallback...)."""
    present: frozenset[str] = frozenset()
    """Ids of the mapping's reads (`ReadPath.id`) some record of this partition had, earlier runs
    included (kept in the checkpoint's `extra["present"]`); see `etl.engine.seen`."""
    rows_deleted: int = 0
    """Target rows this run deleted because their records no longer make them (incremental jobs)."""
    fit: SourceFit | None = None
    """What checking the table's mapping against its first records found (`PartitionWork.check_sample`)."""


def table_key(partition: Partition) -> str:
    return f"{partition.source}.{partition.table}"


class PartitionWorker:
    """Runs partitions of one source table; one instance per thread or task (it owns connections)."""

    def __init__(
        self,
        *,
        job: str,
        source: Source,
        mapping: BatchMapping,
        sinks: Mapping[str, Sink],
        dead_letters: DeadLetters,
        store: StateStore | None,
        control: RunControl,
        prefetch: int = 2,
        ledger: Ledger | None = None,
    ) -> None:
        self.job = job
        self.source = source
        self.mapping = mapping
        self.sinks = sinks
        self.dead_letters = dead_letters
        self.store = store
        """None for `--limit` runs, which leave no checkpoint behind."""
        self.control = control
        self.prefetch = prefetch
        self.ledger = ledger
        """Kept for incremental jobs: what each record wrote, so its deletes reach every row."""
        self.rows_deleted = 0
        """Target rows this worker deleted because their records no longer make them."""

    def run(self, work: PartitionWork, turn: Turn | None = None) -> PartitionOutcome:
        """Read, map, write and checkpoint the partition; with a `turn` (the local executor) it
        starts reading at once and writes when the turn comes."""
        partition = work.partition
        key = table_key(partition)
        warned = Counter(getattr(self.source, "warnings", {}))
        counts = work.counts.copy()
        self._present = set(work.present)
        self._pending = [read for read in self.mapping.reads if read.id not in self._present]
        run = Counts()
        batches = 0
        position = work.resume_after
        fit = None
        reader = Prefetcher(
            self.source.read(partition, resume_after=work.resume_after, fields=self.mapping.fields),
            self.control, depth=self.prefetch, name=partition.id,
            on_end=turn.read_ended.set if turn is not None else None,
        )
        try:
            if turn is not None:
                turn.wait(self.control)
            started_at, started = time.time(), time.monotonic()
            for batch in reader:
                if work.check_sample and fit is None:
                    fit = self._check_mapping(partition, batch.records, work.check_sample)
                try:
                    delta = self._commit(partition, batch, counts)
                finally:
                    self.control.release_slot()
                position = batch.resume_after
                run.add(delta)
                batches += 1
                self.control.committed(key, delta)
                if self.control.limit_reached(key):
                    break
            else:
                if not reader.stopped:
                    if work.check_sample and fit is None:  # the partition is empty
                        fit = self._check_mapping(partition, [], work.check_sample)
                    self._save(partition, position, counts, done=True)
        finally:
            reader.abandon()
        done = not reader.stopped and not self.control.limit_reached(key)
        warnings = dict(Counter(getattr(self.source, "warnings", {})) - warned)
        return PartitionOutcome(partition.id, key, counts, run, done and self.store is not None,
                                batches, started_at, time.monotonic() - started, warnings,
                                frozenset(self._present), self.rows_deleted, fit)

    def _check_mapping(self, partition: Partition, first: list[dict], size: int) -> SourceFit:
        """The table's mapping checked against the first records of its first partition, before
        any of them is written."""
        return against_first_read(cast(CompiledMapping, self.mapping), first, size, table_key(partition),
                                  lambda n: self.source.sample(partition.table, n))

    def _commit(self, partition: Partition, batch: Batch, counts: Counts) -> Counts:
        """Map and write one batch everywhere, then checkpoint it; returns what it added."""
        faults.reach("read", partition.id)
        key = table_key(partition)
        records = batch.records
        allowed = self.control.allowance(key, len(records))
        if allowed < len(records):
            records = records[:allowed]
        source_rejects = list(batch.rejects)
        if batch.deletes and self.ledger is None:
            log.warning("%s: %d keys were deleted at the source before the position this batch reads at "
                        "(e.g. during a dump); they are not loaded, and rows of them that earlier runs "
                        "wrote are left in the targets (`incremental: true` keeps the ledger that finds "
                        "them)", partition.id, len(batch.deletes))

        def key_text(record: dict) -> str:
            return self.source.key_text(partition.table, record)

        mapped = self.mapping.apply(records, key_text, source_table=partition.table)
        by_target: dict[str, dict[str, TableRows]] = {}
        for (target, table), rows in mapped.rows.items():
            by_target.setdefault(target, {})[table] = rows
        rows_written: dict[str, int] = {}
        load_rejects: list[Reject] = []
        for target, tables in by_target.items():
            result = self.sinks[target].write(tables)
            faults.reach("write", partition.id)
            for table, loaded in result.loaded.items():
                rows_written[f"{target}.{table}"] = rows_written.get(f"{target}.{table}", 0) + loaded
            load_rejects.extend(result.rejects)
        rejects = source_rejects + list(mapped.rejects) + load_rejects
        if rejects:
            if getattr(self.dead_letters, "keeps_raw", False):
                keyed = getattr(self.mapping, "keyed", None)  # the key text rejects carry
                rejects = _with_raw(rejects, records, keyed(key_text) if keyed else key_text)
            self.dead_letters.add(rejects)
            self.dead_letters.flush()
        keys_with_rows = {k for rows in mapped.rows.values() for k in rows.source_keys}
        load_rejected = {r.source_key for r in load_rejects}
        if self.ledger is not None:
            self._settle(partition.table, records, mapped.rows, batch.deletes, load_rejected, key_text)
        delta = Counts(
            extracted=len(records) + len(source_rejects),
            loaded=len(keys_with_rows - load_rejected),
            rejected=len(source_rejects) + len(mapped.rejects) + len(load_rejected),
            filtered=mapped.filtered,
            rows=rows_written,
            reasons=count_reasons(r.reason for r in rejects),
        )
        counts.add(delta)
        self._note_present(records)
        self._save(partition, batch.resume_after, counts, done=False)
        faults.reach("batch", partition.id)
        return delta

    def _settle(self, table: str, records: list[dict], made: dict[tuple[str, str], TableRows],
                deletes: list[dict], refused: set[str], key_text: Callable[[dict], str]) -> None:
        """Bring the ledger up to date with one written batch: rows the batch's records made before and
        make no longer (shrunk arrays, changed keys, records now filtered out, rejected or deleted)
        are deleted from the targets.

        The ledger is keyed by the source's own key text; rows and rejects carry the mapping's
        (`keyed`: a key field declared PII is transformed), translated back here record by record."""
        assert self.ledger is not None
        key_of = getattr(self.source, "key_of", None)
        keyed = getattr(self.mapping, "keyed", None)
        shown = keyed(key_text) if keyed is not None else key_text
        keys: dict[str, Json] = {}
        own: dict[str, str] = {}
        for record in records:
            text = key_text(record)
            keys[text] = None if key_of is None else key_of(table, record)
            seen = own.setdefault(shown(record), text)
            if seen != text:
                raise EtlError(f"table {table}: the PII transform of its key gives two records the same "
                               f"key text ({shown(record)}); the ledger would mix their rows",
                               hint="use a key transform that keeps keys apart (hmac) for incremental jobs")
        if own and any(shown_text != text for shown_text, text in own.items()):
            made = {name: TableRows(rows.rows, [own[k] for k in rows.source_keys])
                    for name, rows in made.items()}
            refused = {own.get(k, k) for k in refused}
        gone = [key_text(key) for key in deletes] + sorted(refused)
        self.rows_deleted += self.ledger.settle(keys, made, gone).rows_deleted

    def _note_present(self, records: list[dict]) -> None:
        """Which reads not yet found some record of the batch has: a lookup or two per such read."""
        if self._pending and records:
            found = present(self._pending, records)
            if found:
                self._present |= found
                self._pending = [read for read in self._pending if read.id not in found]

    def _save(self, partition: Partition, resume_after: Json, counts: Counts, *, done: bool) -> None:
        if self.store is None:
            return
        self.store.save_checkpoint(self.job, Checkpoint(
            partition=partition.id, resume_after=resume_after, done=done,
            counts=counts.to_checkpoint(),
            extra={"reasons": dict(counts.reasons), "present": sorted(self._present)},
        ))


def _with_raw(rejects: list[Reject], records: list[dict], key_text: Callable[[dict], str]) -> list[Reject]:
    """The rejects with the source records they came from (by source key), for a dead-letter store
    that seals raw records; an extract reject has no record."""
    by_key = {key_text(record): record for record in records}
    return [reject if reject.stage == "extract" else replace(reject, raw=by_key.get(reject.source_key))
            for reject in rejects]
