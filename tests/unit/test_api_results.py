"""Result objects as notebooks show them: restore verification summaries and differences by key and
segment, and well-formed HTML holding the summary table with pass/fail colours."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from etl.checksum import JobValidation, Manifest, TableManifest, validate_table
from etl.records import Column, TableSpec
from etl.restore import RestoreVerification, verify_restore

SPEC = TableSpec("pg", "patients", ("id",), (Column("id", "int", nullable=False), Column("name", "string"),
                                              Column("updated_at", "timestamptz(6)")))
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def patients() -> list[dict]:
    return [{"id": i, "name": f"patient {i}", "updated_at": T0} for i in range(400)]


def verification() -> RestoreVerification:
    """400 rows in 4 segments at the manifest; the restore renamed row 250 and lost row 42."""
    manifest = Manifest(position={"lsn": "0/3000060"}, taken_at="sun")
    manifest.add(TableManifest.build(SPEC, patients(), buckets=16, boundaries=[[100], [200], [300]]))
    restored = [dict(r, name="renamed") if r["id"] == 250 else r for r in patients() if r["id"] != 42]
    return verify_restore({"patients": restored}, manifest, [SPEC], reference={"patients": patients()})


def test_restore_summary_has_one_row_per_table_with_status_and_counts():
    summary = verification().summary()
    assert list(summary.columns) == ["table", "status", "expected_rows", "restored_rows", "segments",
                                     "mismatched_segments", "drift_segments", "mismatched_buckets",
                                     "missing", "extra", "changed", "drift_rows"]
    assert summary.values.tolist() == [["patients", "FAIL", 400, 399, 4, 2, 0, 2, 1, 0, 1, 0]]


def test_restore_differences_name_the_key_the_field_and_the_segment():
    frame = verification().differences("patients").sort_values("key")
    assert list(frame.columns) == ["table", "key", "kind", "field", "source_value", "target_value",
                                   "bucket", "segment"]
    assert frame[["key", "kind", "field", "source_value", "target_value", "segment"]].values.tolist() == [
        ["id=250", "changed", "name", "patient 250", "renamed", 2],
        ["id=42", "missing", None, None, None, 0],
    ]
    assert len(verification().to_pandas()) == 2


def test_restore_without_reference_rows_has_no_row_counts():
    manifest = Manifest(position={"lsn": "0/1"}, taken_at="sun")
    manifest.add(TableManifest.build(SPEC, patients(), buckets=16, boundaries=[[200]]))
    result = verify_restore({"patients": patients()[1:]}, manifest, [SPEC])
    row = result.summary().iloc[0]
    assert (row["status"], row["mismatched_segments"], row["restored_rows"]) == ("FAIL", 1, 399)
    assert row.isna()[["missing", "extra", "changed"]].tolist() == [True, True, True]
    assert result.differences("patients").empty


def _cells(page: str) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, body rows and row colours of the one summary table in a page (parsed as XML, so
    the page must be well-formed)."""
    root = ET.fromstring(f"<div>{page}</div>")
    [table] = root.iter("table")
    rows = list(table.iter("tr"))
    header = [th.text or "" for th in rows[0].iter("th")]
    body = [[td.text or "" for td in tr.iter("td")] for tr in rows[1:]]
    return header, body, [tr.get("style", "") for tr in rows[1:]]


def test_restore_html_is_well_formed_with_a_red_failing_row():
    page = verification()._repr_html_()
    header, body, styles = _cells(page)
    assert header[:3] == ["table", "status", "expected rows"]
    assert body == [["patients", "FAIL", "400", "399", "4", "2", "0", "2", "1", "0", "1", "0"]]
    assert styles == ["color:#cf222e"]
    verdict = ET.fromstring(f"<div>{page}</div>").find("p")
    assert verdict.text == "restore verified against the manifest at lsn 0/3000060: differences found"
    assert verdict.get("style") == "color:#cf222e;font-weight:bold"


def test_validation_html_is_well_formed_with_pass_and_fail_colours():
    source = [{"id": i, "name": f"n<{i}>", "updated_at": T0} for i in range(10)]
    changed = validate_table(SPEC, lambda: source, lambda: [dict(r, name="x") if r["id"] == 3 else r
                                                            for r in source])
    equal = validate_table(TableSpec("pg", "visits", SPEC.key, SPEC.columns), lambda: source, lambda: source)
    result = JobValidation([changed, equal])
    assert list(result.summary().columns) == [
        "table", "target", "ok", "status", "rows_source", "rows_target", "buckets", "mismatched_buckets",
        "missing", "extra", "changed", "duplicates", "unresolved_buckets", "tolerances"]
    assert result.summary()[["table", "status", "changed"]].values.tolist() == [["patients", "FAIL", 1],
                                                                                 ["visits", "pass", 0]]
    header, body, styles = _cells(result._repr_html_())
    # no tolerances were on: the column would be blank in every row, so it is left out
    assert header == ["table", "target", "result", "rows source", "rows target", "missing", "extra",
                      "changed"]
    assert body == [["patients", "pg", "FAIL", "10", "10", "0", "0", "1"],
                    ["visits", "pg", "pass", "10", "10", "0", "0", "0"]]
    assert styles == ["color:#cf222e", "color:#1a7f37"]
