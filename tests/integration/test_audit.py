"""Every `python -m etl.run` leaves exactly one audit record with its exit code, and no secret."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PG_HOST, PG_PORT
from tests.integration.run_helpers import (
    ROOT,
    command,
    environment,
    patients,
    patients_mapping,
    pg_scalar,
)
from tests.jobfiles import postgres_target, write_job_file

pytestmark = pytest.mark.integration

PASSWORD = "Audit-Planted-pw-5521"  # noqa: S105 - trust authentication accepts any password


def write_job(folder: Path, *, dsn_variable: str = "ETL_AUDIT_PG_DSN", extra: str = "") -> Path:
    patients_mapping(folder)
    return write_job_file(folder, f"""\
version: 1
name: audited
sources:
  mongo:
    type: mongo
    uri: "mongodb://127.0.0.1:27017/?directConnection=true"
    database: {folder.name}
    tables:
      patients: {{mapping: patients.yaml, partitions: 2}}
targets:
  pg: {postgres_target(f"${{env:{dsn_variable}}}", create="if_missing")}
validation: {{after_run: true}}
{extra}""", name="audited.yaml")


def run(job: Path, *args: str, dsn: str) -> subprocess.CompletedProcess:
    env = environment() | {"ETL_AUDIT_PG_DSN": dsn}
    return subprocess.run(command(job, *args), capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def records(job: Path) -> list[dict]:
    path = job.parent / ".etl" / "audit.jsonl"
    text = path.read_text()
    assert PASSWORD not in text
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def job_folder(tmp_path, mongo_db):
    folder = tmp_path / mongo_db.name
    folder.mkdir()
    mongo_db.patients.insert_many(patients(40))
    return folder


def test_success_then_differences_then_runtime_failure_each_leave_one_record(job_folder, pg_database):
    dsn = f"{pg_database} password={PASSWORD}"
    job = write_job(job_folder)

    done = run(job, dsn=dsn)
    assert done.returncode == 0, done.stdout + done.stderr
    (first,) = records(job)
    mapping = job_folder / "patients.yaml"
    assert first["command"] == "run" and first["exit_code"] == 0 and first["error"] is None
    assert first["job"] == "audited"
    assert first["job_sha256"] == hashlib.sha256(job.read_bytes()).hexdigest()
    assert first["mapping_sha256"] == {"patients.yaml": hashlib.sha256(mapping.read_bytes()).hexdigest()}
    assert first["counts"] == {
        "mongo.patients": {"extracted": 40, "loaded": 40, "rejected": 0, "filtered": 0}}
    assert first["validation"] == "passed"
    assert first["targets"] == {"pg": {"type": "postgres", "host": PG_HOST, "port": str(PG_PORT),
                                       "database": pg_database.rsplit("=", 1)[1], "schema": "public"}}
    assert first["sources"]["mongo"] == {
        "type": "mongo", "host": "127.0.0.1:27017", "database": job_folder.name}
    assert first["os_user"] and first["started_at"] <= first["finished_at"]

    pg_scalar(dsn, "UPDATE patients SET name = 'changed' WHERE patient_id = 7 RETURNING 1")
    differences = run(job, "--validate-only", dsn=dsn)
    assert differences.returncode == 1, differences.stdout + differences.stderr
    second = records(job)[1]
    assert (second["command"], second["exit_code"], second["validation"]) == ("validate", 1, "differences")

    unreachable = f"host=127.0.0.1 port=1 user=postgres dbname=x password={PASSWORD}"
    failed = run(job, "--full-refresh", dsn=unreachable)
    assert failed.returncode == 3, failed.stdout + failed.stderr
    all_records = records(job)
    assert len(all_records) == 3
    third = all_records[2]
    assert (third["command"], third["exit_code"], third["validation"]) == ("run", 3, None)
    assert third["options"] == {"full_refresh": True}
    assert third["targets"]["pg"]["port"] == "1"
    assert third["error"].startswith("ConnectionFailed: ")
    assert PASSWORD not in failed.stdout + failed.stderr


def test_a_bad_job_file_still_leaves_a_record(job_folder, pg_database):
    job = write_job(job_folder, extra="parallelism: two\n")
    result = run(job, dsn=pg_database)
    assert result.returncode == 2
    (record,) = records(job)
    assert (record["command"], record["exit_code"]) == ("run", 2)
    assert (record["job"], record["job_sha256"]) == (None, None)
    assert record["error"].startswith("JobFileProblems: ")
    assert "parallelism: expected an integer, got 'two'" in record["error"]


def test_a_bad_mapping_leaves_a_record_with_exit_2(job_folder, pg_database):
    job = write_job(job_folder)
    (job_folder / "patients.yaml").write_text("version: 1\nsource: {key: [_id]}\noutputs: 3\n")
    result = run(job, "--plan", dsn=pg_database)
    assert result.returncode == 2, result.stdout + result.stderr
    (record,) = records(job)
    assert (record["command"], record["exit_code"], record["job"]) == ("plan", 2, "audited")
    assert record["error"].startswith("MappingError: ")


def test_sigterm_during_a_run_leaves_a_record_with_exit_3(tmp_path, mongo_db, pg_database):
    folder = tmp_path / mongo_db.name
    folder.mkdir()
    mongo_db.patients.insert_many(patients(3000))
    job = write_job(folder, extra="batch: {records: 50}\nparallelism: 1\n")
    # SIGTERM right after the 4th batch (200 records) is committed: the moment is exact whatever the load
    env = environment() | {"ETL_AUDIT_PG_DSN": pg_database, "ETL_TEST_FAULT": "term:batch:4"}
    process = subprocess.Popen(command(job), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, cwd=ROOT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 3, stdout + stderr
    (record,) = records(job)
    assert (record["command"], record["exit_code"]) == ("run", 3)
    extracted = record["counts"]["mongo.patients"]["extracted"]
    assert 200 <= extracted < 3000


def test_a_run_stopped_by_sigterm_names_the_stop_in_its_record(tmp_path, mongo_db, pg_database):
    folder = tmp_path / mongo_db.name
    folder.mkdir()
    mongo_db.patients.insert_many(patients(500))
    job = write_job(folder, extra="batch: {records: 50}\nparallelism: 1\n")
    env = environment() | {"ETL_AUDIT_PG_DSN": pg_database, "ETL_TEST_FAULT": "term:batch:2"}
    result = subprocess.run(command(job), capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert result.returncode == 3, result.stdout + result.stderr
    (record,) = records(job)
    assert (record["command"], record["exit_code"], record["error"]) == ("run", 3, "stopped by SIGTERM")
    assert record["validation"] is None


def test_records_also_go_to_a_postgresql_table(job_folder, pg_database):
    dsn = f"{pg_database} password={PASSWORD}"
    job = write_job(job_folder, extra="audit: {path: logs/audit.jsonl, postgres: "
                                      "{dsn: '${env:ETL_AUDIT_PG_DSN}', schema: public, table: etl_audit}}\n")
    assert run(job, dsn=dsn).returncode == 0
    assert run(job, "--validate-only", dsn=dsn).returncode == 0
    lines = (job_folder / "logs" / "audit.jsonl").read_text().splitlines()
    assert [json.loads(line)["command"] for line in lines] == ["run", "validate"]
    import psycopg

    with psycopg.connect(pg_database) as connection:
        rows = connection.execute("SELECT record FROM etl_audit ORDER BY id").fetchall()
    assert [(r["command"], r["exit_code"], r["validation"]) for (r,) in rows] == [
        ("run", 0, "passed"), ("validate", 0, "passed")]
    assert PASSWORD not in json.dumps([r for (r,) in rows])
