"""The local executor: partitions in `parallelism` lanes of threads.

Threads suit the work: reading, writing and checkpointing wait on servers, and the mapping of a
batch runs while other threads wait. Each lane writes one partition at a time; the next one in
the lane starts reading as soon as the current one has read its last batch, and writes once it
has finished (`etl.engine.turns`). A partition that fails stops the others from taking new
batches; the partitions already running finish their in-flight batches and checkpoint.

When mapping and decoding keep the CPU busy instead, `executor: {type: local, processes: true}` runs
the partitions in worker processes (`etl.engine.processes`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence

from etl.engine.control import RunControl
from etl.engine.execution import Execution
from etl.engine.turns import PartitionSkipped, Turn
from etl.engine.worker import PartitionOutcome, PartitionWork


class LocalExecutor:
    def __init__(self, parallelism: int) -> None:
        self.parallelism = max(1, parallelism)

    def run(
        self,
        works: Sequence[PartitionWork],
        run_one: Callable[[PartitionWork, Turn], PartitionOutcome],
        control: RunControl,
    ) -> Execution:
        execution = Execution()
        pending = deque(works)
        taking = threading.Lock()
        started: list[threading.Thread] = []

        def take() -> PartitionWork | None:
            with taking:
                return pending.popleft() if pending else None

        def guarded(work: PartitionWork, turn: Turn) -> None:
            try:
                if control.stopping:
                    raise PartitionSkipped
                execution.outcomes.append(run_one(work, turn))
            except PartitionSkipped:
                execution.skipped.append(work.partition.id)
            except BaseException as error:
                execution.failed(work.partition.id, error, control)
            finally:
                turn.read_ended.set()
                turn.done.set()

        def lane() -> None:
            """One partition writing and at most one reading ahead of it, in the works' order."""
            previous: Turn | None = None
            while (work := take()) is not None:
                turn = Turn(previous.done if previous is not None else None)
                thread = threading.Thread(target=guarded, args=(work, turn),
                                          name=f"partition {work.partition.id}")
                try:
                    thread.start()
                except BaseException as error:  # no thread left to run it: the run stops
                    execution.failed(work.partition.id, error, control)
                    turn.read_ended.set()
                    turn.done.set()
                else:
                    with taking:
                        started.append(thread)
                turn.read_ended.wait()
                if previous is not None:
                    previous.done.wait()
                previous = turn

        lanes = [threading.Thread(target=lane, name=f"lane {index}") for index in range(self.parallelism)]
        for thread in lanes:
            thread.start()
        for thread in lanes:
            thread.join()
        for thread in started:
            thread.join()
        return execution
