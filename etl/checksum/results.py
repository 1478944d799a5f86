"""Validation results: what differs, per table and per job, as objects, DataFrames, JSON and HTML.

Values are shown as stored in the target model: PII columns hold their already transformed
value (HMAC, mask...), never anything else, because that is all the validator ever reads.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from etl.checksum.canonical import MISSING
from etl.errors import ValidationDifferences
from etl.html_table import html_table

if TYPE_CHECKING:
    import pandas as pd

DIFFERENCE_COLUMNS = ["table", "key", "kind", "field", "source_value", "target_value", "bucket"]


def json_value(value: Any) -> Any:
    """A JSON-safe rendering of a canonical Python value (for reports and files)."""
    if value is MISSING:
        return "<missing>"
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else repr(value)
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return f"{value.total_seconds()}s"
    if isinstance(value, bytes | bytearray | memoryview):
        return "base64:" + base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((json_value(v) for v in value), key=repr)
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return f"<{type(value).__name__}>"


def key_text(key: dict[str, Any]) -> str:
    """`a=1, b='x'`: a key as text for reports (key columns only, never other fields)."""
    return ", ".join(f"{name}={value!r}" for name, value in key.items())


@dataclass(frozen=True)
class FieldDifference:
    field: str
    source_value: Any
    """As stored in the target model (`MISSING` when the column is absent)."""
    target_value: Any


@dataclass(frozen=True)
class Difference:
    kind: str
    """"missing" (in source, not in target), "extra" (in target, not in source), "changed",
    "duplicate" (a key twice on one side, see `side`), or "bucket" (a bucket differs and no rows
    explain it: comparisons against a manifest, or a side that changed between the passes)."""
    key: dict[str, Any]
    """Key column -> value; empty for "bucket" differences."""
    bucket: int
    fields: tuple[FieldDifference, ...] = ()
    """For "changed": every field that differs, with both values."""
    segment: str | None = None
    """For manifest comparisons: the key-range segment the bucket belongs to."""
    source_count: int | None = None
    """For "bucket": rows in the bucket on each side."""
    target_count: int | None = None
    side: str | None = None
    """For "duplicate": "source" or "target"."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "key": {k: json_value(v) for k, v in self.key.items()},
            "bucket": self.bucket,
        }
        if self.fields:
            out["fields"] = [
                {
                    "field": f.field,
                    "source_value": json_value(f.source_value),
                    "target_value": json_value(f.target_value),
                }
                for f in self.fields
            ]
        if self.segment is not None:
            out["segment"] = self.segment
        if self.side is not None:
            out["side"] = self.side
        if self.kind == "bucket":
            out["source_count"] = self.source_count
            out["target_count"] = self.target_count
        return out


@dataclass
class TableValidation:
    """The comparison of one table: counts, buckets and the (first `max_differences`) differences."""

    table: str
    target: str
    rows_source: int
    rows_target: int
    buckets: int
    mismatched_buckets: list[int] = field(default_factory=list)
    missing: int = 0
    extra: int = 0
    changed: int = 0
    duplicates: int = 0
    """Keys found more than once on one side."""
    unresolved_buckets: int = 0
    """Mismatched buckets no rows could explain (comparing against a manifest: no rows to read)."""
    differences: list[Difference] = field(default_factory=list)
    tolerances: dict[str, Any] = field(default_factory=dict)
    """The tolerances that were on (empty: exact comparison)."""
    max_differences: int = 100
    rejected: int = 0
    """Source records rejected with a reason (by the source, the mapping or this target at load)
    that the caller left out of both sides: reported as rejects, never as missing."""
    row_hashes: str = "canonical"
    """"canonical": the rows' canonical hashes (docs/checksum.md §8); "native": both sides' engine's
    own hash functions (etl/checksum/native.py)."""

    @property
    def ok(self) -> bool:
        return self.difference_count == 0

    @property
    def difference_count(self) -> int:
        return self.missing + self.extra + self.changed + self.duplicates + self.unresolved_buckets

    @property
    def truncated(self) -> bool:
        """True when more differences were counted than listed."""
        return self.difference_count > len(self.differences)

    def summary_row(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "target": self.target,
            "ok": self.ok,
            "status": "pass" if self.ok else "FAIL",
            "rows_source": self.rows_source,
            "rows_target": self.rows_target,
            "buckets": self.buckets,
            "mismatched_buckets": len(self.mismatched_buckets),
            "missing": self.missing,
            "extra": self.extra,
            "changed": self.changed,
            "duplicates": self.duplicates,
            "unresolved_buckets": self.unresolved_buckets,
            "tolerances": ", ".join(f"{k}={v}" for k, v in self.tolerances.items()),
        }

    def difference_rows(self) -> list[dict[str, Any]]:
        """One row per differing field (missing/extra/bucket differences: one row, field None)."""
        rows = []
        for difference in self.differences:
            base = {
                "table": self.table,
                "key": key_text(difference.key),
                "kind": difference.kind,
                "bucket": difference.bucket,
            }
            if difference.fields:
                for f in difference.fields:
                    rows.append(
                        {
                            **base,
                            "field": f.field,
                            "source_value": f.source_value,
                            "target_value": f.target_value,
                        }
                    )
            else:
                rows.append({**base, "field": None, "source_value": None, "target_value": None})
        return rows

    def to_pandas(self) -> pd.DataFrame:
        """The listed differences: key, kind, field, source_value, target_value (one row per field)."""
        import pandas as pd

        return pd.DataFrame(self.difference_rows(), columns=DIFFERENCE_COLUMNS)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary_row(),
            "tolerances": {k: json_value(v) for k, v in self.tolerances.items()},
            "mismatched_bucket_list": self.mismatched_buckets,
            "truncated": self.truncated,
            "differences": [d.to_dict() for d in self.differences],
        }


