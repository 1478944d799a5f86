"""Verify a restored database against the checksum manifest recorded for its restore point.

Manifests (etl.checksum.Manifest) are taken at backup time with the backup's position. A
differential manifest holds only the key-range segments changed since its base and names its
base by id (the base's `taken_at`); manifests compose the way their backups do: a cumulative
differential over its full, an incremental over every earlier link. Verification then compares
the restored rows table by table and segment by segment; with reference rows it drills down to
the rows that differ. Rows whose change-tracking column is after the restore point are drift:
they explain a mismatched bucket without proving the restore wrong, and are reported apart.
"""

from __future__ import annotations

import bisect
import html
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from etl.checksum import Manifest, ManifestError, TableManifest, TableValidation, Tolerances, validate_table
from etl.checksum.results import key_text
from etl.checksum.rowhash import RowHasher, bucket_of
from etl.html_table import html_table
from etl.records import TableSpec
from etl.restore.chain import BrokenChain, Kind, RestorePlan

if TYPE_CHECKING:
    import pandas as pd

RowSource = Callable[[], Iterable[dict]]
Rows = RowSource | list[dict] | tuple[dict, ...]


def manifest_id(manifest: Manifest) -> str:
    """How a differential manifest names its base (`Manifest.base`)."""
    return manifest.taken_at


def differential_manifest(base: Manifest, current: Manifest) -> Manifest:
    """The differential manifest of `current` against `base`: only the segments whose checksums
    changed (a table absent from `base` is kept whole). Take `current` as a full manifest with
    the base's boundaries, buckets and tolerances; pass the full base for a cumulative
    differential, the previous link for an incremental one (compose it first if differential)."""
    if base.kind == "differential":
        raise ManifestError(f"base manifest taken at {base.taken_at} is differential",
                            hint="compose it with its base first (compose_over_bases)")
    changed = Manifest(position=dict(current.position), taken_at=current.taken_at, kind="differential",
                       base=manifest_id(base))
    for name, table in current.tables.items():
        before = base.tables.get(name)
        if before is None:
            changed.add(table)
            continue
        if (before.buckets, before.boundaries, before.tolerances) != (table.buckets, table.boundaries,
                                                                      table.tolerances):
            raise ManifestError(f"table {name}: the manifest taken at {current.taken_at} has other segments, "
                                f"buckets or tolerances than its base taken at {base.taken_at}",
                                hint="take both with the same boundaries, buckets and tolerances")
        segments = {i: s for i, s in table.segments.items()
                    if i not in before.segments or before.segments[i].checksums.mismatched(s.checksums)}
        changed.add(replace(table, segments=segments))
    return changed


def manifest_at(history: Iterable[Manifest], position: Mapping[str, Any]) -> Manifest:
    """The full picture at `position`: the manifest taken there, composed over its base links
    (each `position` item must equal the manifest's)."""
    history = list(history)
    matches = [m for m in history if all(m.position.get(k) == v for k, v in position.items())]
    if len(matches) != 1:
        taken = ", ".join(str(m.position) for m in history) or "none"
        raise ManifestError(f"{len(matches)} manifests were taken at {dict(position)}; need exactly one",
                            hint=f"manifests given were taken at: {taken}")
    return compose_over_bases(matches[0], history)


def compose_over_bases(manifest: Manifest, history: Iterable[Manifest]) -> Manifest:
    """Walk `manifest`'s base links back to a full manifest and compose forward."""
    by_id = {manifest_id(m): m for m in history}
    links = [manifest]
    while links[-1].kind == "differential":
        base = by_id.get(links[-1].base or "")
        if base is None or base in links:
            raise BrokenChain(f"differential manifest taken at {links[-1].taken_at} names base "
                              f"{links[-1].base}, which is not among the manifests given",
                              hint="pass every manifest of the chain, the full one included")
        links.append(base)
    composed = links.pop()
    while links:
        composed = Manifest.compose(composed, links.pop())
    return composed


