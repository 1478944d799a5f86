"""The progress bars: one per table this process runs, advanced by committed batches; none off a terminal."""

from __future__ import annotations

import io

from etl.engine.accounting import Counts
from etl.engine.plan import Plan, TablePlan, assign_shard
from etl.records import Partition
from etl.report.progress import TableProgress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def plan() -> Plan:
    tables = (TablePlan("mongo", "a", "a.yaml", 1, (Partition("mongo", "a", 0, 1),)),
              TablePlan("mongo", "b", "b.yaml", 1, (Partition("mongo", "b", 0, 1),)))
    return Plan("job", tables, None, assign_shard(tables, None))


def test_no_bars_off_a_terminal():
    with TableProgress.for_stream(io.StringIO()) as progress:
        assert progress is None


def test_a_bar_per_table_counts_records_and_rejects():
    stream = Terminal()
    with TableProgress.for_stream(stream) as progress:
        progress.start(plan())
        progress.advance("mongo.a", Counts(extracted=100, rejected=3))
        progress.advance("mongo.a", Counts(extracted=50))
        progress.advance("mongo.b", Counts(extracted=7))
        tasks = {task.description: task for task in progress._progress.tasks}
    assert tasks["mongo.a"].completed == 150 and tasks["mongo.a"].fields["rejected"] == 3
    assert tasks["mongo.b"].completed == 7
    assert "150 records" in stream.getvalue() and "3 rejected" in stream.getvalue()


def test_bars_are_filled_when_the_run_ends():
    with TableProgress.for_stream(Terminal()) as progress:
        progress.start(plan())
        progress.advance("mongo.a", Counts(extracted=10))
    tasks = {task.description: task for task in progress._progress.tasks}
    assert (tasks["mongo.a"].total, tasks["mongo.a"].completed) == (10, 10)
    assert (tasks["mongo.b"].total, tasks["mongo.b"].completed) == (0, 0)
