"""SQL Server chain rules on backupset / RESTORE HEADERONLY fixtures written from Microsoft's docs."""

import json
from datetime import datetime
from pathlib import Path

import pytest

from etl.restore.chain import (
    BrokenChain,
    ChainError,
    CopyOnlyMisuse,
    LineageMismatch,
    PositionGap,
    SystemMismatch,
    TargetNotCovered,
    UnreadableInput,
    WrongOrder,
)
from etl.restore.sqlserver import BACKUPSET_QUERY, chain_from_rows, load_history

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
    # the latest point is the newest the history holds: the gap is an error, not a shorter plan
    with pytest.raises(PositionGap, match=f"gap between log-0200 \\(ends at {lsn(200)}\\) and log-0400"):
        chain.plan()
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
    assert sorted(t.sql("tsql") for t in parsed.find_all(sqlglot.exp.Table)) == [
        "msdb.dbo.backupmediafamily AS f", "msdb.dbo.backupset AS b"]
    assert {"type", "fork_point_lsn", "differential_base_guid", "physical_device_name"} <= {
        e.alias_or_name for e in parsed.expressions}


def test_plan_from_a_backup_that_is_not_a_full(chain):
    with pytest.raises(WrongOrder, match="diff-mon is a differential backup; a restore starts from a full"):
        chain.plan(lsn(380), full="diff-mon")


# -- histories as people export them -------------------------------------------------------------

DBATOOLS_NOTE = (f"Clinic_diff_tue.bak: linked to Clinic_full_sun_1.bak by its checkpoint_lsn = "
                 f"database_backup_lsn {lsn(105)} (the history has no differential_base_guid)")
FILE_BACKUP = ("Clinic_fg_archive.bak", "a file, filegroup or partial backup (type 'file'): "
                                        "a database restore does not use it")


def test_dbatools_convertto_json_utf16_export():
    """Get-DbaDbBackupHistory | ConvertTo-Json > file: UTF-16LE with a BOM, /Date(ms)/ times, Type as
    text, LSNs as numbers and as text, FullName/Path lists for the striped full, no name and no
    differential_base_guid."""
    raw = (FIXTURES / "dbatools.json").read_bytes()
    assert raw[:2] == b"\xff\xfe"
    chain = load_history(FIXTURES / "dbatools.json")
    plan = chain.plan(lsn(380))
    assert plan.names == ["Clinic_full_sun_1.bak", "Clinic_diff_tue.bak", "Clinic_log_0400.trn"]
    assert plan.notes == [DBATOOLS_NOTE]
    assert chain.get("Clinic_full_sun_1.bak").details["files"] == [
        "D:\\backup\\Clinic_full_sun_1.bak", "D:\\backup\\Clinic_full_sun_2.bak"]
    assert plan.unused == (
        FILE_BACKUP,
        ("Clinic_log_0200.trn", f"superseded by Clinic_diff_tue.bak, which already reaches {lsn(360)}"),
        ("Clinic_diff_mon.bak", "superseded by Clinic_diff_tue.bak"),
        ("Clinic_log_0300.trn", f"superseded by Clinic_diff_tue.bak, which already reaches {lsn(360)}"),
        ("Clinic_log_0500.trn", "after the restore point"))
    # /Date(ms)/ is UTC: 2026-11-02 12:00 UTC falls after diff-mon (01:00) and before log-0300 (18:00)
    assert chain.plan(datetime(2026, 11, 2, 12, 0)).names == [
        "Clinic_full_sun_1.bak", "Clinic_diff_mon.bak", "Clinic_log_0300.trn"]
    assert chain.get("Clinic_log_0500.trn").finished == datetime(2026, 11, 4, 18, 0)


def test_dbatools_export_reencoded_as_utf8_plans_the_same(tmp_path):
    path = tmp_path / "history.json"
    path.write_text((FIXTURES / "dbatools.json").read_bytes().decode("utf-16"), encoding="utf-8")
    assert load_history(path).plan().names == [
        "Clinic_full_sun_1.bak", "Clinic_diff_tue.bak", "Clinic_log_0400.trn", "Clinic_log_0500.trn"]


