"""The restore commands on a real PostgreSQL: manifests taken with --take-manifest while rows change,
restored copies made with CREATE DATABASE ... TEMPLATE, and --verify-restore naming exactly the
segments and keys that differ; --restore-plan over a real pg_basebackup folder and WAL archive."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import pg_dsn, unique_name
from tests.integration.run_helpers import run_cli
from tests.integration.test_restore_postgres import history  # noqa: F401 - its module-scoped fixture
from tests.jobfiles import postgres_target, write_job_file

pytestmark = pytest.mark.integration

CHAIN = Path(__file__).parents[1] / "fixtures" / "restore" / "sqlserver" / "chain.json"


def lsn(k: int) -> int:
    """The SQL Server fixtures' LSNs (tests/fixtures/restore/README.md)."""
    return 37000000000000000 + k * 100000 + 1


def database_name(dsn: str) -> str:
    return dsn.rsplit("dbname=", 1)[1]


@pytest.fixture
def copies():
    """Make copies of a database with CREATE DATABASE ... TEMPLATE; dropped after the test."""
    made: list[str] = []

    def copy(dsn: str) -> str:
        name = unique_name("etl_r")
        with psycopg.connect(pg_dsn("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{database_name(dsn)}"')
        made.append(name)
        return pg_dsn(name)

    yield copy
    with psycopg.connect(pg_dsn("postgres"), autocommit=True) as admin:
        for name in made:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def execute(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)


def write_job(folder: Path, source: str, restored: str, *, drill_down: bool = False) -> Path:
    engine = f"engine: sqlserver\n  history: {CHAIN}"
    return write_job_file(folder, f"""\
version: 1
name: restore-check
sources:
  src: {{type: postgres, dsn: "{source}", tables: {{}}}}
targets:
  out: {postgres_target(restored)}
report: {{dir: reports}}
restore:
  {engine}
  manifests: manifests
  source: {{dsn: "{source}"}}
  restored: {{target: out}}
  tables:
    patients: {{key: [patient_id], segments: 4}}
  change_column: updated_at
  drill_down: {str(drill_down).lower()}
  buckets: 16
""", name=f"restore-{database_name(restored)}-{drill_down}.yaml")


def saved_result(stdout: str) -> dict:
    line = [x for x in stdout.splitlines() if x.startswith("result saved to ")][-1]
    return json.loads(Path(line.removeprefix("result saved to ")).read_text())


def test_manifests_taken_by_the_command_verify_restored_copies(tmp_path, pg_database, copies):
    execute(pg_database,
            "CREATE TABLE patients (patient_id int PRIMARY KEY, name text NOT NULL, balance numeric(12,2),"
            " updated_at timestamptz NOT NULL)",
            "INSERT INTO patients SELECT i, 'patient ' || i, i * 1.25, '2024-01-01T00:00:00Z'"
            " FROM generate_series(1, 100) AS i")
    job = write_job(tmp_path, pg_database, pg_database)

    full = run_cli(job, "--take-manifest", "full-sun", "--position", str(lsn(110)))
    assert full.returncode == 0, full.stdout + full.stderr
    assert f"manifest full-sun (full) at lsn {lsn(110)}, taken at " in full.stdout
    assert "  patients: 100 rows in 4 segments\n" in full.stdout
    before = copies(pg_database)  # the database as full-sun has it

    # segments: [..26) [26..51) [51..76) [76..); the third is left alone
    execute(pg_database,
            "UPDATE patients SET name = 'renamed', updated_at = now() WHERE patient_id = 10",
            "DELETE FROM patients WHERE patient_id = 30",
            "INSERT INTO patients VALUES (101, 'patient 101', 126.25, now())")
    diff = run_cli(job, "--take-manifest", "diff-mon", "--base", "full-sun", "--position", str(lsn(260)))
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert "manifest diff-mon (differential against full-sun)" in diff.stdout
    assert "  patients: 3 of 4 segments changed [0, 1, 3]\n" in diff.stdout
    after = copies(pg_database)  # the database as diff-mon has it

    equal = run_cli(write_job(tmp_path, pg_database, after), "--verify-restore",
                    "--point", str(lsn(300)))
    assert equal.returncode == 0, equal.stdout + equal.stderr
    assert f"restore verified against the manifest at lsn {lsn(260)} (manifests of full-sun, diff-mon, " \
           "taken at " in equal.stdout
    assert ": exact\n" in equal.stdout
    assert "  patients: 100 rows restored, 100 expected; 4 segments, equal\n" in equal.stdout

    old = write_job(tmp_path, pg_database, before)
    assert run_cli(old, "--verify-restore", "--point", str(lsn(110))).returncode == 0

    # restored to full-sun, checked against the later point while the source is still there
    wrong = run_cli(write_job(tmp_path, pg_database, before, drill_down=True),
                    "--verify-restore", "--point", str(lsn(300)))
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert ": DIFFERENCES\n" in wrong.stdout
    assert "  patients: 100 rows restored, 100 expected; 4 segments, mismatched segments [0, 1, 3]\n" \
        in wrong.stdout
    assert [line for line in wrong.stdout.splitlines() if line.startswith("    segment ")] == [
        "    segment 0 [- .. [26]): mismatch, 25 rows restored, 25 expected, buckets differing: 1",
        "    segment 1 [[26] .. [51]): mismatch, 25 rows restored, 24 expected, buckets differing: 1",
        "    segment 3 [[76] .. -): mismatch, 25 rows restored, 26 expected, buckets differing: 1"]
    assert "    first differences: changed: patient_id=10 (name, updated_at); extra: patient_id=30; " \
           "missing: patient_id=101\n" in wrong.stdout
    result = saved_result(wrong.stdout)
    assert result["verdict"] == "differences"
    (patients,) = result["tables"]
    assert patients["mismatched_segments"] == [0, 1, 3]
    assert sorted((d["kind"], d["key"]["patient_id"], d["fields"]) for d in patients["differences"]) == [
        ("changed", 10, ["name", "updated_at"]), ("extra", 30, []), ("missing", 101, [])]

    # the source itself, later than full-sun: rows changed since are drift, the deleted row is not
    drifted = run_cli(write_job(tmp_path, pg_database, pg_database),
                      "--verify-restore", "--point", str(lsn(110)))
    assert drifted.returncode == 1, drifted.stdout + drifted.stderr
    assert "  patients: 100 rows restored, 100 expected; 4 segments, mismatched segments [1], " \
           "drift in segments [0, 3]\n" in drifted.stdout
    assert "    drift (changed after the manifest): patient_id=10; patient_id=101\n" in drifted.stdout
    assert saved_result(drifted.stdout)["tables"][0]["drift"] == [{"patient_id": 10}, {"patient_id": 101}]
    empty = run_cli(write_job(tmp_path, pg_database, copies(pg_dsn("template0"))),
                    "--verify-restore", "--point", str(lsn(260)))
    assert empty.returncode == 1, empty.stdout + empty.stderr
    assert "  patients: missing from the restored database (100 rows expected)\n" in empty.stdout

    audit = [json.loads(line) for line in (tmp_path / ".etl" / "audit.jsonl").read_text().splitlines()]
    assert [(r["command"], r["exit_code"], r["validation"]) for r in audit] == [
        ("take-manifest", 0, None), ("take-manifest", 0, None), ("verify-restore", 0, "passed"),
        ("verify-restore", 0, "passed"), ("verify-restore", 1, "differences"),
        ("verify-restore", 1, "differences"), ("verify-restore", 1, "differences")]
    assert audit[1]["options"] == {
        "base": "full-sun", "position": str(lsn(260)), "take_manifest": "diff-mon", "restore_restored": "out",
        "restore_source": {"type": "postgres", "host": "127.0.0.1", "port": "5432",
                           "database": database_name(pg_database)}}


def test_postgresql_positions_from_the_source_and_manifests_found_by_position(tmp_path, pg_database, copies):
    execute(pg_database,
            "CREATE TABLE visits (visit_id bigint PRIMARY KEY, ward text, cost float8, seen timestamp)",
            "INSERT INTO visits SELECT i, 'ward ' || (i % 3), i / 3.0, '2024-01-01'"
            " FROM generate_series(1, 40) AS i")
    (tmp_path / "visits.yaml").write_text("version: 1\n")
    job = tmp_path / "job.yaml"

    def write(restored: str) -> Path:
        job.write_text(f"""\
version: 1
name: restore-pg
sources:
  src: {{type: postgres, dsn: "{pg_database}", tables: {{visits: {{mapping: visits.yaml}}}}}}
targets:
  out: {{type: postgres, dsn: "{restored}"}}
restore:
  engine: postgresql
  source: src
  restored: {{dsn: "{restored}"}}
""")
        return job

    def position(stdout: str) -> str:
        return stdout.split(" at lsn ", 1)[1].split(",", 1)[0]

    first = run_cli(write(pg_database), "--take-manifest", "base-1")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "  visits: 40 rows in 8 segments\n" in first.stdout
    copy = copies(pg_database)
    execute(pg_database, "UPDATE visits SET cost = cost + 0.5 WHERE visit_id = 33")
    second = run_cli(job, "--take-manifest", "incr-2", "--base", "base-1")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "  visits: 1 of 8 segments changed [6]\n" in second.stdout
    assert position(first.stdout) != position(second.stdout)

    exact = run_cli(write(copy), "--verify-restore", "--point", position(first.stdout))
    assert exact.returncode == 0, exact.stdout + exact.stderr
    assert f"restore verified against the manifest at lsn {position(first.stdout)} (manifest at " \
           f"{position(first.stdout)}, taken at " in exact.stdout

    behind = run_cli(job, "--verify-restore", "--point", position(second.stdout))
    assert behind.returncode == 1, behind.stdout + behind.stderr
    assert "  visits: 40 rows restored, 40 expected; 8 segments, mismatched segments [6]\n" in behind.stdout
    assert "    (set restore.drill_down: true to name the rows" in behind.stdout

    unknown = run_cli(job, "--verify-restore", "--point", "0/1")
    assert unknown.returncode == 3
    assert unknown.stderr.startswith("error: 0 manifests were taken at {'lsn': '0/1'}; need exactly one")


def test_restore_plan_of_a_real_base_backup_and_wal_archive(tmp_path, history):  # noqa: F811 - the fixture
    job = tmp_path / "job.yaml"
    job.write_text(f"""\
version: 1
name: restore-basebackup
sources:
  src: {{type: postgres, dsn: "{pg_dsn('postgres')}", tables: {{}}}}
targets:
  out: {{type: postgres, dsn: "{pg_dsn('postgres')}"}}
restore:
  engine: postgresql
  history: {history['base']}
  wal_archive: {history['archive']}
  verify_files: true
""")
    planned = run_cli(job, "--restore-plan", "--point", history["lsn"][2])
    assert planned.returncode == 0, planned.stdout + planned.stderr
    lines = planned.stdout.splitlines()
    assert lines[0].startswith(f"restore plan for postgres to {history['lsn'][2]}: 2 backups, reaching ")
    assert lines[1] == "  1. full         base"
    assert lines[2].startswith("  2. log          WAL 000000010000000000000001..")
    beyond = run_cli(job, "--restore-plan", "--point", "0/9000000")
    assert beyond.returncode == 3
    assert beyond.stdout == ""
    wal, reached = lines[2].split("WAL ", 1)[1], lines[0].rsplit(" ", 1)[1]
    assert beyond.stderr == (f"error: postgres: nothing after WAL {wal} (ends at {reached}) "
                             "reaches 0/9000000\n"
                             "  hint: take or add a later log backup, or choose an earlier restore point\n")


def test_point_in_time_restores_verified_by_the_command(tmp_path, history):  # noqa: F811 - the fixture
    """A manifest of the source taken by the command at the last LSN; the base backup restored to that
    LSN is exact, restored to an earlier LSN it differs in the later changes' segments and rows only."""
    from tests.integration.test_restore_postgres import Cluster, free_port

    source = f"host=127.0.0.1 port={history['source'].port} user=postgres dbname=postgres"
    lsn1, lsn2 = history["lsn"][1], history["lsn"][2]

    def job(restored_port: int) -> Path:
        path = tmp_path / f"job-{restored_port}.yaml"
        path.write_text(f"""\
version: 1
name: restore-pitr
sources:
  src: {{type: postgres, dsn: "{source}", tables: {{}}}}
targets:
  out: {{type: postgres, dsn: "{source}"}}
restore:
  engine: postgresql
  manifests: manifests
  source: {{dsn: "{source}"}}
  restored: {{dsn: "host=127.0.0.1 port={restored_port} user=postgres dbname=postgres"}}
  tables:
    patients: {{key: [id], boundaries: [[200], [400], [600], [800]]}}
  drill_down: true
""")
        return path

    taken = run_cli(job(0), "--take-manifest", "at-lsn2", "--position", lsn2)
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert "  patients: 1,000 rows in 5 segments\n" in taken.stdout

    def restored(target_lsn: str, name: str) -> Cluster:
        data = history["root"] / name
        shutil.copytree(history["base"], data)
        for folder, _dirs, files in os.walk(data):
            shutil.chown(folder, "postgres", "postgres")
            for file in files:
                shutil.chown(os.path.join(folder, file), "postgres", "postgres")
        os.chmod(data, 0o700)
        cluster = Cluster(data, free_port())
        with (data / "postgresql.auto.conf").open("a") as conf:
            conf.write(f"port = {cluster.port}\nunix_socket_directories = '{history['root']}'\n"
                       f"archive_mode = off\nrestore_command = 'cp {history['archive']}/%f %p'\n"
                       f"recovery_target_lsn = '{target_lsn}'\nrecovery_target_action = 'promote'\n")
        (data / "recovery.signal").touch()
        cluster.start()
        deadline = time.monotonic() + 30
        while True:
            with cluster.connect() as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    return cluster
            assert time.monotonic() < deadline, f"recovery to {target_lsn} did not finish within 30 s"
            time.sleep(0.1)

    for target_lsn, name in ((lsn2, "cli-lsn2"), (lsn1, "cli-lsn1")):
        cluster = restored(target_lsn, name)
        try:
            checked = run_cli(job(cluster.port), "--verify-restore", "--point", lsn2)
        finally:
            cluster.stop()
            shutil.rmtree(cluster.data, ignore_errors=True)
        if target_lsn == lsn2:
            assert checked.returncode == 0, checked.stdout + checked.stderr
            assert "  patients: 1,000 rows restored, 1,000 expected; 5 segments, equal\n" in checked.stdout
        else:
            assert checked.returncode == 1, checked.stdout + checked.stderr
            assert "  patients: 1,000 rows restored, 1,000 expected; 5 segments, mismatched segments " \
                   "[3, 4]\n" in checked.stdout
            (table,) = saved_result(checked.stdout)["tables"]
            assert sorted((d["kind"], d["key"]["id"]) for d in table["differences"]) == [
                *[("changed", i) for i in range(650, 656)], ("extra", 700), ("missing", 1000)]
