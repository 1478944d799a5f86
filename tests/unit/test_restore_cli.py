"""The restore commands without a server: --restore-plan on the SQL Server and Oracle fixtures
(exact sequences and chain errors, exit codes 0/3), option and job-file mistakes (exit 2), the
audit record of each command, and restore points in each engine's notation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from etl.restore import cli
from etl.restore.chain import UnreadableInput
from etl.restore.engines import get_engine
from etl.run import main
from tests.jobfiles import write_job_file

FIXTURES = Path(__file__).parents[1] / "fixtures" / "restore"


def lsn(k: int) -> int:
    """The SQL Server fixtures' LSNs (tests/fixtures/restore/README.md)."""
    return 37000000000000000 + k * 100000 + 1


def job_file(folder: Path, restore: str) -> Path:
    return write_job_file(folder, f"""\
version: 1
name: restore-unit
sources:
  src: {{type: postgres, dsn: "host=127.0.0.1 dbname=src", tables: {{}}}}
targets:
  out: {{type: postgres, dsn: "host=127.0.0.1 dbname=out"}}
restore:
{restore}""")


def sqlserver(folder: Path, history: str, point: str = "latest") -> Path:
    return job_file(folder, f"  engine: sqlserver\n  history: {FIXTURES / 'sqlserver' / history}\n"
                            f"  point: {point}\n")


def audit(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / ".etl" / "audit.jsonl").read_text().splitlines()]


def test_plan_to_a_log_position(tmp_path, capsys):
    assert main([str(sqlserver(tmp_path, "chain.json", str(lsn(380)))), "--restore-plan"]) == 0
    assert capsys.readouterr().out == (
        f"restore plan for mssql to {lsn(380)}: 3 backups, reaching {lsn(400)}\n"
        "  1. full         full-sun\n"
        "  2. differential diff-tue\n"
        "  3. log          log-0400\n"
        "  not used (4):\n"
        f"    log-0200: superseded by diff-tue, which already reaches {lsn(360)}\n"
        "    diff-mon: superseded by diff-tue\n"
        f"    log-0300: superseded by diff-tue, which already reaches {lsn(360)}\n"
        "    log-0500: after the restore point\n")
    (record,) = audit(tmp_path)
    assert (record["command"], record["exit_code"], record["error"], record["job"]) == \
        ("restore-plan", 0, None, "restore-unit")


