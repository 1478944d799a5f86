"""The run's process takes every batch count its worker processes sent, those still in the pipe when
the workers have exited included (`etl.engine.processes._drain`): the job-wide totals that
`max_rejects` and the progress display read."""

from __future__ import annotations

import multiprocessing
import threading

from etl.engine.accounting import Counts
from etl.engine.control import RunControl
from etl.engine.processes import START_METHOD, _drain


def _batch(number: int) -> Counts:
    return Counts(extracted=10, loaded=9, rejected=1, rows={"pg.patients": 9 + number},
                  reasons={"balance is not a number": 1})


def _send_batches(progress, count: int) -> None:
    """A worker process that committed `count` batches, then exited."""
    for number in range(count):
        progress.put(("mongo.patients", _batch(number)))


def test_counts_still_in_the_pipe_when_the_workers_have_exited_all_arrive():
    context = multiprocessing.get_context(START_METHOD)
    progress = context.Queue()
    worker = context.Process(target=_send_batches, args=(progress, 5))
    worker.start()
    worker.join()
    assert worker.exitcode == 0
    heard: list[tuple[str, Counts]] = []
    control = RunControl(max_in_flight=1, on_progress=lambda table, delta: heard.append((table, delta)))
    finished = threading.Event()
    finished.set()  # the pool has shut down before the drain takes what is left

    _drain(progress, control, finished)

    assert heard == [("mongo.patients", _batch(number)) for number in range(5)]
    assert (control.totals.extracted, control.totals.loaded, control.totals.rejected) == (50, 45, 5)
    assert control.totals.rows == {"pg.patients": 9 + 10 + 11 + 12 + 13}
    progress.close()
