"""The local executor: partitions on a pool of threads, `parallelism` at a time.

Threads suit the work: reading, writing and checkpointing wait on servers, and the mapping of a
batch runs while other threads wait. A partition that fails stops the others from taking new
batches; the partitions already running finish their in-flight batches and checkpoint.

When mapping and decoding keep the CPU busy instead, `executor: {type: local, processes: true}` runs
the partitions in worker processes (`etl.engine.processes`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from etl.engine.control import RunControl
from etl.engine.execution import Execution
from etl.engine.worker import PartitionOutcome, PartitionWork


class LocalExecutor:
    def __init__(self, parallelism: int) -> None:
        self.parallelism = max(1, parallelism)

    def run(
        self,
        works: Sequence[PartitionWork],
        run_one: Callable[[PartitionWork], PartitionOutcome],
        control: RunControl,
    ) -> Execution:
        execution = Execution()

        def guarded(work: PartitionWork) -> None:
            if control.stopping:
                execution.skipped.append(work.partition.id)
                return
            try:
                execution.outcomes.append(run_one(work))
            except BaseException as error:
                execution.failed(work.partition.id, error, control)

        with ThreadPoolExecutor(self.parallelism, thread_name_prefix="partition") as pool:
            for future in [pool.submit(guarded, work) for work in works]:
                future.result()
        return execution
