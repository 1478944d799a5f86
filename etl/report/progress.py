"""A rich progress bar per source table, shown while a run moves records on a terminal.

Sources do not count their records up front (that would be a second full read), so each bar
shows records moved, rejects and the rate, and completes when the table's partitions are done.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from etl.engine.accounting import Counts
    from etl.engine.plan import Plan


class TableProgress:
    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}
        self._rejected: dict[str, int] = {}

    @classmethod
    @contextmanager
    def for_stream(cls, stream: IO[str]) -> Iterator[TableProgress | None]:
        """Bars on a terminal; None otherwise (the JSON log lines say what happens)."""
        if not stream.isatty():
            yield None
            return
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("{task.completed:,.0f} records"), TextColumn("{task.fields[rejected]} rejected"),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
            console=Console(file=stream), transient=False,
        )
        with progress:
            bars = cls(progress)
            try:
                yield bars
            finally:
                bars.finish()

    def start(self, plan: Plan) -> None:
        for table in plan.tables:
            if any(p.id in plan.owned for p in table.partitions):
                self._tasks[table.key] = self._progress.add_task(table.key, total=None, rejected=0, rate="")
                self._rejected[table.key] = 0

    def finish(self) -> None:
        """Fill every bar: the run is over (the report says how it ended)."""
        for task in self._tasks.values():
            self._progress.update(task, total=self._progress.tasks[task].completed)

    def advance(self, table: str, delta: Counts) -> None:
        task = self._tasks.get(table)
        if task is None:
            return
        self._rejected[table] += delta.rejected
        self._progress.update(task, advance=delta.extracted, rejected=self._rejected[table])
        speed = self._progress.tasks[task].speed
        if speed:
            self._progress.update(task, rate=f"{speed:,.0f}/s")
