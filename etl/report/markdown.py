"""The Markdown summary of a run report: what the command prints and saves beside the JSON."""

from __future__ import annotations

from etl.redact import redact
from etl.report.run_report import RunReport, SourceCheck, TableCheck, TableReport


def _number(value: int) -> str:
    return f"{value:,}"


def _table_row(t: TableReport, *, bold: bool = False) -> str:
    partitions = f"{t.partitions_done}/{t.partitions}" if t.partitions else "-"  # "-": changes applied
    cells = [t.table, _number(t.extracted), _number(t.loaded), _number(t.rejected), _number(t.filtered),
             partitions, f"{t.seconds:.1f} s", f"{t.rows_per_second:,.0f}"]
    if bold:
        cells = [f"**{c}**" for c in cells]
    return "| " + " | ".join(cells) + " |"


def _changes(tables: list[TableReport]) -> list[str]:
    """Incremental runs: what changed, how it was found, where each table stopped and how far behind."""
    changed = [t for t in tables if t.changes is not None]
    if not changed:
        return []
    lines = ["## Changes applied", "",
             "| table | found by | inserts | updates | upserts | deletes | found deleted | rows deleted "
             "| position | lag |", "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for t in changed:
        c = t.changes or {}
        applied = c.get("applied") or {}
        lag = c.get("lag_seconds")
        cells = [t.table, str(c.get("method", "")), *(_number(applied.get(kind, 0)) for kind in
                 ("insert", "update", "upsert", "delete")), _number(c.get("found_deleted", 0)),
                 _number(c.get("rows_deleted", 0)), _position(c.get("position")),
                 "-" if lag is None else f"{lag:.1f} s"]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _position(position: object) -> str:
    """A stored change position, short enough for a table cell (the JSON report has it whole)."""
    if position is None:
        return "-"
    import json

    text = json.dumps(position, sort_keys=True, default=str)
    return f"`{text if len(text) <= 60 else text[:57] + '...'}`"


def render_markdown(report: RunReport) -> str:
    lines = _heading(report)
    if report.tables:
        lines += _records_section(report)
    if report.validation is not None:
        lines += _validation_section(report.validation)
    if report.sources:
        lines += _source_counts_section(report.sources)
    where = []
    if report.dead_letters:
        where.append(f"dead letters: {report.dead_letters}")
    if report.state:
        where.append(f"state: {report.state}")
    if where:
        lines += ["; ".join(where), ""]
    return redact("\n".join(lines))


def _heading(report: RunReport) -> list[str]:
    """The title, when and how long, and the run's message with its hint."""
    lines = [f"# {report.job}: {report.mode} {report.status}", ""]
    facts = [f"started {report.started_at}", f"took {report.seconds:.1f} s"]
    if report.shard:
        facts.append(f"shard {report.shard}")
    lines += [", ".join(facts), ""]
    if report.message:
        lines += [f"**{report.message}**", ""]
        if report.hint:
            lines += [f"{report.hint}", ""]
    return lines


def _records_section(report: RunReport) -> list[str]:
    """Per table counts, rows written, the most frequent reject reasons, changes and source warnings."""
    lines = [
        "## Records",
        "",
        "| table | extracted | loaded | rejected | filtered | partitions done | duration | rows/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [_table_row(t) for t in report.tables]
    if len(report.tables) > 1:
        lines.append(_table_row(report.totals(), bold=True))
    lines.append("")
    rows = report.totals().rows
    if rows:
        lines += ["Rows written: " + ", ".join(f"{k} {_number(v)}" for k, v in sorted(rows.items())), ""]
    reasons = [(t.table, r, c) for t in report.tables for r, c in t.top_reasons]
    if reasons:
        lines += ["## Most frequent reject reasons", "", "| table | reason | records |", "|---|---|---:|"]
        lines += [f"| {table} | {reason} | {_number(count)} |" for table, reason, count in reasons]
        lines.append("")
    lines += _changes(report.tables)
    warnings = [(t.table, w, c) for t in report.tables for w, c in t.warnings.items()]
    if warnings:
        lines += ["## Source warnings", "", "| table | warning | count |", "|---|---|---:|"]
        lines += [f"| {table} | {warning} | {_number(count)} |" for table, warning, count in warnings]
        lines.append("")
    return lines


def _validation_section(validation: list[TableCheck]) -> list[str]:
    """One row per target table compared, the tolerances used and the first differences."""
    lines = [
        "## Validation",
        "",
        "| target table | result | rows source | rows target | missing | extra | changed | duplicates"
        " | unresolved buckets | rejected |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for check in validation:
        result = "equal" if check.ok else "DIFFERENT"
        cells = [f"{check.target}.{check.table}", result, _number(check.rows_source),
                 _number(check.rows_target), _number(check.missing), _number(check.extra),
                 _number(check.changed), _number(check.duplicates), _number(check.unresolved_buckets),
                 _number(check.rejected)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    tolerances = {", ".join(f"{k}={v}" for k, v in c.tolerances.items()) for c in validation}
    lines += [f"Compared with tolerances: {text}" for text in sorted(tolerances) if text]
    if any(tolerances):
        lines.append("")
    for check in validation:
        if check.first_keys:
            lines.append(f"First differences in {check.target}.{check.table}: "
                         + "; ".join(check.first_keys))
            if check.differences_file:
                lines.append(f"  (full list: {check.differences_file})")
    if any(c.first_keys for c in validation):
        lines.append("")
    return lines


def _source_counts_section(sources: list[SourceCheck]) -> list[str]:
    """Each source table's own count against what validation read and the load extracted."""
    lines = ["## Source counts", "",
             "| source table | by the source's count | read by validation | extracted by the load"
             " | result |",
             "|---|---:|---:|---:|---|"]
    for source in sources:
        cells = [source.table, "-" if source.counted is None else _number(source.counted),
                 _number(source.read), "-" if source.extracted is None else _number(source.extracted),
                 "complete" if source.ok else "INCOMPLETE"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [source.problem for source in sources if source.problem]
    if any(source.problem for source in sources):
        lines.append("")
    return lines
