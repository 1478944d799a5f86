"""SQL Server chain rules on backupset / RESTORE HEADERONLY fixtures written from Microsoft's docs."""

from datetime import datetime
from pathlib import Path

import pytest

from etl.restore.chain import (
    BrokenChain,
    CopyOnlyMisuse,
    LineageMismatch,
    PositionGap,
    SystemMismatch,
    TargetNotCovered,
    WrongOrder,
)
from etl.restore.sqlserver import BACKUPSET_QUERY, load_history

FIXTURES = Path(__file__).parents[1] / "fixtures" / "restore" / "sqlserver"


def lsn(k: int) -> int:
    """The fixtures' LSNs: VLF 37, block k*100000... as numeric(25,0)."""
    return 37000000000000000 + k * 100000 + 1


@pytest.fixture(scope="module")
def chain():
    return load_history(FIXTURES / "chain.json")


def test_latest_differential_then_the_logs_after_it(chain):
    assert chain.plan(lsn(380)).names == ["full-sun", "diff-tue", "log-0400"]


def test_latest_point_applies_every_continuous_log(chain):
    plan = chain.plan()
    assert plan.names == ["full-sun", "diff-tue", "log-0400", "log-0500"]
    assert plan.reaches == lsn(500)


def test_target_at_a_differential_needs_no_log(chain):
    assert chain.plan(lsn(360)).names == ["full-sun", "diff-tue"]


def test_point_in_time_by_date(chain):
    assert chain.plan(datetime(2026, 11, 2, 12, 0)).names == ["full-sun", "diff-mon", "log-0300"]


def test_headeronly_output_plans_the_same():
    chain = load_history(FIXTURES / "headeronly.csv")
    assert chain.plan(lsn(380)).names == ["full-sun", "diff-tue", "log-0400"]
    assert chain.get("diff-tue").base == "full-sun"


def test_checked_sequence_passes(chain):
    plan = chain.check(["full-sun", "diff-mon", "log-0300", "log-0400"], lsn(390))
    assert plan.reaches == lsn(400)


def test_log_that_skips_positions_is_a_gap(chain):
    with pytest.raises(PositionGap, match=f"gap between full-sun \\(ends at {lsn(110)}\\) and log-0300 "
                                          f"\\(starts at {lsn(200)}\\)"):
        chain.check(["full-sun", "log-0300"])


def test_differentials_out_of_order(chain):
    with pytest.raises(WrongOrder, match=f"diff-mon \\(at {lsn(260)}\\) is listed after diff-tue"):
        chain.check(["full-sun", "diff-tue", "diff-mon"])


def test_sequence_must_start_with_a_full(chain):
    with pytest.raises(WrongOrder, match="starts with differential diff-mon; it must start with a full"):
        chain.check(["diff-mon", "log-0300"])


def test_target_before_any_full(chain):
    with pytest.raises(TargetNotCovered, match=f"no full backup is consistent at or before {lsn(105)}"):
        chain.plan(lsn(105))


def test_copy_only_full_is_not_the_differentials_base():
    chain = load_history(FIXTURES / "copy_only.json")
    assert chain.plan(lsn(260)).names == ["full-sun", "diff-mon"]
    assert chain.plan().names == ["full-sun", "diff-mon"]


def test_copy_only_full_as_a_base_is_refused():
    chain = load_history(FIXTURES / "copy_only.json")
    expected = ("differential diff-mon cannot apply to copy-for-dev: copy-for-dev "
                "can be no base \\(a copy-only full\\); its base is full-sun")
    with pytest.raises(CopyOnlyMisuse, match=expected):
        chain.check(["copy-for-dev", "diff-mon"])


def test_later_full_by_another_agent_becomes_the_base():
    chain = load_history(FIXTURES / "new_base.json")
    assert chain.plan(lsn(260)).names == ["vendor-agent-full", "diff-mon"]
    assert chain.plan(lsn(260), full="full-sun").names == ["full-sun", "log-0200", "log-0300"]
    expected = ("differential diff-mon is based on vendor-agent-full \\(a later full "
                "that became the new base\\), not on full-sun")
    with pytest.raises(BrokenChain, match=expected):
        chain.check(["full-sun", "diff-mon"])


def test_differential_whose_base_is_not_in_the_history():
    chain = load_history(FIXTURES / "missing_base.json")
    with pytest.raises(BrokenChain, match="differential diff-mon is based on full backup_set_uuid "
                                          "11111111-1111-4111-8111-000000000009 at checkpoint_lsn "
                                          f"{lsn(215)}, which is not in the history"):
        chain.check(["full-sun", "diff-mon"])
    expected = f"nothing after log-0200 \\(ends at {lsn(200)}\\) reaches {lsn(260)}"
    with pytest.raises(TargetNotCovered, match=expected):
        chain.plan(lsn(260))


def test_missing_log_backup_is_a_gap_between_its_neighbours():
    chain = load_history(FIXTURES / "log_gap.json")
    with pytest.raises(PositionGap, match=f"gap between log-0200 \\(ends at {lsn(200)}\\) and log-0400 "
                                          f"\\(starts at {lsn(300)}\\)"):
        chain.plan(lsn(450))
    assert chain.plan(lsn(150)).names == ["full-sun", "log-0200"]


def test_log_on_another_fork():
    chain = load_history(FIXTURES / "fork.json")
    with pytest.raises(LineageMismatch, match="log-0300 starts on a1b2c3d4-0000-4000-8000-000000000002 but "
                                              "log-0200 ends on a1b2c3d4-0000-4000-8000-000000000001"):
        chain.plan(lsn(250))


def test_log_of_another_database():
    chain = load_history(FIXTURES / "other_database.json")
    expected = ("log-0200 belongs to database 7a000000-0000-4000-8000-00000000beef, "
                "full-sun to database 6f9619ff-8b86-d011-b42d-00c04fc964ff")
    with pytest.raises(SystemMismatch, match=expected):
        chain.plan(lsn(150))


def test_backupset_query_is_valid_tsql():
    sqlglot = pytest.importorskip("sqlglot")
    parsed = sqlglot.parse_one(BACKUPSET_QUERY.replace("?", "@database"), read="tsql")
    assert parsed.find(sqlglot.exp.Table).sql("tsql") == "msdb.dbo.backupset"


def test_plan_from_a_backup_that_is_not_a_full(chain):
    with pytest.raises(WrongOrder, match="diff-mon is a differential backup; a restore starts from a full"):
        chain.plan(lsn(380), full="diff-mon")