def test_msdb_export_with_text_types_us_dates_and_null_names():
    chain = load_history(FIXTURES / "msdb_text.csv")
    plan = chain.plan(datetime(2026, 11, 3, 12, 0))
    assert plan.names == ["Clinic_full_sun.bak", "Clinic_diff_tue.bak", "Clinic_log_0400.trn"]
    assert plan.notes == [f"Clinic_diff_tue.bak: linked to Clinic_full_sun.bak by its checkpoint_lsn = "
                          f"differential_base_lsn {lsn(105)} (the history has no differential_base_guid)"]
    assert chain.get("Clinic_log_0500.trn").finished == datetime(2026, 11, 4, 18, 0)
    assert chain.get("Clinic_full_sun.bak").finished == datetime(2026, 11, 1, 1, 0)


def test_differential_without_guid_and_no_full_at_its_base_lsn_is_unused_with_why(tmp_path):
    rows = [r for r in json.loads((FIXTURES / "chain.json").read_text()) if r["name"] != "full-sun"]
    rows += [dict(json.loads((FIXTURES / "chain.json").read_text())[0], checkpoint_lsn=str(lsn(104)))]
    for row in rows:
        row["differential_base_guid"] = None
    path = tmp_path / "history.json"
    path.write_text(json.dumps(rows))
    plan = load_history(path).plan()
    assert plan.names == ["full-sun", "log-0200", "log-0300", "log-0400", "log-0500"]
    why = (f"missing base: a full at checkpoint_lsn {lsn(105)} (differential_base_lsn; the history has no "
           "differential_base_guid) is not in the history")
    assert plan.unused == (("diff-mon", why), ("diff-tue", why))


def test_recovery_fork_latest_is_the_newest_point_of_the_newest_fork():
    chain = load_history(FIXTURES / "forks.json")
    plan = chain.plan()
    assert plan.names == ["full-sun", "log-0200", "log-fork-b", "log-b-0350"]
    assert plan.reaches == lsn(350)
    abandoned = (f"on the abandoned branch of a1b2c3d4-0000-4000-8000-00000000000a: it passes {lsn(250)}, "
                 "where the restore point's fork branched off")
    assert plan.unused == (("log-0300", abandoned), ("log-0400", abandoned))


def test_recovery_fork_a_time_resolves_on_the_fork_that_holds_it():
    chain = load_history(FIXTURES / "forks.json")
    # before the restore of 2026-11-04 09:00 the database lived on fork A
    on_a = chain.plan(datetime(2026, 11, 3, 12, 0))
    assert on_a.names == ["full-sun", "log-0200", "log-0300", "log-0400"]
    other = "on another fork: it ends on a1b2c3d4-0000-4000-8000-00000000000b, not on the way to " \
            "a1b2c3d4-0000-4000-8000-00000000000a"
    assert on_a.unused == (("log-fork-b", other), ("log-b-0350", other))
    assert chain.plan(datetime(2026, 11, 4, 12, 0)).names == ["full-sun", "log-0200", "log-fork-b"]
    # a position resolves on the newest fork that reaches it
    assert chain.plan(lsn(260)).names == ["full-sun", "log-0200", "log-fork-b"]
    assert chain.plan(lsn(380)).names == ["full-sun", "log-0200", "log-0300", "log-0400"]


def test_time_after_the_last_backup_plans_to_the_end_of_the_last_log_with_a_warning():
    plan = load_history(FIXTURES / "forks.json").plan(datetime(2026, 11, 6))
    assert plan.names == ["full-sun", "log-0200", "log-fork-b", "log-b-0350"]
    assert plan.warnings == (f"2026-11-06T00:00:00 is after the last backup: the plan restores to the end of "
                             f"log-b-0350 ({lsn(350)}, 2026-11-05 18:00:00); later changes are in no backup",)
    assert "warning: 2026-11-06T00:00:00 is after the last backup" in plan.describe()


