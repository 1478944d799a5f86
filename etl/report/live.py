"""The terminal display of a run: one live block with a line per source table (records done of
about how many, percentage, rate, time left, rejects), a total line, then a line per table while
validation reads it, each with its own progress. Log records (warnings included) print above the
block, whole: the block and the log handler share one rich Console (`etl.log.terminal_console`).

Totals are the sources' cheap estimates (`etl.engine.estimates`); a table without one shows its
count and rate, no percentage. Validation's totals are what the load counted: the records of each
source table, the rows written into each target table.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING

from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from etl.engine import validation_progress
from etl.engine.estimates import Totals

if TYPE_CHECKING:
    from etl.engine.accounting import Counts
    from etl.engine.plan import Plan

TOTAL = "total"


class _Done(ProgressColumn):
    """`1,500/3,000` (or `1,500` without a total) and the percentage."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text(f"{task.completed:,.0f}")
        percent = 100.0 * task.completed / task.total if task.total else 100.0
        return Text(f"{task.completed:,.0f}/{task.total:,.0f} {min(percent, 100.0):3.0f}%")


class _Rate(ProgressColumn):
    """Records (or rows) per second: the live estimate, the whole task's once it finished."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed and task.finished and task.elapsed:
            speed = task.completed / task.elapsed
        return Text(f"{speed:,.0f}/s" if speed else "")


class LiveDisplay:
    """`start(plan)` and `advance(table, delta)` fit `RunOptions.on_plan` / `on_progress`; validation's
    progress arrives through `etl.engine.validation_progress`."""

    def __init__(self, progress: Progress, totals: Totals | None = None) -> None:
        self._progress = progress
        self._totals = totals
        self._tasks: dict[str, TaskID] = {}
        self._rejected: dict[str, int] = {}
        self._rows: dict[str, int] = {}
        """Rows written per `target.table` by this run: validation's target totals."""
        self._lock = threading.Lock()

    @classmethod
    @contextmanager
    def for_stream(cls, stream: IO[str], totals: Totals | None = None) -> Iterator[LiveDisplay | None]:
        """The display on a terminal; None otherwise (progress lines in the log say what happens)."""
        if not stream.isatty():
            yield None
            return
        from etl.log import terminal_console

        progress = Progress(
            TextColumn("{task.description}", style="bold"), BarColumn(bar_width=24), _Done(), _Rate(),
            TimeRemainingColumn(compact=True), TextColumn("{task.fields[note]}"),
            console=terminal_console(stream), transient=False, refresh_per_second=4,
        )
        display = cls(progress, totals)
        with progress, validation_progress.watching(display.validating):
            try:
                yield display
            finally:
                display.finish()

    def _add(self, key: str, label: str, total: int | None, note: str = "") -> TaskID:
        task = self._progress.add_task(label, total=total, note=note)
        self._tasks[key] = task
        return task

    def start(self, plan: Plan) -> None:
        totals = self._totals(plan) if self._totals is not None else {}
        keys = [t.key for t in plan.tables if any(p.id in plan.owned for p in t.partitions)]
        width = max((len(key) for key in keys), default=5)
        with self._lock:
            for key in keys:
                self._rejected[key] = 0
                self._add(key, key.ljust(width), totals.get(key), "0 rejected")
            known = [totals.get(key) for key in keys]
            total = sum(known) if known and all(n is not None for n in known) else None  # type: ignore[arg-type]
            self._add(TOTAL, TOTAL.ljust(width), total, "0 rejected")
            self._rejected[TOTAL] = 0

    def advance(self, table: str, delta: Counts) -> None:
        with self._lock:
            if table not in self._tasks:
                return
            for key in (table, TOTAL):
                self._rejected[key] += delta.rejected
                self._progress.update(self._tasks[key], advance=delta.extracted,
                                      note=f"{self._rejected[key]:,} rejected")
            for name, rows in delta.rows.items():
                self._rows[name] = self._rows.get(name, 0) + rows

    def validating(self, side: str, table: str, rows: int) -> None:
        """Validation read `rows` more rows of `table` on `side`: its own line, added when it starts."""
        key = f"{side}:{table}"
        with self._lock:
            if key not in self._tasks:
                self._finish_load()
                if side == validation_progress.SOURCE:
                    task = self._tasks.get(table)
                    total = int(self._progress.tasks[task].completed) if task is not None else None
                    self._add(key, f"validate {table}", total or None, "source read and mapped")
                else:
                    self._add(key, f"validate {table}", self._rows.get(table) or None, "target read back")
            self._progress.update(self._tasks[key], advance=rows)

    def _finish_load(self) -> None:
        """The load is over once validation reads: its lines stop at what they counted."""
        for key, task in self._tasks.items():
            if ":" not in key and not self._progress.tasks[task].finished:
                self._progress.update(task, total=self._progress.tasks[task].completed)

    def finish(self) -> None:
        """Every line complete at what it counted (the report says how the run ended)."""
        with self._lock:
            for task in self._tasks.values():
                self._progress.update(task, total=self._progress.tasks[task].completed)
