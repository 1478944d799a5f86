"""Figures for notebooks and reports: differences per table, bucket and segment, rows/s over a run,
reject reasons.

Every function returns a `matplotlib.figure.Figure` drawn on the Agg canvas (no display, no
pyplot state shared between calls, safe in threads and headless CI) and, with `save_to=`, also
writes it to that file (format from the suffix: .png, .svg, .pdf). Jupyter shows a returned
figure once `%matplotlib inline` is on. Figures show counts, table names, bucket numbers and
reject reasons only: never a field value.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from etl.files import open_private

if TYPE_CHECKING:
    import pandas as pd

    from etl.checksum import JobValidation
    from etl.report.run_report import RunReport
    from etl.restore import RestoreVerification

KIND_COLOURS = {"missing": "#cf222e", "extra": "#bc4c00", "changed": "#8250df", "duplicates": "#0969da",
                "unresolved_buckets": "#6e7781"}
STATUS_COLOURS = {"ok": "#1a7f37", "drift": "#9a6700", "mismatch": "#cf222e"}


def _figure(width: float = 7.0, height: float = 3.5) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _done(figure: Figure, save_to: str | Path | None) -> Figure:
    if save_to is not None:
        path = Path(save_to)
        with open_private(path, "wb") as handle:
            figure.savefig(handle, format=path.suffix[1:] or None)
    return figure


def _nothing(figure: Figure, title: str, message: str) -> None:
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes)
    axes.set_axis_off()


def differences_per_table(result: JobValidation | RestoreVerification, *,
                          save_to: str | Path | None = None) -> Figure:
    """Stacked bars: differences of each kind per table (validation or restore verification)."""
    import pandas as pd

    summary = result.summary()
    kinds = [k for k in KIND_COLOURS if k in summary.columns]
    figure = _figure()
    axes = figure.add_subplot()
    labels = [f"{t}.{n}" if "target" in summary.columns else n
              for t, n in zip(summary.get("target", summary["table"]), summary["table"], strict=True)]
    bottom = [0] * len(summary)
    for kind in kinds:
        values = [0 if pd.isna(v) else int(v) for v in summary[kind]]
        if not any(values):
            continue
        axes.barh(labels, values, left=bottom, label=kind, color=KIND_COLOURS[kind])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes.set_xlabel("differences")
    if not any(bottom):
        axes.barh(labels, bottom, color=KIND_COLOURS["missing"])  # empty bars: the tables still show
    axes.set_title("Differences per table" + ("" if any(bottom) else ": none"))
    axes.invert_yaxis()
    if any(bottom):
        axes.legend(loc="lower right")
    axes.xaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]  # a MaxNLocator
    return _done(figure, save_to)


def differences_per_bucket(validation: JobValidation, table: str | None = None, *,
                           save_to: str | Path | None = None) -> Figure:
    """Listed differences per checksum bucket, one bar per mismatched bucket, per table (or one
    table): shows whether differences cluster (a bad partition) or scatter (a systematic cause)."""
    tables = [validation.table(table)] if table else validation.tables
    figure = _figure()
    counted = [(t, Counter(d.bucket for d in t.differences)) for t in tables]
    counted = [(t, c) for t, c in counted if c or t.mismatched_buckets]
    if not counted:
        _nothing(figure, "Differences per bucket", "no mismatched bucket")
        return _done(figure, save_to)
    axes = figure.add_subplot()
    for t, counts in counted:
        buckets = sorted(set(counts) | set(t.mismatched_buckets))
        axes.bar([str(b) for b in buckets], [counts.get(b, 0) for b in buckets],
                 label=f"{t.target}.{t.table}")
    axes.set_xlabel("bucket")
    axes.set_ylabel("differences listed")
    axes.set_title("Differences per bucket")
    axes.legend()
    axes.yaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]  # a MaxNLocator
    return _done(figure, save_to)


def differences_per_segment(verification: RestoreVerification, *,
                            save_to: str | Path | None = None) -> Figure:
    """Mismatched buckets per key-range segment of each table, coloured by the segment's status
    (ok, drift, mismatch): where in the key space a restore differs from its manifest."""
    frame = verification.segments_frame()
    figure = _figure()
    if frame.empty:
        _nothing(figure, "Mismatched buckets per segment", "no table verified")
        return _done(figure, save_to)
    axes = figure.add_subplot()
    labels = [f"{t}#{s}" for t, s in zip(frame["table"], frame["segment"], strict=True)]
    colours = [STATUS_COLOURS[s] for s in frame["status"]]
    axes.bar(labels, frame["mismatched_buckets"], color=colours)
    axes.set_xlabel("table#segment")
    axes.set_ylabel("mismatched buckets")
    axes.set_title("Mismatched buckets per segment")
    # one patch per status in its colour (empty bar containers all drew the legend's first colour)
    axes.legend(handles=[Patch(facecolor=colour, label=status) for status, colour in STATUS_COLOURS.items()])
    axes.yaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]  # a MaxNLocator
    axes.tick_params(axis="x", labelrotation=45)
    return _done(figure, save_to)


SHORT_RUN_SECONDS = 2.0
"""A run whose batches span less than this, or with fewer than MIN_BATCHES batches in a table, is
drawn as one bar per table: a rate over two points milliseconds apart says nothing."""
MIN_BATCHES = 3


def rows_per_second(report: RunReport, progress: pd.DataFrame | None = None, *,
                    save_to: str | Path | None = None) -> Figure:
    """Throughput of a run. With `progress` (MigrationJob.progress(): one row per committed batch)
    of a run long enough to show a trend, a line per table of records extracted per second since the
    start, batch by batch; otherwise one bar per table from the report (records/s, labelled with the
    records and the seconds they took)."""
    figure = _figure()
    axes = figure.add_subplot()
    if _long_enough(progress):
        for table, batches in progress.sort_values("seconds").groupby("table", sort=True):
            seconds = batches["seconds"].tolist()
            done = batches["extracted"].cumsum().tolist()
            rates = [n / s if s > 0 else 0.0 for n, s in zip(done, seconds, strict=True)]
            axes.plot(seconds, rates, marker="o", label=table)
        axes.set_xlabel("seconds since the run started")
        axes.set_ylabel("records/s so far")
        axes.set_ylim(bottom=0)
        axes.legend()
        axes.set_title(f"{report.job}: records per second over the run")
    else:
        names = [t.table for t in report.tables]
        bars = axes.barh(names, [t.rows_per_second for t in report.tables], color="#0969da")
        axes.bar_label(bars, labels=[f"{t.extracted_this_run:,} records in {t.seconds:,.2f} s"
                                     for t in report.tables], padding=4)
        axes.margins(x=0.45)  # room for the labels
        axes.set_xlim(left=0)
        axes.set_xlabel("records/s (this run)")
        axes.invert_yaxis()
        axes.set_title(f"{report.job}: records per second per table")
    return _done(figure, save_to)


def _long_enough(progress: pd.DataFrame | None) -> TypeGuard[pd.DataFrame]:
    if progress is None or progress.empty:
        return False
    span = progress["seconds"].max() - progress["seconds"].min()
    return span >= SHORT_RUN_SECONDS and int(progress.groupby("table").size().min()) >= MIN_BATCHES


def reject_reasons(report: RunReport, *, top: int = 10, save_to: str | Path | None = None) -> Figure:
    """The most frequent reject reasons of a run (as the report keeps them, per table)."""
    counts: Counter[tuple[str, str]] = Counter()
    for table in report.tables:
        for reason, count in table.top_reasons:
            counts[(table.table, reason)] += count
    figure = _figure(8.0, 1.2 + 0.4 * min(len(counts), top) if counts else 2.5)
    if not counts:
        _nothing(figure, f"{report.job}: reject reasons", "no rejected records")
        return _done(figure, save_to)
    axes = figure.add_subplot()
    ranked = counts.most_common(top)
    axes.barh([f"{table}: {_short(reason)}" for (table, reason), _ in ranked], [c for _, c in ranked],
              color="#cf222e")
    axes.invert_yaxis()
    axes.set_xlabel("records rejected")
    axes.set_title(f"{report.job}: reject reasons")
    axes.xaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]  # a MaxNLocator
    return _done(figure, save_to)


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