def test_time_covered_only_by_an_empty_log_backup():
    chain = load_history(FIXTURES / "empty_log.json")
    plan = chain.plan(datetime(2026, 11, 2, 3, 0))
    assert plan.names == ["full-sun", "log-0200", "log-empty-0600"]
    assert (plan.warnings, plan.unused) == ((), ())
    assert chain.check(["full-sun", "log-0200", "log-empty-0600"], datetime(2026, 11, 2, 3, 0)).reaches \
        == lsn(200)


def test_copy_only_full_is_listed_as_unused_with_why():
    plan = load_history(FIXTURES / "copy_only.json").plan()
    assert ("copy-for-dev", "a copy-only full: the plan starts from full-sun") in plan.unused


def test_plan_json_lists_steps_notes_warnings_and_unused():
    data = load_history(FIXTURES / "dbatools.json").plan(lsn(380)).to_json()
    assert data["steps"][1] == {"name": "Clinic_diff_tue.bak", "kind": "differential", "start": str(lsn(105)),
                                "end": str(lsn(360)), "finished": "2026-11-03T01:00:00"}
    assert (data["target"], data["reaches"], data["notes"], data["warnings"]) == (
        str(lsn(380)), str(lsn(400)), [DBATOOLS_NOTE], [])
    assert data["unused"][0] == {"name": FILE_BACKUP[0], "why": FILE_BACKUP[1]}


def test_history_whose_rows_are_no_backups_says_why_not_just_no_full(tmp_path):
    rows = json.loads((FIXTURES / "chain.json").read_text())
    for row in rows:
        row["type"] = "Unknown"
    path = tmp_path / "history.json"
    path.write_text(json.dumps(rows[:2]))
    with pytest.raises(TargetNotCovered) as caught:
        load_history(path).plan()
    assert caught.value.message == ("mssql: the history holds no full backup; 2 row(s) are no backup a "
                                    "restore can use (full-sun: unknown backup type 'unknown'; log-0200: "
                                    "unknown backup type 'unknown')")


def test_a_full_named_off_the_points_fork():
    rows = json.loads((FIXTURES / "forks.json").read_text())
    fork_b = rows[-1]["last_recovery_fork_guid"]
    rows.append(dict(rows[0], name="full-b", backup_set_uuid="33333333-3333-4333-8333-000000000099",
                     first_lsn=str(lsn(290)), last_lsn=str(lsn(300)), checkpoint_lsn=str(lsn(295)),
                     first_recovery_fork_guid=fork_b, last_recovery_fork_guid=fork_b,
                     backup_finish_date="2026-11-05T01:00:00"))
    chain = chain_from_rows(rows)
    assert chain.plan(full="full-b").names == ["full-b", "log-b-0350"]
    with pytest.raises(LineageMismatch) as caught:
        chain.plan(datetime(2026, 11, 3, 12), full="full-b")
    assert caught.value.message == "mssql: full-b is not on the fork of 2026-11-03T12:00:00"


def test_lsn_written_as_a_float_loses_digits_and_is_refused(tmp_path):
    path = tmp_path / "history.json"
    path.write_text('[{"name": "f", "type": "D", "first_lsn": 3.7000000038000001e16, "last_lsn": 1}]')
    with pytest.raises(UnreadableInput) as caught:
        load_history(path)
    assert caught.value.message == (f"{path}: backup f: first_lsn 3.7000000038e+16 was written as a "
                                    "floating-point number, which cannot hold every digit of an LSN")


def test_differential_of_another_full_is_listed_as_unusable():
    plan = load_history(FIXTURES / "new_base.json").plan(lsn(260), full="full-sun")
    assert plan.names == ["full-sun", "log-0200", "log-0300"]
    assert ("diff-mon", "unusable differential: based on vendor-agent-full, not on full-sun") in plan.unused


