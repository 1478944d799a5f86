"""`--incremental` and `--follow`: bring a loaded job's targets up to date with its live sources,
then prove them equal again (docs/cutover.md).

Each table continues from the position its full load (or the last incremental run) stored. Tables
whose source can tell what changed apply those changes (etl/engine/changes.py); the others are
read again whole, and what the new read no longer has is deleted. While changes are applied the
job's verdict is `loaded`, never `proven`: a run that fails or is killed leaves nothing green
behind, and the next run, of either kind, validates before it can say so again.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass

from etl.engine.changes import (
    REREAD,
    ChangeOutcome,
    ChangeWorker,
    lag_seconds,
    position_key,
    stored_position,
)
from etl.engine.control import RunControl
from etl.engine.execution import Execution
from etl.engine.ledger import Ledger
from etl.engine.plan import select_tables
from etl.engine.resources import JobResources
from etl.engine.signals import stop_on_signals
from etl.engine.verdict import (
    LOADED,
    LOADING,
    Verdict,
    fingerprint_of,
    job_loaded,
    load_verdict,
    save_verdict,
)
from etl.errors import JobFileError
from etl.job import Job
from etl.report.run_report import TableReport
from etl.sinks.deadletter import DeadLetterStore
from etl.state.base import StateStore

log = logging.getLogger(__name__)


@dataclass
class Preconditions:
    verdict: Verdict
    changing: list[tuple[str, str, dict]]
    """(source, table, stored position) of the tables whose changes are applied."""
    rereading: list[tuple[str, str, dict]]
    """The tables read again whole."""


def check_preconditions(job: Job, resources: JobResources, store: StateStore, only: tuple[str, ...],
                        shown_job: str) -> Preconditions:
    """Refuse (exit 2) what an incremental run cannot build on: a job whose full load has not finished,
    whose files changed since, or that kept no positions and ledger (`incremental: true`)."""
    if not job.incremental:
        raise JobFileError(f"job {job.name} does not keep what incremental runs need",
                           hint=f"set `incremental: true` in {shown_job} and run `python -m etl.run "
                                f"{shown_job} --full-refresh`; the full load then stores each table's "
                                "change position")
    verdict = load_verdict(store, job.name)
    if verdict is None or verdict.stage == LOADING or not job_loaded(job, resources, store):
        raise JobFileError(f"job {job.name} has not finished its full load; there is nothing to catch up yet",
                           hint=f"run `python -m etl.run {shown_job}` first (it resumes an unfinished load)")
    changed = fingerprint_of(job, resources).changes(verdict.fingerprint)
    if changed or verdict.changed_after_loading:
        what = ", ".join(changed) or ", ".join(verdict.changed_after_loading)
        raise JobFileError(f"job {job.name}: {what} changed since its full load; applying changes now would "
                           "mix rows made by two versions of the files",
                           hint=f"run `python -m etl.run {shown_job} --full-refresh`")
    changing: list[tuple[str, str, dict]] = []
    rereading: list[tuple[str, str, dict]] = []
    for source, table in select_tables(resources.source_tables(), only):
        stored = stored_position(store, job.name, f"{source}.{table}", shown_job)
        (rereading if stored.get("method") == REREAD else changing).append((source, table, stored))
    return Preconditions(verdict, changing, rereading)


def apply_changes(job: Job, resources: JobResources, store: StateStore, control: RunControl,
                  tables: list[tuple[str, str, dict]], *, generation: str, follow: bool,
                  poll_seconds: float) -> tuple[list[ChangeOutcome], Execution]:
    """Catch every table of `tables` up (with `follow`, again and again until the run is stopped)."""
    outcomes: dict[str, ChangeOutcome] = {}
    execution = Execution()
    with ExitStack() as stack:
        dead_letters = DeadLetterStore(resources.dead_letter_path, job=job.name, generation=generation)
        stack.callback(dead_letters.close)
        stack.enter_context(stop_on_signals(control))
        workers = []
        for source_name, table, stored in tables:
            key = f"{source_name}.{table}"
            stored = {**stored, "changed_since_load": True}  # before anything is applied
            store.set_value(job.name, position_key(key), stored)
            mapping = resources.mapping(source_name, table)
            source = resources.open_source(source_name)
            stack.callback(source.close)
            sinks = resources.open_sinks(mapping.tables, stack)
            ledger = Ledger(store, job.name, key, mapping.tables, sinks)
            workers.append((source_name, table, ChangeWorker(
                stored=stored, position_name=position_key(key), job=job.name, source=source, mapping=mapping,
                sinks=sinks, dead_letters=dead_letters, store=store, control=control, ledger=ledger)))
        while True:
            for source_name, table, worker in workers:
                key = f"{source_name}.{table}"
                if control.stopping or any(failed == key for failed, _ in execution.errors):
                    continue
                try:
                    _merge(outcomes, worker.catch_up(source_name, table))
                except Exception as error:
                    log.error("%s: applying changes failed: %s", key, error)
                    execution.errors.append((key, error))
                    control.stop("failure", f"table {key} failed")
            if not follow or control.stopping:
                break
            waiting = ", ".join(f"{o.table} ({sum(o.kinds.values())} changes applied)"
                                for o in outcomes.values())
            log.info("caught up: %s; waiting %.0f s for more changes (stop with Ctrl-C or SIGTERM)",
                     waiting, poll_seconds)
            control.wait_stop(poll_seconds)
    return list(outcomes.values()), execution


def change_reports(outcomes: list[ChangeOutcome]) -> list[TableReport]:
    """The report lines of the tables whose changes were applied."""
    reports = []
    for outcome in outcomes:
        counts = outcome.counts
        reports.append(TableReport(
            table=outcome.table, partitions=0, partitions_done=0, extracted=counts.extracted,
            loaded=counts.loaded, rejected=counts.rejected, filtered=counts.filtered,
            extracted_this_run=counts.extracted, seconds=outcome.seconds, rows=dict(counts.rows),
            top_reasons=counts.top_reasons(),
            changes={"method": outcome.method, "applied": outcome.kinds, "rows_deleted": outcome.rows_deleted,
                     "found_deleted": outcome.found_deleted, "position": outcome.position,
                     "last_change_at": outcome.last_change_at, "caught_up_at": outcome.caught_up_at,
                     "lag_seconds": _lag_seconds(outcome)},
        ))
    return reports


def _merge(outcomes: dict[str, ChangeOutcome], outcome: ChangeOutcome) -> None:
    """One table's outcome over the cycles of a `--follow` run."""
    previous = outcomes.get(outcome.table)
    if previous is None:
        outcomes[outcome.table] = outcome
        return
    previous.counts.add(outcome.counts)
    for kind, count in outcome.kinds.items():
        previous.kinds[kind] = previous.kinds.get(kind, 0) + count
    previous.rows_deleted = outcome.rows_deleted  # the worker's running total
    previous.found_deleted += outcome.found_deleted
    previous.position, previous.batches = outcome.position, previous.batches + outcome.batches
    previous.last_change_at = outcome.last_change_at or previous.last_change_at
    previous.caught_up_at = outcome.caught_up_at or previous.caught_up_at
    previous.seconds = time.time() - previous.started


def _lag_seconds(outcome: ChangeOutcome) -> float | None:
    """0 once the table had no change waiting; else how far behind its last applied change is."""
    return 0.0 if outcome.caught_up_at is not None else lag_seconds(outcome.last_change_at)


def mark_verdict_changing(store: StateStore, job_name: str, verdict: Verdict) -> None:
    """From the first change applied until validation proves the targets again, nothing is proven."""
    save_verdict(store, job_name, verdict, LOADED, "changes are being applied by an incremental run")
