"""Incremental runs: apply what changed at each source table since its stored position, deletes
included, so the targets catch up with a live source (docs/cutover.md is the runbook).

A table's position is taken before its full load reads it (`take_positions`) and saved after every
change batch is committed in every sink, the ledger and the dead letters: a run killed at any
moment resumes from the last saved position, and replaying changes is harmless (upserts, and the
ledger deletes what a record no longer makes). A table whose source cannot tell what changed is
caught up by reading it again (etl/engine/runner.py), its ledger entries marked by the re-read;
what the re-read did not see is deleted (`sweep_unmarked`).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from etl.engine import faults
from etl.engine.accounting import Counts
from etl.engine.ledger import Ledger
from etl.engine.resources import JobResources
from etl.engine.worker import PartitionWorker
from etl.errors import EtlError, JobFileError
from etl.records import Json, Partition
from etl.sources.base import ChangeCapture, ChangeSource, Source
from etl.state.base import StateStore

log = logging.getLogger(__name__)

REREAD = "re-read"
"""The method of a table whose source cannot tell what changed: it is read again."""


def position_key(table_key: str) -> str:
    """The state store value holding a table's change position (`source.table`)."""
    return f"changes:{table_key}"


def capture_of(source: Source, table: str) -> ChangeCapture | None:
    """How `source` finds the changes of `table`, or None when it is read again instead."""
    capture = getattr(source, "change_capture", None)
    return None if capture is None else capture(table)


def changing(source: Source) -> ChangeSource:
    """`source` as the change source it is once `capture_of` found a way to find its changes."""
    return cast(ChangeSource, source)


def take_positions(job_name: str, resources: JobResources, store: StateStore,
                   pairs: list[tuple[str, str]]) -> None:
    """Store the change position of every table of `pairs` that has none yet: before its full load
    plans or reads it, so that every change made during and after the load is applied later."""
    opened: dict[str, Source] = {}
    try:
        for source_name, table in pairs:
            key = position_key(f"{source_name}.{table}")
            if store.get_value(job_name, key) is not None:
                continue
            if source_name not in opened:
                opened[source_name] = resources.open_source(source_name)
            source = opened[source_name]
            capture = capture_of(source, table)
            value: dict[str, Json] = {"method": REREAD if capture is None else capture.method,
                                      "deletes": True if capture is None else capture.deletes,
                                      "position": None if capture is None
                                      else changing(source).change_position(table),
                                      "taken_at": _now()}
            try:
                json.dumps(value)
            except (TypeError, ValueError) as error:
                raise EtlError(f"source {source_name!r}: the change position of {table!r} cannot be stored "
                               f"({error})", hint="this is a defect of the source; report it") from None
            store.set_value(job_name, key, value)
            log.info("%s.%s: changes are found by %s from %s on", source_name, table, value["method"],
                     value["taken_at"])
    finally:
        for source in opened.values():
            source.close()


def changed_since_load(store: StateStore, job_name: str, table_key: str) -> bool:
    """Whether an incremental run began to apply changes to the table since its full load."""
    return bool((store.get_value(job_name, position_key(table_key)) or {}).get("changed_since_load"))


def rejects_since_load(store: StateStore, job_name: str, table_keys: list[str]) -> tuple[int, int]:
    """(rejected, extracted) by every incremental run of these tables since their full load: the
    reject policy holds over all of them, as it holds over every run of a load."""
    rejected = extracted = 0
    for table_key in table_keys:
        since = (store.get_value(job_name, position_key(table_key)) or {}).get("since_load") or {}
        rejected += since.get("rejected", 0)
        extracted += since.get("extracted", 0)
    return rejected, extracted


def stored_position(store: StateStore, job_name: str, table_key: str, shown_job: str) -> dict:
    """The table's stored position; JobFileError when its full load kept none."""
    value = store.get_value(job_name, position_key(table_key))
    if value is None:
        raise JobFileError(
            f"table {table_key} has no stored change position: its full load ran without `incremental: true`",
            hint=f"set `incremental: true` in the job file and run `python -m etl.run {shown_job} "
                 "--full-refresh`; later runs with --incremental apply the changes since that load")
    return value


@dataclass
class ChangeOutcome:
    """What an incremental run did to one table."""

    table: str
    """`source.table`."""
    method: str
    counts: Counts = field(default_factory=Counts)
    """This run's changes: extracted = changes read (records and deletes), loaded = written or deleted."""
    kinds: dict[str, int] = field(default_factory=dict)
    """Changes applied by kind, as the source told them (insert, update, delete, upsert)."""
    rows_deleted: int = 0
    """Target rows deleted (deleted records, shrunk arrays, records filtered out or rejected)."""
    found_deleted: int = 0
    """Records found deleted by asking the source about every loaded key (methods without deletes)."""
    position: Json = None
    last_change_at: str | None = None
    caught_up_at: str | None = None
    """When the source last had no change waiting in this run (None: the run stopped before)."""
    started: float = 0.0
    seconds: float = 0.0
    batches: int = 0


