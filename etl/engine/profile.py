"""`--profile`: a pre-flight scan of a job's tables through their mappings and the sinks' own checks,
writing nothing, that predicts every record a run would reject and why.

Each batch is read, mapped and checked exactly as the partition worker would (`etl/engine/worker.py`:
the source's extract rejects, `CompiledMapping.apply`'s map rejects, then each sink's `check`, the
encoding and value checks its `write` makes before sending anything), so the predicted rejects are
the dead letters a run on the same data would write. Rejects a target can only make when it is
written to (a refused conditional write, a constraint of an existing table) are not predicted.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etl.engine.plan import select_tables
from etl.engine.planning import plan_tables
from etl.engine.resources import JobResources
from etl.files import write_private
from etl.mapping.compile import key_size
from etl.mapping.pii import looks_like_pii
from etl.records import Batch, Reject, TableRows
from etl.redact import redact
from etl.sinks import rules_for

_KIND_WORDS = (
    ("null in a key", re.compile(r"key .*(missing|null|empty)", re.I)),
    ("size", re.compile(r"\bbytes\b|size limit|too long|characters", re.I)),
    ("range", re.compile(r"range|digits|magnitude|exponent|year|bits|beyond|NaN|Infinity|does not fit",
                         re.I)),
)


def reject_kind(reason: str) -> str:
    """The kind of a reject's reason: null in a key, size, range, or type (anything else)."""
    for kind, words in _KIND_WORDS:
        if words.search(reason):
            return kind
    return "type"


@dataclass
class ColumnSummary:
    """What one output column held over the profiled records: counts, and the smallest and largest
    value as text (never for a column whose values may be personal data)."""

    values: int = 0
    nulls: int = 0
    min: Any = None
    max: Any = None
    pii: bool = False

    def add(self, value: Any) -> None:
        self.values += 1
        if value is None:
            self.nulls += 1
            return
        if self.pii or isinstance(value, dict | list | set | frozenset | bytes | bool):
            return
        try:
            if self.min is None or value < self.min:
                self.min = value
            if self.max is None or value > self.max:
                self.max = value
        except TypeError:  # values of several kinds: no order between them
            pass

    def to_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"values": self.values, "nulls": self.nulls}
        if self.pii:
            shown["values_shown"] = "no: the column may hold personal data"
        elif self.min is not None:
            shown["min"], shown["max"] = _text(self.min), _text(self.max)
        return shown


def _text(value: Any) -> str:
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return redact(text if len(text) <= 80 else text[:77] + "...")


LISTED_REJECTS = 10_000
"""Predicted rejects listed one by one per table in the report; all are counted."""


@dataclass
class TableProfile:
    """One source table's profile. Rejects are counted as they come and kept without their records."""

    table: str
    records: int = 0
    rejected_keys: set[str] = field(default_factory=set)
    """The source keys of the records a run would reject."""
    rejects: list[dict[str, Any]] = field(default_factory=list)
    """The first `LISTED_REJECTS` predicted rejects: source key, stage, target, field, value type, reason."""
    rejected_by: dict[str, dict[str, Counter]] = field(default_factory=dict)
    """Per place (`target.table` for load rejects, `stage: source table` otherwise), per field, the count
    of rejects per kind."""
    reasons: Counter = field(default_factory=Counter)
    columns: dict[str, dict[str, ColumnSummary]] = field(default_factory=dict)
    """Per `target.table`, per column."""
    sizes: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    """Per `target.table`, measure (`item bytes`, `key pk bytes`) -> (largest seen, limit)."""

    def add_rejects(self, rejects: list[Reject]) -> None:
        for reject in rejects:
            self.rejected_keys.add(reject.source_key)
            self.reasons[reject.reason] += 1
            where = reject.target or f"{reject.stage}: {self.table}"
            self.rejected_by.setdefault(where, {}).setdefault(reject.field_path or "(record)", Counter())[
                reject_kind(reject.reason)] += 1
            if len(self.rejects) < LISTED_REJECTS:
                self.rejects.append({"source_key": reject.source_key, "stage": reject.stage,
                                     "target": reject.target, "field": reject.field_path,
                                     "value_type": reject.value_type, "reason": reject.reason})

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "records": self.records,
            "rejected_records": len(self.rejected_keys),
            "rejected_by": {where: {path: dict(kinds) for path, kinds in fields.items()}
                            for where, fields in self.rejected_by.items()},
            "rejects": self.rejects,
            "sizes": {where: {name: {"max": seen, "limit": limit} for name, (seen, limit) in sizes.items()}
                      for where, sizes in self.sizes.items()},
            "columns": {where: {name: summary.to_dict() for name, summary in columns.items()}
                        for where, columns in self.columns.items()},
        }