def manifest_for_plan(plan: RestorePlan, manifests: Mapping[str, Manifest]) -> Manifest:
    """Compose the manifests recorded with the plan's data backups (keyed by backup name):
    full + latest differential, or full + every incremental link. Each differential manifest
    must name the manifest its backup builds on, so the manifests form the same chain."""
    data_steps = [step for step in plan.steps if step.is_data]
    missing = [step.name for step in data_steps if step.name not in manifests]
    if missing:
        raise ManifestError(f"no checksum manifest for backup(s) {', '.join(missing)}",
                            hint="take a manifest with every backup, keyed by the backup's name")
    full = manifests[data_steps[0].name]
    composed, previous = full, full
    for step in data_steps[1:]:
        link = manifests[step.name]
        expected_base = full if step.kind is Kind.DIFFERENTIAL else previous
        if link.kind != "differential" or link.base != manifest_id(expected_base):
            raise BrokenChain(f"manifest of {step.kind.value} {step.name} is based on {link.base}, not on "
                              f"the manifest taken at {manifest_id(expected_base)}",
                              hint="a backup's manifest must be taken against the same base as the backup")
        composed, previous = Manifest.compose(composed, link), link
    return composed


@dataclass(frozen=True)
class SegmentCheck:
    """One key-range segment of one table: the manifest's checksums against the restored rows."""

    table: str
    segment: int
    lower: list | None
    upper: list | None
    expected_rows: int
    restored_rows: int
    mismatched_buckets: tuple[int, ...]
    drift_buckets: tuple[int, ...]
    """Mismatched buckets that hold rows changed after the restore point."""

    @property
    def status(self) -> str:
        if set(self.mismatched_buckets) - set(self.drift_buckets):
            return "mismatch"
        return "drift" if self.drift_buckets else "ok"


@dataclass
class TableCheck:
    """One table's verification: its segments, the drifted rows, and the row-level differences."""

    table: str
    expected_rows: int
    restored_rows: int
    segments: list[SegmentCheck]
    drift: list[dict[str, Any]] = field(default_factory=list)
    """Keys of restored rows changed after the restore point (in mismatched buckets)."""
    rows: TableValidation | None = None
    """Row-level differences in the mismatched buckets, when reference rows were given."""
    missing_table: bool = False

    @property
    def mismatched_segments(self) -> list[int]:
        return [s.segment for s in self.segments if s.status == "mismatch"]

    @property
    def drift_segments(self) -> list[int]:
        return [s.segment for s in self.segments if s.status == "drift"]

    @property
    def real_differences(self) -> list:
        """Row differences not explained by drift (needs reference rows)."""
        if self.rows is None:
            return []
        drifted = [dict(k) for k in self.drift]
        return [d for d in self.rows.differences if d.key not in drifted]

    @property
    def ok(self) -> bool:
        return not self.missing_table and not self.mismatched_segments


@dataclass
class RestoreVerification:
    """The restored database against the manifest of its restore point."""

    position: dict[str, Any]
    tables: list[TableCheck]
    unexpected_tables: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No real mismatch (drift may remain: see `exact`)."""
        return not self.unexpected_tables and all(t.ok for t in self.tables)

    @property
    def exact(self) -> bool:
        """The restored database is the source at the restore point: no mismatch, no drift."""
        return self.ok and not any(t.drift_segments for t in self.tables)

    def table(self, name: str) -> TableCheck:
        for check in self.tables:
            if check.table == name:
                return check
        raise KeyError(name)

    def segments_frame(self) -> pd.DataFrame:
        """One row per compared segment: bounds, row counts, mismatched and drift buckets, status."""
        import pandas as pd

        rows = [{"table": s.table, "segment": s.segment, "lower": s.lower, "upper": s.upper,
                 "expected_rows": s.expected_rows, "restored_rows": s.restored_rows,
                 "mismatched_buckets": len(s.mismatched_buckets), "drift_buckets": len(s.drift_buckets),
                 "status": s.status} for t in self.tables for s in t.segments]
        return pd.DataFrame(rows, columns=["table", "segment", "lower", "upper", "expected_rows",
                                           "restored_rows", "mismatched_buckets", "drift_buckets", "status"])

    def summary(self) -> pd.DataFrame:
        """One row per table: status (pass, drift, FAIL), rows, segments and buckets that differ,
        and the row differences by kind (missing/extra/changed; <NA> without reference rows)."""
        import pandas as pd

        frame = pd.DataFrame([_summary_row(t) for t in self.tables], columns=SUMMARY_COLUMNS)
        return frame.astype({"missing": "Int64", "extra": "Int64", "changed": "Int64"})

    def differences(self, table: str) -> pd.DataFrame:
        """The rows of `table` that differ from the reference (drift excluded): key, kind, field,
        source (reference) value, restored value, bucket and the segment the key falls in."""
        import pandas as pd

        return pd.DataFrame(_difference_rows(self.table(table)), columns=VERIFICATION_DIFFERENCE_COLUMNS)

    def to_pandas(self) -> pd.DataFrame:
        """Every table's differences in one frame (the `table` column says which)."""
        import pandas as pd

        rows = [row for check in self.tables for row in _difference_rows(check)]
        return pd.DataFrame(rows, columns=VERIFICATION_DIFFERENCE_COLUMNS)

    def _repr_html_(self) -> str:
        verdict = "exact" if self.exact else "ok (drift only)" if self.ok else "differences found"
        colour = STATUS_COLOURS["pass" if self.exact else "drift" if self.ok else "FAIL"]
        columns = [(name, name.replace("_", " ")) for name in SUMMARY_COLUMNS]
        table = html_table(columns, [_summary_row(t) for t in self.tables],
                           colour=lambda row: STATUS_COLOURS[row["status"]])
        unexpected = "".join(f"<p>{html.escape(name)}: restored but not in the manifest</p>"
                             for name in self.unexpected_tables)
        return (f'<p style="color:{colour};font-weight:bold">restore verified against the manifest at '
                f"{html.escape(position_text(self.position))}: {verdict}</p>{table}{unexpected}")

    def describe(self) -> str:
        """A short text report: one line per table, naming mismatched and drifted segments."""
        lines = [f"restore verified against the manifest at {position_text(self.position)}: "
                 + ("exact" if self.exact else "ok (drift only)" if self.ok else "DIFFERENCES")]
        for t in self.tables:
            state = "missing from the restore" if t.missing_table else \
                f"mismatched segments {t.mismatched_segments}" if t.mismatched_segments else "equal"
            drift = f", drift in segments {t.drift_segments} ({len(t.drift)} rows)" if t.drift else ""
            counts = f"{t.restored_rows} rows restored, {t.expected_rows} expected"
            lines.append(f"  {t.table}: {counts}; {state}{drift}")
        lines += [f"  {name}: restored but not in the manifest" for name in self.unexpected_tables]
        return "\n".join(lines)


