"""Manifests: JSON and Parquet round trips, comparison without rows, differential composition."""

from __future__ import annotations

from decimal import Decimal

import pytest

from etl.checksum import Manifest, ManifestError, TableManifest, Tolerances, compare_with_manifest
from etl.records import Column, TableSpec

SPEC = TableSpec(
    "pg", "invoice", ("invoice_id",), (Column("invoice_id", "int"), Column("total", "decimal(10,2)"))
)
BOUNDARIES = [[100], [200]]


def rows(n: int = 300) -> list[dict]:
    return [{"invoice_id": i, "total": Decimal(i) / 100} for i in range(n)]


def full_manifest(data: list[dict]) -> Manifest:
    manifest = Manifest(position={"lsn": "0/3000060"}, taken_at="2026-01-01T00:00:00+00:00")
    manifest.add(TableManifest.build(SPEC, data, buckets=32, boundaries=BOUNDARIES))
    return manifest


@pytest.mark.parametrize("suffix", [".json", ".parquet"])
def test_save_and_load_round_trip(tmp_path, suffix: str) -> None:
    manifest = full_manifest(rows())
    path = tmp_path / f"m{suffix}"
    manifest.save(path)
    loaded = Manifest.load(path)
    assert loaded.to_dict() == manifest.to_dict()
    table = loaded.tables["invoice"]
    assert [s.checksums.rows for s in table.segments.values()] == [100, 100, 100]
    assert loaded.position == {"lsn": "0/3000060"}


def test_equal_side_matches_its_manifest() -> None:
    result = compare_with_manifest(SPEC, full_manifest(rows()).tables["invoice"], reversed(rows()))
    assert result.ok and (result.rows_source, result.rows_target) == (300, 300)


def test_a_change_is_localised_to_its_segment_and_bucket() -> None:
    changed = rows()
    changed[150]["total"] = Decimal("7")
    result = compare_with_manifest(SPEC, full_manifest(rows()).tables["invoice"], changed)
    assert not result.ok and result.unresolved_buckets == 1
    [difference] = result.differences
    assert (difference.kind, difference.segment) == ("bucket", "1")
    assert difference.source_count == difference.target_count > 0  # same rows, one changed
    deleted = [r for r in rows() if r["invoice_id"] != 250]
    [gone] = compare_with_manifest(SPEC, full_manifest(rows()).tables["invoice"], deleted).differences
    assert gone.segment == "2" and gone.target_count == gone.source_count - 1


def test_compose_replaces_the_changed_segments() -> None:
    base = full_manifest(rows())
    later = rows()
    later[250]["total"] = Decimal("1")
    differential = Manifest(position={"lsn": "0/4000000"}, kind="differential", base=base.taken_at)
    differential.add(TableManifest.build(SPEC, later, buckets=32, boundaries=BOUNDARIES, only_segments=[2]))
    assert list(differential.tables["invoice"].segments) == [2]
    composed = Manifest.compose(base, differential)
    assert composed.position == {"lsn": "0/4000000"} and composed.kind == "full"
    assert compare_with_manifest(SPEC, composed.tables["invoice"], later).ok
    assert not compare_with_manifest(SPEC, base.tables["invoice"], later).ok
    assert base.tables["invoice"].segments[2].checksums != composed.tables["invoice"].segments[2].checksums


def test_compose_refuses_a_differential_with_other_segments() -> None:
    base = full_manifest(rows())
    differential = Manifest(kind="differential")
    differential.add(TableManifest.build(SPEC, rows(), buckets=32, boundaries=[[150]], only_segments=[1]))
    with pytest.raises(ManifestError, match="table invoice: boundaries of the differential manifest"):
        Manifest.compose(base, differential)
    with pytest.raises(ManifestError, match="is full, not differential"):
        Manifest.compose(base, base)


def test_manifest_tolerances_are_used_when_comparing() -> None:
    manifest = TableManifest.build(SPEC, rows(), buckets=8, tolerances=Tolerances(rstrip_char=True))
    assert manifest.tolerances["rstrip_char"] is True
    assert compare_with_manifest(SPEC, manifest, rows()).tolerances == {"rstrip_char": True}


def test_unreadable_manifest_says_which_file(tmp_path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{")
    with pytest.raises(ManifestError, match="broken.json: not a readable manifest"):
        Manifest.load(path)