class ChangeWorker(PartitionWorker):
    """Applies the changes of one source table: map, write, settle the ledger, dead letters, then save
    the position (instead of a partition's checkpoint)."""

    def __init__(self, *, stored: dict, position_name: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stored = dict(stored)
        self.position_name = position_name

    def catch_up(self, source_name: str, table: str) -> ChangeOutcome:
        """Apply every change waiting now, then (for methods without deletes) find deleted records."""
        key = f"{source_name}.{table}"
        capture = capture_of(self.source, table)
        if capture is None or capture.method != self.stored.get("method"):
            now = capture.method if capture else REREAD
            raise EtlError(f"table {key}: its stored change position was taken by "
                           f"{self.stored.get('method')}, and its source now finds changes by {now}",
                           hint="run with --full-refresh after changing how a table's changes are found")
        outcome = ChangeOutcome(key, capture.method, position=self.stored["position"], started=time.time())
        self._since = dict(self.stored.get("since_load") or {})
        started = time.monotonic()
        partition = Partition(source_name, table, 0, 1)
        self._present, self._pending = set(), []
        kinds: Counter[str] = Counter()
        for batch in changing(self.source).changes(table, outcome.position, fields=self.mapping.fields):
            delta = self._commit(partition, batch, outcome.counts)
            applied = Counts(extracted=len(batch.deletes), loaded=len(batch.deletes))
            outcome.counts.add(applied)
            delta.add(applied)
            outcome.position, outcome.batches = batch.resume_after, outcome.batches + 1
            outcome.last_change_at = batch.at or outcome.last_change_at
            kinds.update(batch.kinds)
            self.control.committed(key, delta)
            if self.control.stopping:
                break
        else:
            outcome.caught_up_at = _now()
            faults.reach("caught-up", key)
        if not capture.deletes and not self.control.stopping:
            outcome.found_deleted = self._sweep(table)
        outcome.kinds = dict(sorted(kinds.items()))
        outcome.rows_deleted = self.rows_deleted
        outcome.seconds = time.monotonic() - started
        if outcome.batches or outcome.found_deleted:
            log.info("%s: applied %d changes, %d found deleted, %d target rows deleted%s", key,
                     sum(kinds.values()), outcome.found_deleted, self.rows_deleted,
                     _lag(outcome.last_change_at))
        return outcome

    def _sweep(self, table: str) -> int:
        """Ask the source about every key the ledger holds; delete what the missing ones made."""
        assert self.ledger is not None
        found = 0
        for page in self.ledger.entries():
            keyed = [(text, entry.get("k")) for text, entry in page]
            if any(key is None for _, key in keyed):
                raise EtlError(f"table {self.ledger.table}: its ledger holds keys its source cannot look up",
                               hint="run with --full-refresh to rebuild the ledger")
            lookups = changing(self.source).missing_keys(table, [key for _, key in keyed])
            missing = {_canonical(key) for key in lookups}
            gone = [text for text, key in keyed if _canonical(key) in missing]
            if gone:
                self.rows_deleted += self.ledger.forget(gone).rows_deleted
                found += len(gone)
        return found

    def _save(self, partition: Partition, resume_after: Json, counts: Counts, *, done: bool) -> None:
        if self.store is None:
            return
        since = {name: self._since.get(name, 0) + getattr(counts, name) for name in ("extracted", "rejected")}
        self.stored = {**self.stored, "position": resume_after, "saved_at": _now(), "since_load": since}
        self.store.set_value(self.job, self.position_name, self.stored)


def new_mark() -> str:
    """The mark a re-read writes into every ledger entry it sees."""
    return uuid.uuid4().hex


def sweep_unmarked(ledger: Ledger, mark: str) -> tuple[int, int]:
    """After a complete re-read: delete what every record the re-read did not see had made.
    Returns (records found deleted, target rows deleted)."""
    found = deleted = 0
    for page in ledger.entries():
        gone = [text for text, entry in page if entry.get("m") != mark]
        if gone:
            deleted += ledger.forget(gone).rows_deleted
            found += len(gone)
    return found, deleted


def _canonical(key: Json) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def lag_seconds(at: str | None) -> float | None:
    """How far behind now a change made at `at` (ISO 8601, UTC when it names no zone) is; None when
    the source gave no time."""
    if at is None:
        return None
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return round(max(0.0, (datetime.now(UTC) - moment).total_seconds()), 3)


def _lag(at: str | None) -> str:
    lag = lag_seconds(at)
    return "" if lag is None else f", lag {lag:.1f} s"


def _now() -> str:
    return datetime.now(UTC).isoformat()