def position_text(position: Any) -> str:
    """A manifest's position as people write it: `lsn 0/3000060`, `scn 1234, time ...`."""
    if isinstance(position, dict):
        return ", ".join(f"{key} {value}" for key, value in position.items()) or "(no position)"
    return str(position)


SUMMARY_COLUMNS = ["table", "status", "expected_rows", "restored_rows", "segments", "mismatched_segments",
                   "drift_segments", "mismatched_buckets", "missing", "extra", "changed", "drift_rows"]
VERIFICATION_DIFFERENCE_COLUMNS = ["table", "key", "kind", "field", "source_value", "target_value", "bucket",
                                   "segment"]
STATUS_COLOURS = {"pass": "#1a7f37", "drift": "#9a6700", "FAIL": "#cf222e"}


def _summary_row(check: TableCheck) -> dict[str, Any]:
    status = "FAIL" if not check.ok else "drift" if check.drift_segments else "pass"
    kinds = [d.kind for d in check.real_differences] if check.rows is not None else None
    return {"table": check.table, "status": status, "expected_rows": check.expected_rows,
            "restored_rows": check.restored_rows, "segments": len(check.segments),
            "mismatched_segments": len(check.mismatched_segments),
            "drift_segments": len(check.drift_segments),
            "mismatched_buckets": sum(len(s.mismatched_buckets) for s in check.segments),
            **{k: None if kinds is None else kinds.count(k) for k in ("missing", "extra", "changed")},
            "drift_rows": len(check.drift)}


def _segment_of(check: TableCheck, key: dict[str, Any]) -> int | None:
    values = tuple(key.values())
    for segment in check.segments:
        if (segment.lower is None or tuple(segment.lower) <= values) and \
                (segment.upper is None or values < tuple(segment.upper)):
            return segment.segment
    return None


def _difference_rows(check: TableCheck) -> list[dict[str, Any]]:
    if check.rows is None:
        return []
    real = check.real_differences
    rows = [row for row in check.rows.difference_rows()
            if any(key_text(d.key) == row["key"] for d in real)]
    segments = {key_text(d.key): _segment_of(check, d.key) for d in real}
    return [{**row, "segment": segments[row["key"]]} for row in rows]


