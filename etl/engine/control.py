"""What the partitions of one run share: the stop flag, the in-flight batch budget, job-wide
reject totals (for `max_rejects`), `--limit` allowances and progress reporting.

One RunControl lives in the process that runs the partitions; it is thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from etl.engine.accounting import Counts


class RejectPolicy(Protocol):
    """`Job.max_rejects`: exceeded(rejected, extracted) -> bool."""

    def exceeded(self, rejected: int, extracted: int) -> bool: ...


ProgressCallback = Callable[[str, Counts], None]
"""Called with `source.table` and the counts a committed batch added."""


@dataclass
class StopReason:
    kind: str
    """"signal", "max_rejects" or "failure"."""
    message: str


class RunControl:
    def __init__(
        self,
        *,
        max_in_flight: int,
        reject_policy: RejectPolicy | None = None,
        totals: Counts | None = None,
        limit: int | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self._budget = threading.BoundedSemaphore(max(1, max_in_flight))
        self.max_in_flight = max(1, max_in_flight)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.stop_reason: StopReason | None = None
        self._policy = reject_policy
        self.totals = totals.copy() if totals else Counts()
        """Job-wide counts: checkpointed partitions plus every batch committed in this run."""
        self._limit = limit
        self._taken: dict[str, int] = {}
        self._on_progress = on_progress

    # -- stopping ---------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self, kind: str, message: str) -> None:
        """Ask every partition to stop taking new batches; the first reason given is kept."""
        with self._lock:
            if self.stop_reason is None:
                self.stop_reason = StopReason(kind, message)
        self._stop.set()

    def wait_stop(self, timeout: float) -> bool:
        return self._stop.wait(timeout)

    # -- bounded batches in flight -----------------------------------------------------------
    def acquire_slot(self) -> bool:
        """Wait for room for one more batch; False when the run is stopping instead."""
        while not self._stop.is_set():
            if self._budget.acquire(timeout=0.2):
                return True
        return False

    def release_slot(self) -> None:
        self._budget.release()

    # -- --limit -----------------------------------------------------------------------------
    def allowance(self, table: str, wanted: int) -> int:
        """How many of `wanted` records `table` may still take under `--limit` (all without one)."""
        if self._limit is None:
            return wanted
        with self._lock:
            taken = self._taken.get(table, 0)
            granted = max(0, min(wanted, self._limit - taken))
            self._taken[table] = taken + granted
            return granted

    def limit_reached(self, table: str) -> bool:
        if self._limit is None:
            return False
        with self._lock:
            return self._taken.get(table, 0) >= self._limit

    # -- commits -----------------------------------------------------------------------------
    def committed(self, table: str, delta: Counts) -> None:
        """A batch is committed everywhere: update totals, report progress, enforce max_rejects."""
        with self._lock:
            self.totals.add(delta)
            exceeded = self._policy is not None and delta.rejected > 0 and self._policy.exceeded(
                self.totals.rejected, self.totals.extracted
            )
            rejected, extracted = self.totals.rejected, self.totals.extracted
        if self._on_progress is not None:
            self._on_progress(table, delta)
        if exceeded:
            self.stop("max_rejects", f"too many rejected records: {rejected} of {extracted} extracted")
