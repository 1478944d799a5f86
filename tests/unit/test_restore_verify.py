"""Verification of restored rows against composed checksum manifests, segment by segment."""

from datetime import UTC, datetime, timedelta

import pytest

from etl.checksum import Manifest, ManifestError, TableManifest
from etl.records import Column, TableSpec
from etl.restore.chain import Backup, BrokenChain, Chain, Kind
from etl.restore.verify import (
    compose_over_bases,
    differential_manifest,
    manifest_at,
    manifest_for_plan,
    verify_restore,
)

SPEC = TableSpec("pg", "patients", ("id",), (Column("id", "int", nullable=False), Column("name", "string"),
                                              Column("updated_at", "timestamptz(6)")))
BOUNDARIES = [[100], [200], [300]]
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def rows_at(changes: dict[int, tuple[str, datetime]]) -> list[dict]:
    """400 patients; `changes` maps id -> (name, updated_at) for rows changed since T0."""
    out = []
    for i in range(400):
        name, updated = changes.get(i, (f"patient {i}", T0))
        out.append({"id": i, "name": name, "updated_at": updated})
    return out


def take(rows, taken_at, position, *, base=None, only=None) -> Manifest:
    manifest = Manifest(position=position, taken_at=taken_at,
                        kind="full" if base is None else "differential", base=base)
    manifest.add(TableManifest.build(SPEC, rows, buckets=16, boundaries=BOUNDARIES, only_segments=only))
    return manifest


MON = {150: ("renamed mon", T0 + timedelta(days=1))}
TUE = MON | {350: ("renamed tue", T0 + timedelta(days=2))}
FULL = take(rows_at({}), "sun", {"lsn": "0/100"})
CUM_MON = take(rows_at(MON), "mon", {"lsn": "0/200"}, base="sun", only=[1])
CUM_TUE = take(rows_at(TUE), "tue", {"lsn": "0/300"}, base="sun", only=[1, 3])
INC_TUE = take(rows_at(TUE), "tue-inc", {"lsn": "0/300"}, base="mon", only=[3])


def test_differential_manifest_holds_only_changed_segments():
    assert sorted(CUM_TUE.tables["patients"].segments) == [1, 3]
    assert sorted(INC_TUE.tables["patients"].segments) == [3]


def test_restore_at_the_point_is_exact():
    composed = manifest_at([FULL, CUM_MON, CUM_TUE], {"lsn": "0/300"})
    result = verify_restore({"patients": rows_at(TUE)}, composed, [SPEC])
    assert result.exact and result.ok
    assert [s.status for s in result.table("patients").segments] == ["ok"] * 4
    assert result.table("patients").restored_rows == 400


def test_incremental_manifests_compose_through_every_link():
    composed = compose_over_bases(INC_TUE, [FULL, CUM_MON, INC_TUE])
    assert verify_restore({"patients": rows_at(TUE)}, composed, [SPEC]).exact


def test_earlier_restore_differs_only_in_the_changed_segment():
    composed = manifest_at([FULL, CUM_MON, CUM_TUE], {"lsn": "0/300"})
    result = verify_restore({"patients": rows_at(MON)}, composed, [SPEC],
                            reference={"patients": rows_at(TUE)})
    table = result.table("patients")
    assert not result.ok
    assert table.mismatched_segments == [3]
    assert len(table.segments[3].mismatched_buckets) == 1
    [difference] = table.real_differences
    assert difference.kind == "changed" and difference.key == {"id": 350}
    assert sorted(f.field for f in difference.fields) == ["name", "updated_at"]


def test_rows_changed_after_the_point_are_drift():
    composed = manifest_at([FULL, CUM_MON], {"lsn": "0/200"})
    later = rows_at(TUE)  # restored past Monday's point: row 350 changed on Tuesday
    result = verify_restore({"patients": later}, composed, [SPEC], change_column="updated_at",
                            point=T0 + timedelta(days=1, hours=12))
    table = result.table("patients")
    assert result.ok and not result.exact
    assert table.drift == [{"id": 350}]
    assert table.drift_segments == [3] and table.mismatched_segments == []


def test_missing_row_is_a_real_mismatch_even_with_drift_on():
    composed = manifest_at([FULL, CUM_MON], {"lsn": "0/200"})
    restored = [r for r in rows_at(MON) if r["id"] != 42]
    result = verify_restore({"patients": restored}, composed, [SPEC], change_column="updated_at",
                            point=T0 + timedelta(days=1, hours=12), reference={"patients": rows_at(MON)})
    table = result.table("patients")
    assert table.mismatched_segments == [0]
    assert [(d.kind, d.key) for d in table.real_differences] == [("missing", {"id": 42})]
    assert table.segments[0].restored_rows == 99 and table.segments[0].expected_rows == 100


def test_missing_table_and_unexpected_table():
    result = verify_restore({"visits": []}, FULL, [SPEC])
    assert result.table("patients").missing_table
    assert result.unexpected_tables == ["visits"]
    assert not result.ok


def test_uncomposed_differential_is_refused():
    with pytest.raises(ManifestError, match="manifest taken at tue is differential"):
        verify_restore({"patients": rows_at(TUE)}, CUM_TUE, [SPEC])


def test_manifest_chain_with_a_missing_base():
    with pytest.raises(BrokenChain, match="manifest taken at tue-inc names base mon, which is not"):
        compose_over_bases(INC_TUE, [FULL, INC_TUE])


def _chain(second_kind: Kind) -> Chain:
    cumulative = second_kind is Kind.DIFFERENTIAL
    return Chain("test", [Backup("sun", Kind.FULL, 0, 100),
                          Backup("mon", Kind.DIFFERENTIAL, 100, 200, base="sun"),
                          Backup("tue", second_kind, 100 if cumulative else 200, 300,
                                 base="sun" if cumulative else "mon")])


def test_manifests_follow_the_plan_cumulative():
    plan = _chain(Kind.DIFFERENTIAL).plan(300)
    assert plan.names == ["sun", "tue"]
    composed = manifest_for_plan(plan, {"sun": FULL, "mon": CUM_MON, "tue": CUM_TUE})
    assert verify_restore({"patients": rows_at(TUE)}, composed, [SPEC]).exact


def test_manifests_follow_the_plan_incremental():
    plan = _chain(Kind.INCREMENTAL).plan(300)
    assert plan.names == ["sun", "mon", "tue"]
    composed = manifest_for_plan(plan, {"sun": FULL, "mon": CUM_MON, "tue": INC_TUE})
    assert verify_restore({"patients": rows_at(TUE)}, composed, [SPEC]).exact
    with pytest.raises(BrokenChain, match="manifest of incremental tue is based on sun, not on the manifest "
                                          "taken at mon"):
        manifest_for_plan(plan, {"sun": FULL, "mon": CUM_MON, "tue": CUM_TUE})


def test_differential_manifest_keeps_the_changed_segments():
    tuesday = take(rows_at(TUE), "tue", {"lsn": "0/300"})
    cumulative = differential_manifest(FULL, tuesday)
    assert (cumulative.kind, cumulative.base) == ("differential", "sun")
    assert sorted(cumulative.tables["patients"].segments) == [1, 3]
    incremental = differential_manifest(compose_over_bases(CUM_MON, [FULL, CUM_MON]), tuesday)
    assert incremental.base == "mon"
    assert sorted(incremental.tables["patients"].segments) == [3]


def test_key_of_another_type_is_reported():
    restored = [{"id": "150", "name": "x", "updated_at": T0}]
    with pytest.raises(ManifestError, match="table patients: a restored key cannot be placed among"):
        verify_restore({"patients": restored}, FULL, [SPEC])