@dataclass
class SourceCount:
    """Completeness of one source table: how many records the source itself says it holds, beside
    how many validation read and how many the runs since the last full refresh extracted.

    A reader that stops early (a damaged file, a lost page) reads the same short stream when it
    validates, so row checksums alone cannot see it; a count from the source can."""

    table: str
    """`source.table`."""
    counted: int | None
    """What the source says (`COUNT(*)`, `countDocuments`); None where only reading can tell (a dump
    file, whose reader must consume it to its last byte instead)."""
    read: int
    """Records validation read (damaged regions included, as the rejects they are)."""
    extracted: int | None = None
    """Records the load extracted, cumulative (None when not known, as in `--validate-only`)."""
    rejected: int = 0
    """Records validation's reading rejected (undecodable at the source, or by the mapping)."""
    unseen: list[str] = field(default_factory=list)
    """Mapped paths (not optional) that none of the records read had, each with its place in the
    mapping file: the rows hold NULL or the default there on both sides, so no checksum can tell."""

    @property
    def expected(self) -> int:
        return self.counted if self.counted is not None else self.read

    @property
    def counts_agree(self) -> bool:
        return self.read == self.expected and (self.extracted is None or self.extracted == self.expected)

    @property
    def ok(self) -> bool:
        return self.counts_agree and not self.unseen

    def problem(self) -> str | None:
        """What is wrong, in words (None when nothing is)."""
        said = []
        if not self.counts_agree:
            holds = f"source {self.table} holds {self.expected} records"
            holds += " by its own count" if self.counted is not None else ""
            wrong = []
            if self.read != self.expected:
                wrong.append(f"validation read {self.read}")
            if self.extracted is not None and self.extracted != self.expected:
                wrong.append(f"the load extracted {self.extracted}")
            said.append(f"{holds}, but {' and '.join(wrong)}")
        if self.unseen:
            said.append(f"mapped paths absent from all {self.read} records of {self.table}: "
                        + "; ".join(self.unseen))
        return "; ".join(said) or None


@dataclass
class JobValidation:
    """Every table validated by one job (or one `--validate-only` run)."""

    tables: list[TableValidation] = field(default_factory=list)
    sources: list[SourceCount] = field(default_factory=list)
    """The record count of every source table validated (its completeness)."""

    @property
    def ok(self) -> bool:
        return all(table.ok for table in self.tables) and all(source.ok for source in self.sources)

    def table(self, name: str) -> TableValidation:
        for table in self.tables:
            if table.table == name:
                return table
        raise KeyError(name)

    def raise_if_different(self) -> None:
        """Raise `ValidationDifferences` (exit code 1) naming each differing table, its counts
        and its first differing keys; do nothing when every table is equal."""
        failing = [table for table in self.tables if not table.ok]
        incomplete = [source.problem() for source in self.sources if not source.ok]
        if not failing and not incomplete:
            return
        lines = [problem for problem in incomplete if problem]
        for table in failing:
            keys = [key_text(d.key) for d in table.differences if d.key][:5]
            lines.append(
                f"{table.target}.{table.table}: {table.missing} missing, {table.extra} extra,"
                f" {table.changed} changed, {table.duplicates} duplicate keys,"
                f" {table.unresolved_buckets} unresolved buckets"
                + (f"; first keys: {'; '.join(keys)}" if keys else "")
            )
        raise ValidationDifferences(
            "validation found differences:\n  " + "\n  ".join(lines),
            hint="see the validation report for every differing field",
        )

    def summary(self) -> pd.DataFrame:
        """One row per table: counts, buckets, differences by kind, tolerances on."""
        import pandas as pd

        rows = [table.summary_row() for table in self.tables]
        return pd.DataFrame(rows, columns=list(TableValidation("", "", 0, 0, 0).summary_row()))

    def differences(self, table: str) -> pd.DataFrame:
        return self.table(table).to_pandas()

    def to_pandas(self) -> pd.DataFrame:
        """Every listed difference of every table (the `table` column says which)."""
        import pandas as pd

        rows = [row for table in self.tables for row in table.difference_rows()]
        return pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS)

    def to_json(self) -> str:
        return json.dumps({"ok": self.ok, "tables": [table.to_dict() for table in self.tables]}, indent=2)

    def _repr_html_(self) -> str:
        colour = {True: "#1a7f37", False: "#cf222e"}
        columns = [("table", "table"), ("target", "target"), ("status", "result"),
                   ("rows_source", "rows source"), ("rows_target", "rows target"), ("missing", "missing"),
                   ("extra", "extra"), ("changed", "changed"), ("tolerances", "tolerances")]
        rows = [table.summary_row() for table in self.tables]
        verdict = "all tables equal" if self.ok else "differences found"
        return (f'<p style="color:{colour[self.ok]};font-weight:bold">{verdict}</p>'
                + html_table(columns, rows, colour=lambda row: colour[row["ok"]]))