def test_dbatools_export_of_two_databases_is_planned_per_database():
    rows = json.loads((FIXTURES / "dbatools.json").read_bytes().decode("utf-16"))
    other = [json.loads(json.dumps(row).replace("Clinic", "Billing")) for row in rows
             if row["Type"] in ("Full", "Log", "Transaction Log")]
    chain = chain_from_rows(rows + other)
    with pytest.raises(ChainError) as caught:
        chain.plan()
    assert caught.value.message == (
        "mssql: the history holds backups of 2 databases (database Billing: Billing_full_sun_1.bak; "
        "database Clinic: Clinic_full_sun_1.bak); a restore plan is for one")
    assert [c.plan().names for c in chain.clusters()] == [
        ["Billing_full_sun_1.bak", "Billing_log_0200.trn", "Billing_log_0300.trn", "Billing_log_0400.trn",
         "Billing_log_0500.trn"],
        ["Clinic_full_sun_1.bak", "Clinic_diff_tue.bak", "Clinic_log_0400.trn", "Clinic_log_0500.trn"]]


def test_forks_known_only_by_their_last_fork_are_never_mixed():
    """dbatools exports last_recovery_fork_guid only: where a fork branched is unknown, so a plan
    stays on one fork rather than mixing the abandoned branch into it."""
    rows = json.loads((FIXTURES / "forks.json").read_text())
    for row in rows:
        del row["first_recovery_fork_guid"], row["fork_point_lsn"]
    chain = chain_from_rows(rows)
    fork_a, fork_b = "a1b2c3d4-0000-4000-8000-00000000000a", "a1b2c3d4-0000-4000-8000-00000000000b"
    with pytest.raises(TargetNotCovered) as caught:
        chain.plan()
    assert caught.value.message == (f"mssql: no full backup is consistent at or before the latest point "
                                    f"(planned on fork {fork_b} alone: the history does not say where its "
                                    "forks branched (its backups name only the fork they end on))")
    plan = chain.plan(datetime(2026, 11, 3, 12))
    assert plan.names == ["full-sun", "log-0200", "log-0300", "log-0400"]
    assert plan.warnings == (f"planned on fork {fork_a} alone: the history does not say where its forks "
                             "branched (its backups name only the fork they end on)",)
    assert [name for name, _ in plan.unused] == ["log-fork-b", "log-b-0350"]


@pytest.mark.parametrize(("finished", "expected"), [
    ("/Date(1793469600000)/", datetime(2026, 10, 31, 18, 0)),
    ("/Date(1793469600000+0100)/", datetime(2026, 10, 31, 18, 0)),
    ({"value": "/Date(1793469600000)/", "DateTime": "Saturday, October 31, 2026 6:00:00 PM"},
     datetime(2026, 10, 31, 18, 0)),
    ("2026-10-31T19:00:00.0000000+01:00", datetime(2026, 10, 31, 18, 0)),
    ("10/31/2026 6:00:00 PM", datetime(2026, 10, 31, 18, 0)),
    ("10/31/2026 18:00", datetime(2026, 10, 31, 18, 0)),
], ids=["ConvertTo-Json", "with offset", "PowerShell 5.1 object", "PowerShell 7 ISO", "US", "US 24h"])
def test_one_backup_exported_as_one_object_with_each_date_form(tmp_path, finished, expected):
    """ConvertTo-Json writes a single backup as an object, not a list."""
    path = tmp_path / "history.json"
    path.write_text(json.dumps({"Database": "Clinic", "Type": "Full", "FirstLsn": 10, "LastLsn": "20",
                                "CheckpointLsn": 15, "End": finished, "Path": "D:\\backup\\one.bak"}))
    chain = load_history(path)
    assert chain.plan().names == ["one.bak"]
    assert chain.get("one.bak").finished == expected


def test_the_export_query_in_the_docs_is_the_one_read_msdb_runs():
    docs = (Path(__file__).parents[2] / "docs" / "restore.md").read_text()
    assert BACKUPSET_QUERY.strip().replace("?", "N'Clinic'") in docs
