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
import uuid
from collections.abc import Sequence

from distributed import Client, Event, as_completed

from etl.engine.accounting import Counts
from etl.engine.control import RunControl
from etl.engine.execution import Execution
from etl.engine.partition_task import mapping_texts, run_partition, stops_forwarded
from etl.engine.resources import JobResources, MappingText
from etl.engine.worker import PartitionOutcome, PartitionWork
from etl.errors import ConnectionFailed
from etl.job import Job
from etl.redact import redact

log = logging.getLogger(__name__)


def run_partition_task(job: Job, mappings: dict[str, MappingText], work: PartitionWork, totals: Counts,
                       stop_event: str, prefetch: int, marks: dict[str, str] | None = None
                       ) -> PartitionOutcome | None:
    """Run one partition on a Dask worker; None when the run was stopping before it started."""
    event = Event(stop_event)
    if event.is_set():
        return None
    control = RunControl(max_in_flight=prefetch + 1, reject_policy=job.max_rejects, totals=totals)
    return run_partition(job, mappings, work, control, event, prefetch, marks)


class DaskExecutor:
    def __init__(self, scheduler: str) -> None:
        self.scheduler = scheduler

    def run(self, job: Job, works: Sequence[PartitionWork], control: RunControl, *, prefetch: int = 2,
            resources: JobResources | None = None, marks: dict[str, str] | None = None) -> Execution:
        resources = resources or JobResources(job)
        if job.state.type == "sqlite":
            log.warning("the Dask executor with the sqlite state store works only when every worker shares "
                        "this machine's file system; use the postgres or dynamodb state backend on a cluster")
        mappings = mapping_texts(resources, works)
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
            with stops_forwarded(control, event):
                for future in as_completed(futures, loop=client.loop):
                    self._collect(future, futures[future], execution, control)
        finally:
            client.close()
        return execution

    @staticmethod
    def _collect(future, work: PartitionWork, execution: Execution, control: RunControl) -> None:
        partition = work.partition.id
        if future.status == "error":
            execution.failed(partition, future.exception(), control)
            return
        outcome = future.result()
        if outcome is None:
            execution.skipped.append(partition)
            return
        execution.outcomes.append(outcome)
        control.committed(outcome.table, outcome.run)
