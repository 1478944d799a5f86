"""Progress lines without a terminal: due every N seconds of an injected clock, on committed batches."""

from __future__ import annotations

from etl.engine.accounting import Counts
from etl.engine.plan import Plan, TablePlan
from etl.records import Partition
from etl.report.progress_lines import ProgressLines, check_message, progress_message


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def plan() -> Plan:
    tables = tuple(TablePlan("src", name, f"{name}.yaml", 2, (Partition("src", name, 0, 2),
                                                               Partition("src", name, 1, 2)))
                   for name in ("patients", "visits"))
    return Plan("job", tables, owned=frozenset(p.id for t in tables for p in t.partitions))


def test_a_line_per_table_every_n_seconds_then_a_last_line_each():
    clock, lines = Clock(), []
    progress = ProgressLines(30, lines.append, clock=clock,
                             totals=lambda _plan: {"src.patients": 3000, "src.visits": None})
    progress.start(plan())
    clock.now = 110.0
    progress.advance("src.patients", Counts(extracted=500, loaded=499, rejected=1))
    assert lines == []  # 10 s since the start: not due
    clock.now = 130.0
    progress.advance("src.patients", Counts(extracted=500, loaded=500))
    progress.advance("src.visits", Counts(extracted=200, loaded=200))
    clock.now = 140.0
    progress.advance("src.patients", Counts(extracted=1000, loaded=1000))  # 10 s after its last line
    assert lines == [
        {"event": "progress", "table": "src.patients", "records": 1000, "total": 3000, "rejected": 1,
         "rate_per_second": 33.3, "eta_seconds": 60, "elapsed_seconds": 30.0, "done": False},
        {"event": "progress", "table": "src.visits", "records": 200, "total": None, "rejected": 0,
         "rate_per_second": 6.7, "eta_seconds": None, "elapsed_seconds": 30.0, "done": False},
    ]
    assert [progress_message(line) for line in lines] == [
        "src.patients: 1,000 of about 3,000 records, 1 rejected, 33.3/s, about 60 s left",
        "src.visits: 200 records, 0 rejected, 6.7/s, time left unknown",
    ]
    clock.now = 200.0  # the run validates for a minute after its last batch
    progress.finish()
    assert lines[2:] == [
        {"event": "progress", "table": "src.patients", "records": 2000, "total": 3000, "rejected": 1,
         "rate_per_second": 50.0, "eta_seconds": None, "elapsed_seconds": 40.0, "done": True},
        {"event": "progress", "table": "src.visits", "records": 200, "total": None, "rejected": 0,
         "rate_per_second": 6.7, "eta_seconds": None, "elapsed_seconds": 30.0, "done": True},
    ]
    assert progress_message(lines[2]) == (
        "src.patients: 2,000 of about 3,000 records, 1 rejected, 50.0/s, done")


def test_tables_of_other_shards_get_no_lines_and_a_table_without_batches_ends_at_zero():
    clock, lines = Clock(), []
    whole = plan()
    mine = Plan("job", whole.tables, owned=frozenset({"src.visits#0/2"}))
    progress = ProgressLines(1, lines.append, clock=clock)
    progress.start(mine)
    clock.now = 150.0
    progress.advance("src.patients", Counts(extracted=10))
    progress.finish()
    assert lines == [{"event": "progress", "table": "src.visits", "records": 0, "total": None, "rejected": 0,
                      "rate_per_second": 0.0, "eta_seconds": None, "elapsed_seconds": 0.0, "done": True}]


def test_validation_lines_every_n_seconds_per_table_and_side_then_a_last_one_each():
    clock, lines = Clock(), []
    progress = ProgressLines(10, lines.append, clock=clock)
    progress.validating("source", "src.patients", 1000)  # its first announcement: the line's start
    clock.now = 105.0
    progress.validating("source", "src.patients", 1000)
    progress.validating("target", "pg.patients", 500)
    clock.now = 112.0
    progress.validating("source", "src.patients", 1000)
    assert lines == [{"event": "validation progress", "side": "source", "table": "src.patients", "rows": 3000,
                      "rate_per_second": 250.0, "elapsed_seconds": 12.0, "done": False}]
    assert check_message(lines[0]) == "validating src.patients (source): 3,000 rows read, 250.0/s"
    progress.finish()
    assert [check_message(line) for line in lines[1:]] == [
        "validating src.patients (source): 3,000 rows read, 250.0/s, done",
        "validating pg.patients (target): 500 rows read, done"]
