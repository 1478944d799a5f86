"""The terminal display: a line per table this process runs and a total, advanced by committed
batches; validation lines added as validation reads; nothing off a terminal."""

from __future__ import annotations

import io

from etl.engine import validation_progress
from etl.engine.accounting import Counts
from etl.engine.plan import Plan, TablePlan, assign_shard
from etl.records import Partition
from etl.report.live import LiveDisplay


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def plan() -> Plan:
    tables = (TablePlan("mongo", "a", "a.yaml", 1, (Partition("mongo", "a", 0, 1),)),
              TablePlan("mongo", "b", "b.yaml", 1, (Partition("mongo", "b", 0, 1),)))
    return Plan("job", tables, None, assign_shard(tables, None))


def tasks(display: LiveDisplay) -> dict[str, tuple]:
    return {t.description.strip(): (t.completed, t.total, t.fields["note"]) for t in display._progress.tasks}


def test_no_display_off_a_terminal():
    with LiveDisplay.for_stream(io.StringIO()) as display:
        assert display is None


def test_a_line_per_table_and_a_total_with_the_estimates_as_totals():
    with LiveDisplay.for_stream(Terminal(), lambda _plan: {"mongo.a": 1000, "mongo.b": 10}) as display:
        display.start(plan())
        display.advance("mongo.a", Counts(extracted=100, rejected=3))
        display.advance("mongo.a", Counts(extracted=50))
        display.advance("mongo.b", Counts(extracted=7))
        assert tasks(display) == {"mongo.a": (150, 1000, "3 rejected"), "mongo.b": (7, 10, "0 rejected"),
                                  "total": (157, 1010, "3 rejected")}


def test_no_total_when_a_table_has_no_estimate_and_lines_complete_when_the_run_ends():
    with LiveDisplay.for_stream(Terminal(), lambda _plan: {"mongo.a": 1000, "mongo.b": None}) as display:
        display.start(plan())
        assert tasks(display)["total"] == (0, None, "0 rejected")
        display.advance("mongo.a", Counts(extracted=10))
    assert tasks(display) == {"mongo.a": (10, 10, "0 rejected"), "mongo.b": (0, 0, "0 rejected"),
                              "total": (10, 10, "0 rejected")}


def test_validation_lines_take_the_load_counts_as_totals():
    with LiveDisplay.for_stream(Terminal()) as display:
        display.start(plan())
        display.advance("mongo.a", Counts(extracted=30, rows={"pg.a": 45}))
        validation_progress.advanced(validation_progress.SOURCE, "mongo.a", 20)
        validation_progress.advanced(validation_progress.TARGET, "pg.a", 40)
        assert tasks(display) == {
            "mongo.a": (30, 30, "0 rejected"), "mongo.b": (0, 0, "0 rejected"),
            "total": (30, 30, "0 rejected"), "validate mongo.a": (20, 30, "source read and mapped"),
            "validate pg.a": (40, 45, "target read back")}
    validation_progress.advanced(validation_progress.SOURCE, "mongo.a", 10)  # no longer watched
    assert tasks(display)["validate mongo.a"] == (20, 20, "source read and mapped")


def test_counted_announces_every_thousand_rows_and_the_rest():
    seen = []
    with validation_progress.watching(lambda side, table, rows: seen.append((side, table, rows))):
        assert sum(1 for _ in validation_progress.counted(range(2500), "target", "pg.t")) == 2500
    assert seen == [("target", "pg.t", 1000), ("target", "pg.t", 1000), ("target", "pg.t", 500)]
