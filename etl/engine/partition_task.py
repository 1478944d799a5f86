"""One partition run away from the run's process: on a Dask worker or in a local worker process.

Such a run gets the validated job and the loaded mapping texts (`MappingText`), never the job's
folder or environment, opens its own connections, and checkpoints exactly as a partition on a
thread does. The run's process and the partition share a stop event (a Dask `Event`, or a
flag in shared memory): a stop asked for on either side reaches the other between batches.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Protocol

from etl.engine.control import RunControl
from etl.engine.ledger import ledger_of
from etl.engine.resources import JobResources, MappingText
from etl.engine.verdict import load_verdict
from etl.engine.worker import PartitionOutcome, PartitionWork, PartitionWorker
from etl.job import Job

POLL_SECONDS = 0.5
"""How often a partition on a Dask worker asks the cluster's stop event again (each look is a
call to the scheduler; the event itself wakes a waiting look at once)."""
LOCAL_POLL_SECONDS = 0.02
"""How often a wait on this machine looks again whether the run or the partition ended: a block's
watcher is joined when it ends, so this bounds what each partition and each run waits for nothing."""


class StopEvent(Protocol):
    """What `distributed.Event` and the worker processes' `SharedFlag` both offer."""

    def set(self) -> object: ...

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


_resources: dict[str, JobResources] = {}
"""Per worker process: resources (compiled mappings) by job, reused by later partitions of the job."""
_resources_lock = threading.Lock()


def _resources_for(job: Job, mappings: dict[str, MappingText]) -> JobResources:
    key = f"{job.name}:{job.file_hash()}"
    with _resources_lock:
        if key not in _resources:
            _resources[key] = JobResources(job, mappings)
        return _resources[key]


def mapping_texts(resources: JobResources, works: Sequence[PartitionWork]) -> dict[str, MappingText]:
    """The mapping texts the partitions of `works` need, each read and checked here first, so a bad
    mapping file fails the run before any partition starts."""
    keys = sorted({(w.partition.source, w.partition.table) for w in works})
    for source, table in keys:
        resources.mapping(source, table)
    return {f"{s}.{t}": resources.mapping_texts[f"{s}.{t}"] for s, t in keys}


@contextmanager
def stops_forwarded(control: RunControl, event: StopEvent) -> Iterator[None]:
    """Within the block, a stop asked for on `control` (signal, max_rejects, a failed partition) sets
    `event`."""
    with _watching(lambda: control.wait_stop(LOCAL_POLL_SECONDS), event.set):
        yield


@contextmanager
def stops_followed(event: StopEvent, control: RunControl, poll: float) -> Iterator[None]:
    """Within the block, `event` set elsewhere stops `control` (no new batch is taken); `poll`: how
    often the event is asked again."""
    with _watching(lambda: event.wait(poll), lambda: control.stop("signal", "the run is stopping")):
        yield


@contextmanager
def _watching(wait, then) -> Iterator[None]:
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            if wait():
                then()
                return

    watcher = threading.Thread(target=watch, name="stop watcher", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()
        watcher.join()


def run_partition(job: Job, mappings: dict[str, MappingText], work: PartitionWork, control: RunControl,
                  stop: StopEvent, prefetch: int, marks: dict[str, str] | None = None, *,
                  poll: float = POLL_SECONDS) -> PartitionOutcome:
    """Run one partition with its own connections, state store and dead-letter store; `poll`: how
    often `stop` is asked again."""
    resources = _resources_for(job, mappings)
    partition = work.partition
    with stops_followed(stop, control, poll), ExitStack() as stack:
        store = resources.open_state()
        stack.callback(store.close)
        verdict = load_verdict(store, job.name)
        dead_letters = resources.open_dead_letters(verdict.generation if verdict is not None else None)
        stack.callback(dead_letters.close)
        mapping = resources.mapping(partition.source, partition.table)
        source = resources.open_source(partition.source)
        stack.callback(source.close)
        sinks = resources.open_sinks(mapping.tables, stack, work.empty_at_start)
        worker = PartitionWorker(job=job.name, source=source, mapping=mapping, sinks=sinks,
                                 dead_letters=dead_letters, store=store, control=control, prefetch=prefetch,
                                 ledger=ledger_of(job, store, partition, mapping, sinks, marks or {}))
        return worker.run(work)
