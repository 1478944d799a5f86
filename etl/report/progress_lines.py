"""Progress without a terminal (cron, ECS, AWS Batch): a JSON log line per table at most every N
seconds while a run moves records, and one per table when the load ends; the same per table and
side while validation reads. A watcher of the log store sees a long run advance instead of nothing
until the report.

Driven by the run's committed batches (`RunOptions.on_progress`): a table's line is due when the
clock has moved `every_seconds` since its last one. The clock is injectable, so tests drive it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from etl.engine import validation_progress
from etl.engine.estimates import Totals

if TYPE_CHECKING:
    from etl.engine.accounting import Counts
    from etl.engine.plan import Plan



@dataclass
class _Table:
    started: float
    last_line: float
    total: int | None
    records: int = 0
    rejected: int = 0
    last_batch: float | None = None


class ProgressLines:
    """`start(plan)` and `advance(table, delta)` fit `RunOptions.on_plan` / `on_progress`; `finish()`
    writes the last line of every table. `emit` gets each line as a dict (`progress_line` logs it)."""

    def __init__(self, every_seconds: float, emit: Callable[[dict], None], *,
                 totals: Totals | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_seconds = every_seconds
        self._emit = emit
        self._totals = totals
        self._clock = clock
        self._tables: dict[str, _Table] = {}
        self._checks: dict[tuple[str, str], _Table] = {}
        """Validation's progress by (side, table)."""
        self._lock = threading.Lock()

    def start(self, plan: Plan) -> None:
        totals = self._totals(plan) if self._totals is not None else {}
        now = self._clock()
        with self._lock:
            for table in plan.tables:
                if any(p.id in plan.owned for p in table.partitions):
                    self._tables[table.key] = _Table(now, now, totals.get(table.key))

    def advance(self, table: str, delta: Counts) -> None:
        with self._lock:
            state = self._tables.get(table)
            if state is None:
                return
            now = self._clock()
            state.records += delta.extracted
            state.rejected += delta.rejected
            state.last_batch = now
            if now - state.last_line < self.every_seconds:
                return
            state.last_line = now
            line = _line(table, state, now, done=False)
        self._emit(line)

    def validating(self, side: str, table: str, rows: int) -> None:
        """Validation read `rows` more rows of `table` (`etl.engine.validation_progress`): a line per
        table and side at most every `every_seconds`, and one when validation is over (`finish`)."""
        with self._lock:
            now = self._clock()
            state = self._checks.setdefault((side, table), _Table(now, now, None))
            state.records += rows
            state.last_batch = now
            if now - state.last_line < self.every_seconds:
                return
            state.last_line = now
            line = _check_line(side, table, state, now, done=False)
        self._emit(line)

    @contextmanager
    def watching(self) -> Iterator[ProgressLines]:
        """Follow validation too while the block runs; the last lines when it ends."""
        with validation_progress.watching(self.validating):
            try:
                yield self
            finally:
                self.finish()

    def finish(self) -> None:
        """The last line of every table: what this run moved, at the rate of its load."""
        with self._lock:
            lines = [_line(key, state, state.last_batch if state.last_batch is not None else state.started,
                           done=True) for key, state in self._tables.items()]
            lines += [_check_line(side, table, state, state.last_batch or state.started, done=True)
                      for (side, table), state in self._checks.items()]
            self._tables.clear()
            self._checks.clear()
        for line in lines:
            self._emit(line)


def _line(table: str, state: _Table, now: float, *, done: bool) -> dict:
    elapsed = max(0.0, now - state.started)
    rate = state.records / elapsed if elapsed > 0 else 0.0
    eta = None
    if not done and state.total is not None and rate > 0:
        eta = round(max(0, state.total - state.records) / rate)
    return {"event": "progress", "table": table, "records": state.records, "total": state.total,
            "rejected": state.rejected, "rate_per_second": round(rate, 1), "eta_seconds": eta,
            "elapsed_seconds": round(elapsed, 1), "done": done}


def _check_line(side: str, table: str, state: _Table, now: float, *, done: bool) -> dict:
    elapsed = max(0.0, now - state.started)
    rate = round(state.records / elapsed, 1) if elapsed > 0 else None  # one announcement: no rate
    return {"event": "validation progress", "side": side, "table": table, "rows": state.records,
            "rate_per_second": rate, "elapsed_seconds": round(elapsed, 1), "done": done}


def check_message(line: dict) -> str:
    """`validating src.patients (source): 20,000 rows read, 9,000.0/s`."""
    rate = "" if line["rate_per_second"] is None else f", {line['rate_per_second']:,}/s"
    return (f"validating {line['table']} ({line['side']}): {line['rows']:,} rows read{rate}"
            + (", done" if line["done"] else ""))


def progress_message(line: dict) -> str:
    """The line's `message`: `src.patients: 1,000 of about 3,000 records, 500.0/s, about 4 s left`."""
    total = f" of about {line['total']:,}" if line["total"] is not None else ""
    if line["done"]:
        tail = "done"
    else:
        tail = "time left unknown" if line["eta_seconds"] is None else f"about {line['eta_seconds']} s left"
    return (f"{line['table']}: {line['records']:,}{total} records, {line['rejected']:,} rejected, "
            f"{line['rate_per_second']:,}/s, {tail}")
