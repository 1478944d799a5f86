"""The report of one run: per table extracted / loaded / rejected / filtered, speed, validation,
the most frequent reject reasons, and where the dead letters and the state are.

Saved as JSON (for machines and audits) and Markdown (for people) in the job's report folder.
A report holds counts, keys and reasons only: never a password, a DSN or a raw field value.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from etl.errors import EtlError, RuntimeFailure, ValidationDifferences
from etl.files import write_private
from etl.redact import redact

SUCCEEDED = "succeeded"
NOTHING_TO_DO = "nothing to do"
DIFFERENCES = "differences"
BAD_FILE = "bad job or mapping file"
STOPPED = "stopped"
FAILED = "failed"
UNPROVEN = "unproven"
"""The run did what it was asked, but nothing proves the targets equal to the sources yet: a
`--limit` try, or a job that does not validate after its run (`validation.after_run: false`)."""

EXIT_CODES = {SUCCEEDED: 0, NOTHING_TO_DO: 0, DIFFERENCES: 1, BAD_FILE: 2, STOPPED: 3, FAILED: 3, UNPROVEN: 4}
"""The exit code is the verdict: 0 only for a job whose targets are proven equal (`docs/verdicts.md`)."""


@dataclass
class TableReport:
    table: str
    """`source.table`."""
    partitions: int
    partitions_done: int
    extracted: int
    """Cumulative since the job's last full refresh (a resumed run includes what earlier runs did)."""
    loaded: int
    rejected: int
    filtered: int
    extracted_this_run: int = 0
    seconds: float = 0.0
    """Wall time this run spent on the table."""
    rows: dict[str, int] = field(default_factory=dict)
    """Rows written per target table (`target.table`), cumulative."""
    top_reasons: list[tuple[str, int]] = field(default_factory=list)
    warnings: dict[str, int] = field(default_factory=dict)
    """What the source counted while this run read the table (`source.warnings`: precision loss,
    a snapshot fallback...), by warning."""
    changes: dict[str, Any] | None = None
    """Incremental runs: how changes were found (`method`), the changes `applied` by kind, the target
    rows deleted, the records found deleted, the `position` reached, the last change's time and the
    lag. The counts above are then this run's changes, deletes included."""

    @property
    def rows_per_second(self) -> float:
        return self.extracted_this_run / self.seconds if self.seconds > 0 else 0.0

    @property
    def balanced(self) -> bool:
        return self.extracted == self.loaded + self.rejected + self.filtered


@dataclass
class TableCheck:
    """The validation of one target table."""

    target: str
    table: str
    ok: bool
    rows_source: int
    rows_target: int
    missing: int
    extra: int
    changed: int
    duplicates: int = 0
    """Keys found more than once on one side."""
    unresolved_buckets: int = 0
    """Mismatched buckets no rows could explain (validating against a manifest)."""
    rejected: int = 0
    """Source records rejected with a reason (by the source, the mapping or this table at load),
    left out of both sides of the comparison: rejects, not missing rows."""
    first_keys: list[str] = field(default_factory=list)
    """The first differing keys, with their kind (`missing: customer_id=7`)."""
    differences_file: str | None = None
    """JSON file listing every difference found (up to validation.max_differences)."""
    tolerances: dict[str, Any] = field(default_factory=dict)
    """The comparison tolerances that were on (empty: exact), shown in every report."""


@dataclass
class SourceCheck:
    """The completeness of one source table (`etl.checksum.SourceCount`) as reported."""

    table: str
    counted: int | None
    """By the source's own count; None where only reading can tell (a dump file)."""
    read: int
    """By validation's reading."""
    extracted: int | None
    """By the load, cumulative since the last full refresh (None when not known)."""
    ok: bool
    problem: str | None = None


@dataclass
class RunReport:
    job: str
    mode: str
    """"run" or "validate"."""
    status: str
    started_at: str
    finished_at: str
    seconds: float
    tables: list[TableReport] = field(default_factory=list)
    validation: list[TableCheck] | None = None
    sources: list[SourceCheck] | None = None
    """Completeness of every source table validated: its own count beside what was read and moved."""
    message: str | None = None
    """Why the run did not succeed, or what was done when there was nothing to do."""
    hint: str | None = None
    shard: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    dead_letters: str | None = None
    state: str | None = None
    files: list[str] = field(default_factory=list)
    """Where this report was saved."""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def totals(self) -> TableReport:
        total = TableReport("total", 0, 0, 0, 0, 0, 0)
        for t in self.tables:
            total.partitions += t.partitions
            total.partitions_done += t.partitions_done
            total.extracted += t.extracted
            total.loaded += t.loaded
            total.rejected += t.rejected
            total.filtered += t.filtered
            total.extracted_this_run += t.extracted_this_run
            for key, value in t.rows.items():
                total.rows[key] = total.rows.get(key, 0) + value
        total.seconds = self.seconds
        return total

    def error(self) -> EtlError | None:
        """The error this report stands for: None when the run succeeded, and for an unproven run,
        which did what it was asked (a `--limit` try, a run without validation) but is not green:
        `ok` is False and the command exits 4."""
        if self.ok or self.status == UNPROVEN:
            return None
        cls = ValidationDifferences if self.status == DIFFERENCES else RuntimeFailure
        return cls(self.message or self.status, hint=self.hint)

    def raise_for_status(self) -> RunReport:
        error = self.error()
        if error is not None:
            raise error
        return self

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["exit_code"] = self.exit_code
        for table in data["tables"]:
            table["rows_per_second"] = round(
                table["extracted_this_run"] / table["seconds"], 1) if table["seconds"] else 0.0
            table["top_reasons"] = [{"reason": r, "count": c} for r, c in table["top_reasons"]]
        return data

    def to_json(self) -> str:
        return redact(json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str))

    def save(self, folder: Path) -> list[Path]:
        """Write `<job>-<mode>-<time>.json` and `.md` into `folder`; returns both paths."""
        from etl.report.markdown import render_markdown

        stamp = datetime.fromisoformat(self.started_at).strftime("%Y%m%dT%H%M%S")
        stem = folder / f"{self.job}-{self.mode}-{stamp}"
        json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
        self.files = [str(json_path), str(md_path)]
        write_private(json_path, self.to_json() + "\n")
        write_private(md_path, render_markdown(self))
        return [json_path, md_path]