def test_point_on_the_command_line_beats_the_job_file(tmp_path, capsys):
    job = sqlserver(tmp_path, "chain.json", str(lsn(380)))
    assert main([str(job), "--restore-plan", "--point", "latest"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"restore plan for mssql to the latest point: 4 backups, reaching {lsn(500)}",
        "  1. full         full-sun", "  2. differential diff-tue", "  3. log          log-0400",
        "  4. log          log-0500", "  not used (3):",
        f"    log-0200: superseded by diff-tue, which already reaches {lsn(360)}",
        "    diff-mon: superseded by diff-tue",
        f"    log-0300: superseded by diff-tue, which already reaches {lsn(360)}"]
    assert main([str(job), "--restore-plan", "--point", "2026-11-02T12:00"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"restore plan for mssql to 2026-11-02 12:00:00: 3 backups, reaching {lsn(300)}",
        "  1. full         full-sun", "  2. differential diff-mon", "  3. log          log-0300",
        "  not used (4):", f"    log-0200: superseded by diff-mon, which already reaches {lsn(260)}",
        "    diff-tue: after the restore point", "    log-0400: after the restore point",
        "    log-0500: after the restore point"]
    assert audit(tmp_path)[-1]["options"] == {"point": "2026-11-02T12:00"}


def test_restore_headeronly_export_plans_the_same(tmp_path, capsys):
    assert main([str(sqlserver(tmp_path, "headeronly.csv", str(lsn(380)))), "--restore-plan"]) == 0
    assert capsys.readouterr().out.splitlines()[1:5] == [
        "  1. full         full-sun", "  2. differential diff-tue", "  3. log          log-0400",
        "  not used (4):"]


def test_later_full_by_another_agent_is_the_base(tmp_path, capsys):
    assert main([str(sqlserver(tmp_path, "new_base.json", str(lsn(260)))), "--restore-plan"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "  1. full         vendor-agent-full", "  2. differential diff-mon", "  not used (3):",
        f"    log-0200: superseded by vendor-agent-full, which already reaches {lsn(220)}",
        "    full-sun: superseded by the later full vendor-agent-full",
        "    log-0300: after the restore point"]


def test_checked_sequence(tmp_path, capsys):
    job = sqlserver(tmp_path, "chain.json", str(lsn(390)))
    assert main([str(job), "--restore-plan", "--sequence", "full-sun,diff-mon,log-0300,log-0400"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == \
        f"checked sequence for mssql to {lsn(390)}: 4 backups, reaching {lsn(400)}"


@pytest.mark.parametrize(("history", "point", "sequence", "error", "message"), [
    ("log_gap.json", str(lsn(350)), None, "PositionGap",
     f"mssql: gap between log-0200 (ends at {lsn(200)}) and log-0400 (starts at {lsn(300)}): "
     f"positions {lsn(200)}..{lsn(300)} are in no backup\n"
     "  hint: find the missing log backup, or restore to a point before the gap\n"),
    ("fork.json", "latest", None, "LineageMismatch",
     "mssql: log-0300 starts on a1b2c3d4-0000-4000-8000-000000000002 but log-0200 ends on "
     "a1b2c3d4-0000-4000-8000-000000000001\n  hint: use backups of one fork/incarnation/timeline\n"),
    ("other_database.json", "latest", None, "SystemMismatch",
     "mssql: log-0200 belongs to database 7a000000-0000-4000-8000-00000000beef, full-sun to "
     "database 6f9619ff-8b86-d011-b42d-00c04fc964ff\n"
     "  hint: a chain may only hold backups of one database\n"),
    ("copy_only.json", "latest", "copy-for-dev,diff-mon", "CopyOnlyMisuse",
     "mssql: differential diff-mon cannot apply to copy-for-dev: copy-for-dev can be no base "
     "(a copy-only full); its base is full-sun\n"),
    ("new_base.json", "latest", "full-sun,diff-mon", "BrokenChain",
     "mssql: differential diff-mon is based on vendor-agent-full (a later full that became the "
     "new base), not on full-sun\n"),
    ("missing_base.json", "latest", "full-sun,diff-mon", "BrokenChain",
     "mssql: differential diff-mon is based on full backup_set_uuid "
     f"11111111-1111-4111-8111-000000000009 at checkpoint_lsn {lsn(215)}, which is not in the history "
     f"(the restore reaches full-sun at {lsn(110)})\n"
     "  hint: add the base backup's metadata, or restore without this backup\n"),
])
def test_broken_chain_is_a_runtime_failure(tmp_path, capsys, history, point, sequence, error, message):
    args = [str(sqlserver(tmp_path, history, point)), "--restore-plan"]
    assert main(args + (["--sequence", sequence] if sequence else [])) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: " + message)
    (record,) = audit(tmp_path)
    assert (record["command"], record["exit_code"]) == ("restore-plan", 3)
    assert record["error"].startswith(f"{error}: {message.splitlines()[0]}")


def test_oracle_plans_cumulative_then_differential_links(tmp_path, capsys):
    job = job_file(tmp_path, f"  engine: oracle\n  history: {FIXTURES / 'oracle' / 'cumulative'}\n")
    assert main([str(job), "--restore-plan"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "restore plan for oracle to the latest point: 5 backups, reaching 9500",
        "  1. full         LVL0_SUN", "  2. differential CUM_TUE", "  3. incremental  DIF_WED",
        "  4. log          archivelog thread 1 sequence 53",
        "  5. log          archivelog thread 1 sequence 54", "  not used (4):",
        "    archivelog thread 1 sequence 50: superseded by CUM_TUE, which already reaches 7000",
        "    CUM_MON: superseded by CUM_TUE",
        "    archivelog thread 1 sequence 51: superseded by CUM_TUE, which already reaches 7000",
        "    archivelog thread 1 sequence 52: superseded by DIF_WED, which already reaches 8000"]


def test_oracle_missing_link(tmp_path, capsys):
    job = job_file(tmp_path, f"  engine: oracle\n  history: {FIXTURES / 'oracle' / 'missing_link'}\n")
    assert main([str(job), "--restore-plan", "--sequence", "LVL0_SUN,DIF_MON,DIF_WED"]) == 3
    assert capsys.readouterr().err.startswith(
        "error: oracle: incremental DIF_WED is based on a backup with datafile checkpoints file 1: 7000, "
        "file 2: 7000, file 3: 7000, which is not in the history (the restore reaches DIF_MON at 6000)")
    assert main([str(job), "--restore-plan", "--point", "8200"]) == 3
    assert capsys.readouterr().err.startswith(
        "error: oracle: gap between archivelog thread 1 sequence 51 (ends at 6500) and archivelog thread 1 "
        "sequence 53 (starts at 7500)")


def test_job_without_a_restore_section(tmp_path, capsys):
    job = job_file(tmp_path, "  engine: sqlserver\n")
    job.write_text(job.read_text().replace("restore:\n  engine: sqlserver\n", ""))
    assert main([str(job), "--restore-plan"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {job}: the job file has no `restore` section\n")


def test_unknown_restore_key_is_an_error_with_a_suggestion(tmp_path, capsys):
    job = job_file(tmp_path, "  engine: sqlserver\n  histroy: backupset.csv\n")
    assert main([str(job), "--restore-plan"]) == 2
    assert capsys.readouterr().err == \
        f"error: {job}:9:3: restore.histroy: unknown key 'histroy'; did you mean 'history'?\n"


def test_database_needs_exactly_one_of_source_target_dsn(tmp_path, capsys):
    job = job_file(tmp_path, "  engine: postgresql\n  restored: {target: out, dsn: \"host=127.0.0.1\"}\n")
    assert main([str(job), "--verify-restore"]) == 2
    assert capsys.readouterr().err == \
        f"error: {job}:9:13: restore.restored: expected exactly one of 'source', 'target' or 'dsn'\n"


def test_plaintext_restore_database_on_a_network_host_is_refused(tmp_path, capsys):
    job = job_file(tmp_path, "  engine: postgresql\n"
                             "  restored: {dsn: \"host=db.example.org sslmode=disable\"}\n")
    assert main([str(job), "--verify-restore"]) == 2
    assert capsys.readouterr().err.startswith(
        f"error: {job}:9:13: restore.restored: restored database: PostgreSQL connection to db.example.org is "
        "not encrypted (sslmode=disable)")


@pytest.mark.parametrize(("args", "message"), [
    (["--restore-plan", "--limit", "5"], "error: --limit cannot be combined with --restore-plan\n"),
    (["--verify-restore", "--resume"], "error: --resume cannot be combined with --verify-restore\n"),
    (["--restore-plan", "--position", "5"], "error: --position does not apply to --restore-plan\n"),
    (["--take-manifest", "full", "--point", "5"], "error: --point does not apply to --take-manifest\n"),
    (["--verify-restore", "--sequence", "a,b"], "error: --sequence does not apply to --verify-restore\n"),
])
def test_options_that_do_not_apply(tmp_path, capsys, args, message):
    assert main([str(sqlserver(tmp_path, "chain.json")), *args]) == 2
    assert capsys.readouterr().err.startswith(message)
    (record,) = audit(tmp_path)
    assert record["exit_code"] == 2 and record["command"] == cli.command_name(cli_args(args))


def cli_args(args: list[str]):
    from etl.run import parser

    return parser().parse_args(["job.yaml", *args])


def test_restore_modes_exclude_plan_and_each_other(tmp_path, capsys):
    for args in (["--plan", "--restore-plan"], ["--verify-restore", "--take-manifest", "x"]):
        with pytest.raises(SystemExit) as exit_:
            main([str(sqlserver(tmp_path, "chain.json")), *args])
        assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize(("engine", "text", "expected"), [
    ("postgresql", "0/3000060", 0x3000060),
    ("postgresql", "1/0", 1 << 32),
    ("sqlserver", str(lsn(380)), lsn(380)),
    ("oracle", 6000, 6000),
    ("mongodb", "1700000000:7", (1700000000 << 32) | 7),
    ("sqlserver", "2026-11-02T12:00", datetime(2026, 11, 2, 12, 0)),
    ("sqlserver", "latest", None),
    ("oracle", None, None),
])
def test_points_in_each_engines_notation(engine, text, expected):
    assert get_engine(engine).parse_point(text) == expected


def test_a_point_that_is_neither_position_nor_time():
    with pytest.raises(UnreadableInput, match="postgres: restore point 'yesterday' is neither a "
                                              "position nor a time"):
        get_engine("postgresql").parse_point("yesterday")


def test_an_unquoted_oplog_timestamp_is_refused(tmp_path, capsys):
    job = job_file(tmp_path, "  engine: mongodb\n  history: dumps\n  point: 1700000000:7\n")
    assert main([str(job), "--restore-plan"]) == 2
    assert capsys.readouterr().err == (
        "error: mongo: restore point 102000000007 is not an oplog timestamp\n"
        '  hint: write it as quoted text "SECONDS:INCREMENT", e.g. point: "1700000000:7"\n')


def test_manifest_positions_are_written_the_engines_way():
    assert get_engine("postgresql").manifest_position(0x3000060) == {"lsn": "0/3000060"}
    assert get_engine("mongodb").manifest_position((1700000000 << 32) | 7) == {"ts": "1700000000:7"}
    assert get_engine("oracle").manifest_position(6000) == {"scn": "6000"}


def test_change_point_compares_with_aware_and_naive_times():
    point = cli._Instant(datetime(2026, 1, 1, 12, 0, tzinfo=UTC), "updated_at")
    assert datetime(2026, 1, 1, 12, 0, 1, tzinfo=UTC) > point
    assert not datetime(2026, 1, 1, 11, 59, tzinfo=UTC) > point
    assert datetime(2026, 1, 1, 12, 0, 1) > point
    assert not datetime(2026, 1, 1, 12, 0) > point
    with pytest.raises(cli.RestoreCommandError, match="restore.change_column 'updated_at' holds int values"):
        _ = 5 > point


def test_manifest_names_and_existing_manifests_are_refused_before_connecting(tmp_path, capsys):
    job = job_file(tmp_path, "  engine: postgresql\n  manifests: manifests\n"
                             "  source: {dsn: \"host=127.0.0.1 port=1 dbname=none\"}\n")
    assert main([str(job), "--take-manifest", "../elsewhere"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: --take-manifest '../elsewhere': a manifest is named like its backup")
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "full-sun.json").write_text("{}")
    assert main([str(job), "--take-manifest", "full-sun"]) == 2
    assert capsys.readouterr().err.startswith(f"error: manifest {tmp_path / 'manifests' / 'full-sun.json'} "
                                              "already exists")


def test_printed_and_saved_verification(tmp_path):
    import io

    from etl.checksum import Manifest, TableManifest
    from etl.records import Column, TableSpec
    from etl.restore import verify_restore

    spec = TableSpec("restore", "patients", ("patient_id",),
                     (Column("patient_id", "int4"), Column("name", "text"), Column("changed", "timestamptz")))
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [{"patient_id": i, "name": f"p{i}", "changed": at} for i in range(1, 21)]
    manifest = Manifest(position={"lsn": "0/3000060"}, taken_at=at.isoformat())
    manifest.add(TableManifest.build(spec, rows, buckets=4, boundaries=[[11]]))
    visits = TableSpec("restore", "visits", ("visit_id",), (Column("visit_id", "int4"),))
    manifest.add(TableManifest.build(visits, [{"visit_id": 1}], buckets=4))
    restored = [dict(r) for r in rows if r["patient_id"] != 4]
    restored[14] = {**restored[14], "name": "late", "changed": datetime(2026, 1, 2, tzinfo=UTC)}  # id 16
    result = verify_restore({"patients": restored}, manifest, {"patients": spec, "visits": visits},
                            change_column="changed", point=cli._Instant(at, "changed"))
    out = io.StringIO()
    cli.print_verification(result, "manifest at 0/3000060", manifest, out, drill_down=False)
    assert out.getvalue().splitlines() == [
        "restore verified against the manifest at lsn 0/3000060 (manifest at 0/3000060, taken at "
        "2026-01-01T00:00:00+00:00): DIFFERENCES",
        "  patients: 19 rows restored, 20 expected; 2 segments, mismatched segments [0], "
        "drift in segments [1]",
        "    segment 0 [- .. [11]): mismatch, 9 rows restored, 10 expected, buckets differing: 1",
        "    segment 1 [[11] .. -): drift, 10 rows restored, 10 expected, buckets differing: 1",
        "    (set restore.drill_down: true to name the rows, while the source is at the restore point)",
        "    drift (changed after the manifest): patient_id=16",
        "  visits: missing from the restored database (1 rows expected)"]
    saved = cli.verification_json(result, "manifest at 0/3000060", manifest)
    assert saved["verdict"] == "differences"
    assert [(t["table"], t["mismatched_segments"], t["drift_segments"], t["drift"], t["missing_table"])
            for t in saved["tables"]] == [("patients", [0], [1], [{"patient_id": 16}], False),
                                           ("visits", [0], [], [], True)]
    json.dumps(saved)


def test_mongodump_plan_to_an_oplog_timestamp(tmp_path, capsys):
    from tests.unit.test_restore_mongo import T, full_dump, oplog_slice

    folders = [full_dump(tmp_path, "dump-sun", [(0, 1), (10, 1)]),
               oplog_slice(tmp_path, "oplog-1", [(10, 1), (50, 1), (100, 1)]),
               oplog_slice(tmp_path, "oplog-2", [(100, 1), (150, 1), (200, 1)])]
    history = "".join(f"\n    - {folder}" for folder in folders)
    job = job_file(tmp_path, f"  engine: mongodb\n  history:{history}\n")
    assert main([str(job), "--restore-plan", "--point", f"{T + 120}:1"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"restore plan for mongo to {T + 120}:1: 3 backups, reaching Timestamp({T + 200}, 1)",
        "  1. full         dump-sun", "  2. log          oplog-1", "  3. log          oplog-2"]


def test_dbatools_history_plan_as_text_and_json(tmp_path, capsys):
    job = sqlserver(tmp_path, "dbatools.json", "2026-11-06T00:00")
    assert main([str(job), "--restore-plan"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"restore plan for mssql to 2026-11-06 00:00:00: 4 backups, reaching {lsn(500)}",
        "  1. full         Clinic_full_sun_1.bak", "  2. differential Clinic_diff_tue.bak",
        "  3. log          Clinic_log_0400.trn", "  4. log          Clinic_log_0500.trn",
        f"  note: Clinic_diff_tue.bak: linked to Clinic_full_sun_1.bak by its checkpoint_lsn = "
        f"database_backup_lsn {lsn(105)} (the history has no differential_base_guid)",
        "  warning: 2026-11-06T00:00:00 is after the last backup: the plan restores to the end of "
        f"Clinic_log_0500.trn ({lsn(500)}, 2026-11-04 18:00:00); later changes are in no backup",
        "  not used (4):",
        "    Clinic_fg_archive.bak: a file, filegroup or partial backup (type 'file'): "
        "a database restore does not use it",
        f"    Clinic_log_0200.trn: superseded by Clinic_diff_tue.bak, which already reaches {lsn(360)}",
        "    Clinic_diff_mon.bak: superseded by Clinic_diff_tue.bak",
        f"    Clinic_log_0300.trn: superseded by Clinic_diff_tue.bak, which already reaches {lsn(360)}"]
    assert main([str(job), "--restore-plan", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in data["steps"]] == [
        "Clinic_full_sun_1.bak", "Clinic_diff_tue.bak", "Clinic_log_0400.trn", "Clinic_log_0500.trn"]
    assert (data["engine"], data["target"], data["reaches"], data["checked"]) == (
        "mssql", "2026-11-06T00:00:00", str(lsn(500)), False)
    assert len(data["warnings"]) == 1 and len(data["notes"]) == 1
    assert [u["name"] for u in data["unused"]] == [
        "Clinic_fg_archive.bak", "Clinic_log_0200.trn", "Clinic_diff_mon.bak", "Clinic_log_0300.trn"]
    assert audit(tmp_path)[-1]["options"] == {"json": True}


def test_json_applies_only_to_restore_plan(tmp_path, capsys):
    assert main([str(sqlserver(tmp_path, "chain.json")), "--verify-restore", "--json"]) == 2
    assert capsys.readouterr().err.startswith("error: --json does not apply to --verify-restore\n")


def test_postgres_history_of_two_clusters_prints_one_plan_each(tmp_path, capsys):
    from tests.unit.test_restore_postgres import SYSTEM, self_contained

    other = SYSTEM + 1
    folders = [self_contained(tmp_path / "a-full", "0/2000028", "0/2000100"),
               self_contained(tmp_path / "b-full", "0/2000028", "0/2000200", system=other),
               self_contained(tmp_path / "a-inc", "0/4000028", "0/4000100", incremental_from="0/2000028")]
    job = job_file(tmp_path, "  engine: postgresql\n  history:\n"
                             + "".join(f"    - {folder}\n" for folder in folders))
    assert main([str(job), "--restore-plan"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"restore plan for postgres database {SYSTEM} to the latest point: 2 backups, reaching 0/4000100",
        "  1. full         a-full", "  2. incremental  a-inc",
        f"restore plan for postgres database {other} to the latest point: 1 backups, reaching 0/2000200",
        "  1. full         b-full"]
    assert main([str(job), "--restore-plan", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [[step["name"] for step in plan["steps"]] for plan in data["plans"]] == [
        ["a-full", "a-inc"], ["b-full"]]


@pytest.mark.parametrize("engine", ["mssql", "sqlserver"])
def test_job_file_engine_by_name_or_old_name(tmp_path, capsys, engine):
    job = job_file(tmp_path, f"  engine: {engine}\n  history: {FIXTURES / 'sqlserver' / 'chain.json'}\n")
    assert main([str(job), "--restore-plan"]) == 0
    assert capsys.readouterr().out.startswith("restore plan for mssql to the latest point: 4 backups")


def test_job_file_with_an_unknown_engine(tmp_path, capsys):
    job = job_file(tmp_path, "  engine: postgre\n  history: x\n")
    assert main([str(job), "--restore-plan"]) == 2
    assert "unknown backup engine 'postgre'; use one of mssql, oracle, postgres, mongo; did you mean " \
           "'postgres'?" in capsys.readouterr().err


def test_postgres_incremental_chain_with_a_gap_exits_3_naming_the_candidates(tmp_path, capsys):
    from tests.unit.test_restore_postgres import SYSTEM, combined_history

    full, inc1, _, _, inc3 = combined_history(tmp_path / "backups")
    job = job_file(tmp_path, f"  engine: postgres\n  history: [{full}, {inc1}, {inc3}]\n")
    assert main([str(job), "--restore-plan"]) == 3
    assert capsys.readouterr().err.startswith(
        f"error: postgres: incremental inc3 is based on a backup of system {SYSTEM} starting at 0/6000028 on "
        "timeline 1 (candidates of that system start: full at 0/2000028 on timeline 1, inc1 at 0/4000028 on "
        "timeline 1), which is not in the history")


def test_verify_files_for_an_engine_without_file_checksums(tmp_path, capsys):
    job = job_file(tmp_path, f"  engine: mssql\n  history: {FIXTURES / 'sqlserver' / 'chain.json'}\n"
                             "  verify_files: true\n")
    assert main([str(job), "--restore-plan"]) == 2
    assert capsys.readouterr().err == ("error: mssql: backups carry no file checksums to verify\n"
                                       "  hint: leave verify_files out for this engine\n")
