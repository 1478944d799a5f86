"""Oracle RMAN chain rules on V$BACKUP_SET / V$BACKUP_DATAFILE / V$BACKUP_REDOLOG fixtures."""

from pathlib import Path

import pytest

from etl.restore.chain import (
    BrokenChain,
    CopyOnlyMisuse,
    Kind,
    LineageMismatch,
    PositionGap,
    TargetNotCovered,
    WrongOrder,
)
from etl.restore.oracle import load_views

FIXTURES = Path(__file__).parents[1] / "fixtures" / "restore" / "oracle"


@pytest.fixture(scope="module")
def cumulative():
    return load_views(FIXTURES / "cumulative")


def test_levels_are_read_as_full_cumulative_and_differential(cumulative):
    kinds = {b.name: (b.kind, b.base) for b in cumulative.backups if b.kind is not Kind.LOG}
    assert kinds == {"LVL0_SUN": (Kind.FULL, None), "CUM_MON": (Kind.DIFFERENTIAL, "LVL0_SUN"),
                     "CUM_TUE": (Kind.DIFFERENTIAL, "LVL0_SUN"), "DIF_WED": (Kind.INCREMENTAL, "CUM_TUE")}


def test_latest_cumulative_then_every_differential_then_redo(cumulative):
    assert cumulative.plan(8200).names == ["LVL0_SUN", "CUM_TUE", "DIF_WED",
                                           "archivelog thread 1 sequence 53"]


def test_cumulative_replaces_earlier_cumulatives(cumulative):
    assert cumulative.plan(7100).names == ["LVL0_SUN", "CUM_TUE", "archivelog thread 1 sequence 52"]


def test_fuzzy_backup_is_not_used_before_its_absolute_fuzzy_change(cumulative):
    # CUM_TUE's datafiles are fuzzy up to SCN 7003, so SCN 7001 must come from CUM_MON and redo.
    assert cumulative.plan(7001).names == ["LVL0_SUN", "CUM_MON", "archivelog thread 1 sequence 51",
                                           "archivelog thread 1 sequence 52"]


def test_target_inside_the_level0_fuzzy_range(cumulative):
    with pytest.raises(TargetNotCovered, match="no full backup is consistent at or before 5005"):
        cumulative.plan(5005)


def test_incrementals_out_of_order(cumulative):
    with pytest.raises(WrongOrder, match="CUM_MON \\(at 6000\\) is listed after CUM_TUE \\(at 7000\\)"):
        cumulative.check(["LVL0_SUN", "CUM_TUE", "CUM_MON"])


def test_missing_differential_level1_breaks_the_chain():
    chain = load_views(FIXTURES / "missing_link")
    expected = ("incremental DIF_WED is based on a backup with datafile checkpoints file 1: 7000, "
                "file 2: 7000, file 3: 7000, which is not in the history "
                "\\(the restore reaches DIF_MON at 6000\\)")
    with pytest.raises(BrokenChain, match=expected):
        chain.check(["LVL0_SUN", "DIF_MON", "DIF_WED"])
    with pytest.raises(PositionGap, match="gap between archivelog thread 1 sequence 51 \\(ends at 6500\\) "
                                          "and archivelog thread 1 sequence 53 \\(starts at 7500\\)"):
        chain.plan(8200)


def test_full_that_is_not_level0_can_be_no_incremental_parent():
    chain = load_views(FIXTURES / "full_not_level0")
    # From FULL_MON only redo moves forward; CUM_TUE applies to its level 0 (and needs redo to its
    # absolute fuzzy SCN 7003).
    assert chain.plan(7003, full="FULL_MON").names == ["FULL_MON", "archivelog thread 1 sequence 51",
                                                       "archivelog thread 1 sequence 52"]
    assert chain.plan(7003, full="LVL0_SUN").names == ["LVL0_SUN", "CUM_TUE",
                                                       "archivelog thread 1 sequence 52"]
    expected = ("CUM_TUE cannot apply to FULL_MON: FULL_MON can be no base "
                "\\(a full backup, not incremental level 0\\); its base is LVL0_SUN")
    with pytest.raises(CopyOnlyMisuse, match=expected):
        chain.check(["FULL_MON", "CUM_TUE"])


def test_redo_of_another_incarnation():
    chain = load_views(FIXTURES / "incarnation")
    with pytest.raises(LineageMismatch, match="archivelog thread 1 sequence 1 starts on incarnation 6000 but "
                                              "archivelog thread 1 sequence 51 ends on incarnation 1"):
        chain.plan(6500)
    assert chain.plan(5900).names == ["LVL0_SUN", "archivelog thread 1 sequence 50",
                                      "archivelog thread 1 sequence 51"]


def test_view_queries_are_valid_oracle_sql():
    sqlglot = pytest.importorskip("sqlglot")
    from etl.restore.oracle import VIEW_QUERIES

    for view, query in VIEW_QUERIES.items():
        tables = {t.name.upper() for t in sqlglot.parse_one(query, read="oracle").find_all(sqlglot.exp.Table)}
        assert view.upper() in tables


def test_duplicate_backup_names_are_refused():
    from etl.restore.chain import Backup, Chain, ChainError

    with pytest.raises(ChainError, match="backup names are not unique: DAILY"):
        Chain("oracle", [Backup("DAILY", Kind.FULL, 0, 10), Backup("DAILY", Kind.FULL, 20, 30)])


def test_fuzzy_level0_without_redo_is_not_a_restore_point():
    from etl.restore.chain import Backup, Chain

    chain = Chain("oracle", [Backup("LVL0", Kind.FULL, 5000, 5000, consistent=5010)])
    with pytest.raises(TargetNotCovered, match="LVL0 is consistent only once its log from 5000 to 5010 is "
                                               "replayed, and no log backup covers 5000"):
        chain.plan()


def test_online_backup_with_staggered_datafile_checkpoints():
    chain = load_views(FIXTURES / "staggered")
    cumulative = chain.get("CUM_MON")
    assert (cumulative.kind, cumulative.base) == (Kind.DIFFERENTIAL, "LVL0_SUN")
    assert (cumulative.end, cumulative.ready_at) == (6000, 6025)
    assert chain.plan(6100).names == ["LVL0_SUN", "CUM_MON", "archivelog thread 1 sequence 51"]
    with pytest.raises(TargetNotCovered, match="no full backup is consistent at or before 5055"):
        chain.plan(5055)
