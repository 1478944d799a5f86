"""Figures: what each plot draws (bar lengths, labels, lines) and that `save_to` writes the file."""

from __future__ import annotations

import pandas as pd
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from etl.checksum import JobValidation, Manifest, TableManifest, validate_table
from etl.records import Column, TableSpec
from etl.report import plots
from etl.report.run_report import RunReport, TableReport
from etl.restore import verify_restore

SPEC = TableSpec("pg", "patients", ("id",), (Column("id", "int", nullable=False), Column("name", "string")))


def validation() -> JobValidation:
    source = [{"id": i, "name": f"n{i}"} for i in range(50)]
    target = [dict(r, name="x") if r["id"] in (3, 4) else r for r in source if r["id"] != 10]
    target.append({"id": 99, "name": "stray"})
    changed = validate_table(SPEC, lambda: source, lambda: target, buckets=8)
    equal = validate_table(TableSpec("ddb", "visits", SPEC.key, SPEC.columns), lambda: source, lambda: source,
                           buckets=8)
    return JobValidation([changed, equal])


def bar_widths(figure: Figure) -> dict[str, list[float]]:
    """Legend label -> bar lengths of that series."""
    axes = figure.axes[0]
    return {c.get_label(): [p.get_width() for p in c.patches] for c in axes.containers}


def test_differences_per_table_stacks_kinds_per_table(tmp_path):
    path = tmp_path / "out" / "per_table.png"
    figure = plots.differences_per_table(validation(), save_to=path)
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["pg.patients", "ddb.visits"]
    widths = bar_widths(figure)
    assert widths == {
        "missing": [1, 0], "extra": [1, 0], "changed": [2, 0]}
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_differences_per_bucket_counts_listed_differences():
    result = validation()
    figure = plots.differences_per_bucket(result, "patients")
    expected: dict[int, int] = {}
    for d in result.table("patients").differences:
        expected[d.bucket] = expected.get(d.bucket, 0) + 1
    axes = figure.axes[0]
    drawn = {int(t.get_text()): p.get_height()
             for t, p in zip(axes.get_xticklabels(), axes.containers[0].patches, strict=True)}
    assert drawn == expected and sum(drawn.values()) == 4


def test_differences_per_bucket_says_when_nothing_differs():
    figure = plots.differences_per_bucket(validation(), "visits")
    assert [t.get_text() for t in figure.axes[0].texts] == ["no mismatched bucket"]


def test_differences_per_segment_colours_segments_by_status(tmp_path):
    rows = [{"id": i, "name": f"n{i}"} for i in range(300)]
    manifest = Manifest(position={"lsn": "0/1"}, taken_at="sun")
    manifest.add(TableManifest.build(SPEC, rows, buckets=8, boundaries=[[100], [200]]))
    restored = [r for r in rows if r["id"] != 150]
    figure = plots.differences_per_segment(verify_restore({"patients": restored}, manifest, [SPEC]),
                                           save_to=tmp_path / "segments.svg")
    patches = figure.axes[0].containers[0].patches
    assert [p.get_height() for p in patches] == [0, 1, 0]
    assert [p.get_facecolor()[:3] for p in patches][1] != [p.get_facecolor()[:3] for p in patches][0]
    assert (tmp_path / "segments.svg").read_text().lstrip().startswith("<?xml")


def report(reasons=()) -> RunReport:
    return RunReport(job="demo", mode="run", status="succeeded", started_at="2026-11-26T10:00:00+00:00",
                     finished_at="2026-11-26T10:00:10+00:00", seconds=10.0,
                     tables=[TableReport("mongo.customers", 2, 2, 60, 60, 0, 0, extracted_this_run=60,
                                         seconds=4.0, top_reasons=list(reasons))])


def test_rows_per_second_from_batches_is_the_running_average():
    progress = pd.DataFrame({"seconds": [1.0, 2.0, 4.0], "table": ["mongo.customers"] * 3,
                             "extracted": [10, 30, 20], "loaded": [10, 30, 20], "rejected": [0, 0, 0],
                             "filtered": [0, 0, 0]})
    [line] = plots.rows_per_second(report(), progress).axes[0].lines
    assert list(line.get_xdata()) == [1.0, 2.0, 4.0]
    assert list(line.get_ydata()) == [10.0, 20.0, 15.0]


def test_rows_per_second_without_batches_uses_the_report_per_table():
    figure = plots.rows_per_second(report())
    assert [p.get_width() for p in figure.axes[0].patches] == [15.0]
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["mongo.customers"]
    assert [t.get_text() for t in figure.axes[0].texts] == ["60 records in 4.00 s"]


def test_a_short_run_is_drawn_per_table_not_as_points_milliseconds_apart():
    """The demo: two batches 7 ms apart. A line through them would be a rate of nothing."""
    progress = pd.DataFrame({"seconds": [0.512, 0.519], "table": ["mongo.customers"] * 2,
                             "extracted": [30, 29], "loaded": [30, 29], "rejected": [0, 0],
                             "filtered": [0, 0]})
    axes = plots.rows_per_second(report(), progress).axes[0]
    assert list(axes.lines) == []
    assert [p.get_width() for p in axes.patches] == [15.0]
    assert [t.get_text() for t in axes.texts] == ["60 records in 4.00 s"]


def test_the_segment_legend_draws_each_status_in_its_colour():
    rows = [{"id": i, "name": f"n{i}"} for i in range(300)]
    manifest = Manifest(position={"lsn": "0/1"}, taken_at="sun")
    manifest.add(TableManifest.build(SPEC, rows, buckets=8, boundaries=[[100], [200]]))
    figure = plots.differences_per_segment(verify_restore({"patients": rows[1:]}, manifest, [SPEC]))
    legend = figure.axes[0].get_legend()
    drawn = {text.get_text(): to_hex(patch.get_facecolor())
             for text, patch in zip(legend.get_texts(), legend.get_patches(), strict=True)}
    assert drawn == {"ok": "#1a7f37", "drift": "#9a6700", "mismatch": "#cf222e"}


def test_reject_reasons_ranks_reasons_and_says_when_there_are_none():
    figure = plots.reject_reasons(report([("total: not a decimal", 3), ("email: required", 5)]))
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_yticklabels()] == ["mongo.customers: email: required",
                                                              "mongo.customers: total: not a decimal"]
    assert [p.get_width() for p in axes.patches] == [5, 3]
    assert [t.get_text() for t in plots.reject_reasons(report()).axes[0].texts] == ["no rejected records"]


def test_differences_per_table_without_differences_still_lists_the_tables():
    equal = JobValidation([validation().table("visits")])
    axes = plots.differences_per_table(equal).axes[0]
    assert axes.get_title() == "Differences per table: none"
    assert [t.get_text() for t in axes.get_yticklabels()] == ["ddb.visits"]
    assert [p.get_width() for p in axes.patches] == [0]
