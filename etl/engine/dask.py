"""The Dask executor: every partition is a task on a Dask distributed cluster.

Tasks carry the validated job and the loaded mapping files, so workers need neither the job's
folder nor its environment variables; they do need to reach the sources, the targets and the
state store, which must be shared by every worker (the PostgreSQL or DynamoDB backend). Each
task checkpoints exactly as a local partition does. A stop (signal, max_rejects, a failed task)
sets a cluster-wide event that running tasks poll between batches; tasks not yet started see
it and skip their partition, which stays resumable.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from contextlib import ExitStack

from distributed import Client, Event, as_completed

from etl.engine.accounting import Counts
from etl.engine.control import RunControl
from etl.engine.execution import Execution
from etl.engine.ledger import ledger_of
from etl.engine.resources import JobResources, MappingText
from etl.engine.verdict import load_verdict
from etl.engine.worker import PartitionOutcome, PartitionWork, PartitionWorker
from etl.errors import ConnectionFailed
from etl.job import Job
from etl.redact import redact

log = logging.getLogger(__name__)

_resources: dict[str, JobResources] = {}
"""Per worker process: resources (compiled mappings) by job, reused by later tasks of the job."""
_resources_lock = threading.Lock()


def _resources_for(job: Job, mappings: dict[str, MappingText]) -> JobResources:
    key = f"{job.name}:{job.file_hash()}"
    with _resources_lock:
        if key not in _resources:
            _resources[key] = JobResources(job, mappings)
        return _resources[key]


def run_partition_task(job: Job, mappings: dict[str, MappingText], work: PartitionWork, totals: Counts,
                       stop_event: str, prefetch: int, marks: dict[str, str] | None = None
                       ) -> PartitionOutcome | None:
    """Run one partition on a Dask worker; None when the run was stopping before it started."""
    event = Event(stop_event)
    if event.is_set():
        return None
    resources = _resources_for(job, mappings)
    partition = work.partition
    control = RunControl(max_in_flight=prefetch + 1, reject_policy=job.max_rejects, totals=totals)
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            if event.wait(timeout=0.5):
                control.stop("signal", "the run is stopping")
                return

    watcher = threading.Thread(target=watch, name="stop watcher", daemon=True)
    watcher.start()
    try:
        with ExitStack() as stack:
            store = resources.open_state()
            stack.callback(store.close)
            verdict = load_verdict(store, job.name)
            dead_letters = resources.open_dead_letters(verdict.generation if verdict is not None else None)
            stack.callback(dead_letters.close)
            mapping = resources.mapping(partition.source, partition.table)
            source = resources.open_source(partition.source)
            stack.callback(source.close)
            sinks = resources.open_sinks(mapping.tables, stack)
            worker = PartitionWorker(job=job.name, source=source, mapping=mapping, sinks=sinks,
                                     dead_letters=dead_letters, store=store, control=control,
                                     prefetch=prefetch,
                                     ledger=ledger_of(job, store, partition, mapping, sinks, marks or {}))
            return worker.run(work)
    finally:
        finished.set()
        watcher.join()


class DaskExecutor:
    def __init__(self, scheduler: str) -> None:
        self.scheduler = scheduler

    def run(self, job: Job, works: Sequence[PartitionWork], control: RunControl, *, prefetch: int = 2,
            resources: JobResources | None = None, marks: dict[str, str] | None = None) -> Execution:
        resources = resources or JobResources(job)
        if job.state.type == "sqlite":
            log.warning("the Dask executor with the sqlite state store works only when every worker shares "
                        "this machine's file system; use the postgres or dynamodb state backend on a cluster")
        keys = sorted({(w.partition.source, w.partition.table) for w in works})
        for source, table in keys:
            resources.mapping(source, table)  # read and checked here, before any task starts
        mappings = {f"{s}.{t}": resources.mapping_texts[f"{s}.{t}"] for s, t in keys}
        try:
            client = Client(self.scheduler, set_as_default=False, timeout=30)
        except OSError as error:
            raise ConnectionFailed(
                f"cannot reach the Dask scheduler {redact(self.scheduler)}: {error}",
                hint="check executor.scheduler in the job file and that the scheduler is running",
            ) from None
        execution = Execution()
        stop_name = f"etl-stop-{job.name}-{uuid.uuid4().hex[:8]}"
        try:
            event = Event(stop_name, client=client)
            futures = {
                client.submit(run_partition_task, job, mappings, work, control.totals, stop_name, prefetch,
                              marks, key=f"etl-{job.name}-{work.partition.id}-{uuid.uuid4().hex[:6]}",
                              pure=False, retries=0): work
                for work in works
            }
            finished = threading.Event()

            def forward_stop() -> None:
                """A stop asked for here (signal, max_rejects, a failed task) reaches every task."""
                while not finished.is_set():
                    if control.wait_stop(0.5):
                        event.set()
                        return

            forwarder = threading.Thread(target=forward_stop, name="stop forwarder", daemon=True)
            forwarder.start()
            try:
                for future in as_completed(futures, loop=client.loop):
                    self._collect(future, futures[future], execution, control)
            finally:
                finished.set()
                forwarder.join()
        finally:
            client.close()
        return execution

    @staticmethod
    def _collect(future, work: PartitionWork, execution: Execution, control: RunControl) -> None:
        partition = work.partition.id
        if future.status == "error":
            error = future.exception()
            log.error("partition %s failed: %s", partition, redact(str(error)))
            execution.errors.append((partition, error))
            control.stop("failure", f"partition {partition} failed: {error}")
            return
        outcome = future.result()
        if outcome is None:
            execution.skipped.append(partition)
            return
        execution.outcomes.append(outcome)
        control.committed(outcome.table, outcome.run)
