"""The local executor with worker processes (`executor: {type: local, processes: true}`).

Threads share one interpreter lock: on a load where mapping and decoding keep the CPU busy, a second
thread adds little. Here every partition runs in one of `parallelism` worker processes started with
`spawn` (never a plain fork: this process has threads and open connections), from the validated
job and the loaded mapping texts, exactly as a Dask task runs it (`etl.engine.partition_task`): its
own connections, state store connection and dead-letter store, the same checkpoints.

What the partitions share crosses the process boundary:
- the stop: a flag in shared memory (`SharedFlag`). A stop asked for here (SIGINT/SIGTERM to this process,
  `max_rejects`, a failed partition) sets it; partitions finish their batch in flight, checkpoint
  and return; those not yet started skip. Workers ignore SIGINT (Ctrl-C reaches the whole process
  group; this process stops them cleanly), and a worker that gets SIGTERM itself dies like a killed one.
- every committed batch's counts: a queue this process drains into the run's `RunControl` (job-wide
  `max_rejects`, progress), as partitions on threads report them.
- outcomes and errors: through the pool. A worker process that dies (SIGKILL, out of memory) breaks
  the pool: its partition, and any other still running (the pool ends them), fails; every committed
  batch is checkpointed, so the next run resumes them. Such a run never exits 0.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.queues import Queue
from typing import Any

from etl.engine.accounting import Counts
from etl.engine.control import RunControl
from etl.engine.execution import Execution
from etl.engine.gc_pacing import fewer_collections
from etl.engine.partition_task import LOCAL_POLL_SECONDS, mapping_texts, run_partition, stops_forwarded
from etl.engine.resources import JobResources, MappingText
from etl.engine.worker import PartitionOutcome, PartitionWork
from etl.errors import RuntimeFailure
from etl.job import Job

log = logging.getLogger(__name__)

START_METHOD = "spawn"


class ProcessExecutor:
    def __init__(self, parallelism: int) -> None:
        self.parallelism = max(1, parallelism)

    def run(self, job: Job, works: Sequence[PartitionWork], control: RunControl, *, prefetch: int = 2,
            resources: JobResources | None = None, marks: dict[str, str] | None = None) -> Execution:
        resources = resources or JobResources(job)
        mappings = mapping_texts(resources, works)
        execution = Execution()
        if not works:
            return execution
        context = multiprocessing.get_context(START_METHOD)
        stop = SharedFlag(context)
        progress: Queue = context.Queue()
        finished = threading.Event()
        drain = threading.Thread(target=_drain, args=(progress, control, finished), name="batch counts",
                                 daemon=True)
        drain.start()
        try:
            with stops_forwarded(control, stop), ProcessPoolExecutor(
                min(self.parallelism, len(works)), mp_context=context, initializer=_start_worker,
                initargs=(stop, progress, _logging_setup()),
            ) as pool:
                futures = {pool.submit(_run_in_worker, job, mappings, work, control.totals, prefetch,
                                       marks or {}): work for work in works}
                for future in as_completed(futures):
                    _collect(future, futures[future], execution, control)
        finally:
            finished.set()  # every worker has exited: what they sent is in the queue
            drain.join()
            progress.close()
        return execution


class SharedFlag:
    """The stop, as one byte of shared memory: set here, polled by the workers.

    Not a `multiprocessing.Event`: its `set` waits for every waiter to wake up, and a waiter killed
    while waiting never does, so the run would hang; a lock held by a killed worker would too. A
    byte has no lock to leave held."""

    def __init__(self, context: Any) -> None:
        self._byte = context.RawValue("b", 0)

    def set(self) -> None:
        self._byte.value = 1

    def is_set(self) -> bool:
        return bool(self._byte.value)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = LOCAL_POLL_SECONDS if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, LOCAL_POLL_SECONDS))
        return True


def _collect(future: Future, work: PartitionWork, execution: Execution, control: RunControl) -> None:
    """What the thread path does with a partition's outcome or error."""
    partition = work.partition.id
    error = future.exception()
    if error is not None:
        if isinstance(error, BrokenProcessPool):
            error = RuntimeFailure(
                "the worker process running it ended abruptly (killed, or out of memory?)",
                hint="every committed batch is checkpointed; the next run resumes the partition")
        execution.failed(partition, error, control)
        return
    outcome = future.result()
    if outcome is None:
        execution.skipped.append(partition)
    else:
        execution.outcomes.append(outcome)  # its batches reached `control` through the queue


def _drain(progress: Queue, control: RunControl, finished: threading.Event) -> None:
    """Every batch a worker committed, into the run's control (totals, progress, max_rejects), until
    the workers have exited and the queue is empty. Only this thread reads the queue; this process
    never writes to it (a worker killed while writing may leave its lock held)."""
    while True:
        done = finished.is_set()
        try:  # once the workers have exited, what they sent is in the pipe: no need to wait for more
            table, delta = progress.get(block=not done, timeout=LOCAL_POLL_SECONDS)
        except queue.Empty:
            if done:
                return
            continue
        except Exception as error:  # a worker killed mid-message: the counts are in its checkpoints
            log.warning("batch counts from the worker processes were lost: %s", error)
            return
        control.committed(table, delta)


def _logging_setup() -> tuple[bool, bool]:
    """(the command set up logging, at debug level), for the workers to do the same."""
    root = logging.getLogger()
    configured = any(getattr(handler, "_etl_handler", False) for handler in root.handlers)
    return configured, logging.getLogger("etl").isEnabledFor(logging.DEBUG)


_stop: SharedFlag | None = None
_progress: Queue | None = None


def _start_worker(stop: SharedFlag, progress: Queue, logging_setup: tuple[bool, bool]) -> None:
    """In each worker process, once."""
    global _stop, _progress
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the run's process stops the workers cleanly
    _stop, _progress = stop, progress
    configured, debug = logging_setup
    if configured:
        from etl.log import setup_logging

        setup_logging(debug)
    else:
        from etl.redact import install_record_redaction

        install_record_redaction()


def _run_in_worker(job: Job, mappings: dict[str, MappingText], work: PartitionWork, totals: Counts,
                   prefetch: int, marks: dict[str, str]) -> PartitionOutcome | None:
    """Run one partition in a worker process; None when the run was stopping before it started."""
    stop, progress = _stop, _progress
    assert stop is not None and progress is not None, "the worker process was not started by ProcessExecutor"
    if stop.is_set():
        return None

    def committed(table: str, delta: Counts) -> Any:
        progress.put((table, delta))

    control = RunControl(max_in_flight=prefetch + 1, reject_policy=job.max_rejects, totals=totals,
                         on_progress=committed)
    with fewer_collections():
        return run_partition(job, mappings, work, control, stop, prefetch, marks, poll=LOCAL_POLL_SECONDS)