@dataclass
class ProfileReport:
    job: str
    sample: int | None
    tables: list[TableProfile]
    files: list[str] = field(default_factory=list)

    @property
    def predicted_rejects(self) -> int:
        return sum(len(table.rejected_keys) for table in self.tables)

    @property
    def exit_code(self) -> int:
        """1 when a run would reject records, 0 otherwise."""
        return 1 if self.predicted_rejects else 0

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "mode": "profile", "sample": self.sample,
                "predicted_rejects": self.predicted_rejects, "tables": [t.to_dict() for t in self.tables]}

    def save(self, folder: Path) -> Path:
        """Write `<job>-profile-<time>.json` into `folder` (like the run reports)."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = folder / f"{self.job}-profile-{stamp}.json"
        write_private(path, redact(json.dumps(self.to_dict(), indent=2, default=str)) + "\n")
        self.files = [str(path)]
        return path

    def text(self) -> str:
        """The summary `--profile` prints."""
        scope = f"the first {self.sample} records of each table" if self.sample else "every record"
        lines = [f"profile of job {self.job} ({scope}; nothing written): "
                 f"{self.predicted_rejects} records would be rejected"]
        for table in self.tables:
            lines.append(f"\n{table.table}: {table.records} records, "
                         f"{len(table.rejected_keys)} would be rejected")
            for where, fields in table.rejected_by.items():
                for path, kinds in fields.items():
                    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
                    lines.append(f"  rejected at {where}, {path}: {counts}")
            for reason, n in table.reasons.most_common(10):
                lines.append(f"    {n} x {redact(reason)}")
            for where, sizes in table.sizes.items():
                for name, (seen, limit) in sizes.items():
                    lines.append(f"  {where} {name}: largest {seen} of {limit}")
            for where, columns in table.columns.items():
                lines.append(f"  {where}:")
                for name, summary in columns.items():
                    shown = summary.to_dict()
                    span = (" (values not shown: may be personal data)" if summary.pii else
                            f", min {shown['min']}, max {shown['max']}" if "min" in shown else "")
                    lines.append(f"    {name}: {summary.values} values, {summary.nulls} null{span}")
        return "\n".join(lines)


def profile_job(job, *, only: tuple[str, ...] = (), sample: int | None = None) -> ProfileReport:
    """Read every table of `job` (or its first `sample` records, in key order), map each batch and
    check it with each target's sink; write nothing."""
    resources = JobResources(job)
    with ExitStack() as stack:  # planning sources stay open: partitions read the snapshot of the plan
        tables, _ = plan_tables(resources, select_tables(resources.source_tables(), only), keep_open=stack)
        pairs = [(table.source, table.table) for table in tables]
        checks = {}
        for name in sorted(job.targets):  # each sink checks with the specs its run would prepare
            sink = resources.open_sink(name)
            stack.callback(sink.close)
            checks[name] = (sink, resources.table_specs(name, pairs))
        profiles = [_profile_table(resources, table, checks, sample) for table in tables]
    return ProfileReport(job.name, sample, profiles)


def _profile_table(resources: JobResources, table, checks: dict, sample: int | None) -> TableProfile:
    mapping = resources.mapping(table.source, table.table)
    profile = TableProfile(table.key)
    pii = {column.name for spec in mapping.tables for column in spec.columns
           if column.pii or looks_like_pii(column.name)}
    source = resources.open_source(table.source)
    try:
        def key_text(record: dict) -> str:
            return source.key_text(table.table, record)

        for batch in _batches(source, table, sample):
            profile.records += len(batch.records) + len(batch.rejects)
            profile.add_rejects(batch.rejects)
            mapped = mapping.apply(batch.records, key_text, source_table=table.table)
            profile.add_rejects(mapped.rejects)
            by_target: dict[str, dict[str, TableRows]] = {}
            for (target, name), rows in mapped.rows.items():
                by_target.setdefault(target, {})[name] = rows
                _summarise(profile, mapping, resources.job.targets[target].type, (target, name), rows, pii)
            for target, target_rows in by_target.items():
                sink, specs = checks[target]
                checked = sink.check(specs, target_rows)
                profile.add_rejects(checked.rejects)
                for name, sizes in checked.sizes.items():
                    _widest(profile.sizes.setdefault(f"{target}.{name}", {}), sizes)
    finally:
        source.close()
    return profile


def _batches(source, table, sample: int | None) -> Iterator[Batch]:
    """The table's batches, partition by partition; with `sample`, only its first `sample` records (and
    the records the source could not decode among them)."""
    left = sample
    for partition in table.partitions:
        for batch in source.read(partition):
            if left is not None:
                batch = Batch(batch.records[:left], batch.resume_after, batch.rejects)
                left -= batch.extracted
            yield batch
            if left is not None and left <= 0:
                return


def _summarise(profile: TableProfile, mapping, kind: str, table: tuple[str, str], rows: TableRows,
               pii: set[str]) -> None:
    """Count the values of each column of `table` (target, name) and measure its keys against the limits
    of its kind of target."""
    target, name = table
    where = f"{target}.{name}"
    spec = next(spec for spec in mapping.tables if spec.target == target and spec.table == name)
    columns = profile.columns.setdefault(where, {})
    for column in spec.columns:
        columns.setdefault(column.name, ColumnSummary(pii=column.name in pii))
    limits = rules_for(kind).key_bytes
    sizes: dict[str, tuple[int, int]] = {}
    for row in rows.rows:
        for column in spec.columns:
            columns[column.name].add(row.get(column.name))
        if limits is not None:
            for position, key in enumerate(spec.key):
                measure = f"key {key} bytes"
                seen = sizes.get(measure, (0, limits[position]))[0]
                sizes[measure] = (max(seen, key_size(row.get(key))), limits[position])
    _widest(profile.sizes.setdefault(where, {}), sizes)


def _widest(into: dict[str, tuple[int, int]], sizes: dict[str, tuple[int, int]]) -> None:
    for measure, (seen, limit) in sizes.items():
        into[measure] = (max(seen, into.get(measure, (0, limit))[0]), limit)


def run_profile(job, *, only: tuple[str, ...] = (), sample: int | None = None) -> int:
    """`--profile`: profile, save the JSON report in the job's report folder, print the summary; the
    exit code is the report's."""
    report = profile_job(job, only=only, sample=sample)
    path = report.save(job.resolve_path(job.report.dir))
    print(report.text())
    print(f"profile saved to {path}")
    return report.exit_code