def verify_restore(
    restored: Mapping[str, Rows],
    manifest: Manifest,
    specs: Mapping[str, TableSpec] | Iterable[TableSpec],
    *,
    reference: Mapping[str, Rows] | None = None,
    change_column: str | None = None,
    point: Any = None,
    max_differences: int = 100,
) -> RestoreVerification:
    """Compare restored tables (name -> rows, or a zero-argument callable returning them) with a
    full or composed manifest. `reference` rows (e.g. the source at the point) let mismatched
    buckets be drilled down to rows; `change_column` and `point` mark rows changed after the
    restore point as drift."""
    if manifest.kind == "differential":
        raise ManifestError(f"manifest taken at {manifest.taken_at} is differential: it holds only the "
                            "segments changed since its base",
                            hint="compose it first with etl.restore.manifest_at or manifest_for_plan")
    if (change_column is None) != (point is None):
        raise ManifestError("change_column and point go together: the column that records changes, "
                            "and the restore point in that column's terms")
    spec_by_name = dict(specs) if isinstance(specs, Mapping) else {s.table: s for s in specs}
    checks = []
    for name, expected in manifest.tables.items():
        spec = spec_by_name.get(name)
        if spec is None:
            raise ManifestError(f"table {name} is in the manifest but no TableSpec was given for it",
                                hint="pass the TableSpec the manifest was taken with")
        rows = _source(restored.get(name, []), name)
        reference_rows = _source(reference[name], name) if reference and name in reference else None
        checks.append(_verify_table(spec, expected, rows, reference_rows, change_column, point,
                                    max_differences, missing=name not in restored))
    unexpected = sorted(set(restored) - set(manifest.tables))
    return RestoreVerification(dict(manifest.position), checks, unexpected)


def _source(rows: Rows, table: str) -> RowSource:
    if callable(rows):
        return rows
    if isinstance(rows, list | tuple):
        return lambda: rows
    raise ManifestError(f"table {table}: rows must be a list or a zero-argument callable returning rows",
                        hint="verification reads the rows more than once")


def _verify_table(spec: TableSpec, expected: TableManifest, rows: RowSource,
                  reference: RowSource | None, change_column: str | None, point: Any,
                  max_differences: int, *, missing: bool) -> TableCheck:
    tolerances = Tolerances.model_validate(expected.tolerances)
    if list(spec.key) != expected.key:
        raise ManifestError(f"table {spec.table}: key {list(spec.key)} differs from the manifest's "
                            f"{expected.key}", hint="verify with the TableSpec the manifest was taken with")
    try:
        actual = TableManifest.build(spec, rows(), buckets=expected.buckets, tolerances=tolerances,
                                     boundaries=expected.boundaries)
    except TypeError as error:  # a key of another type than the segment boundaries (or None)
        raise ManifestError(f"table {spec.table}: a restored key cannot be placed among the manifest's "
                            f"segment boundaries ({error})",
                            hint="read the key columns with the types the manifest was taken with") from None
    mismatched = {index: segment.checksums.mismatched(actual.segments[index].checksums)
                  for index, segment in expected.segments.items()}
    wanted = {(index, bucket) for index, buckets in mismatched.items() for bucket in buckets}
    hasher = RowHasher(spec, tolerances)
    split_keys = [tuple(b) for b in expected.boundaries]

    def place(row: dict) -> tuple[int, int]:
        segment = bisect.bisect_right(split_keys, tuple(row.get(k) for k in spec.key))
        return segment, bucket_of(hasher.key_encoding(row), expected.buckets)

    drift: list[dict[str, Any]] = []
    drift_pairs: set[tuple[int, int]] = set()
    if wanted and change_column is not None:
        for row in rows():
            changed = row.get(change_column)
            if changed is not None and changed > point and (where := place(row)) in wanted:
                drift.append({k: row.get(k) for k in spec.key})
                drift_pairs.add(where)
    validation = None
    if wanted and reference is not None:
        def only_wanted(side: RowSource) -> RowSource:
            return lambda: (row for row in side() if place(row) in wanted)

        validation = validate_table(spec, only_wanted(reference), only_wanted(rows), buckets=expected.buckets,
                                    tolerances=tolerances, max_differences=max_differences)
    segments = [
        SegmentCheck(spec.table, index, segment.lower, segment.upper, segment.checksums.rows,
                     actual.segments[index].checksums.rows, tuple(mismatched[index]),
                     tuple(b for b in mismatched[index] if (index, b) in drift_pairs))
        for index, segment in sorted(expected.segments.items())
    ]
    return TableCheck(spec.table, expected.rows, sum(s.restored_rows for s in segments), segments,
                      drift, validation, missing_table=missing)
