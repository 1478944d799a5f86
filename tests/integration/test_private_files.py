"""Every file etl writes is 0600 and every folder it creates 0700, whatever the umask: a real run
(MongoDB -> PostgreSQL, with rejects) and a validation that finds differences, then the mode bits
of everything under the job's `.etl/` folder."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

import psycopg
import pytest
from bson.decimal128 import Decimal128

from tests.integration.run_helpers import ROOT, command, environment, patients, patients_mapping, write_job

pytestmark = pytest.mark.integration


def run(job: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(job, *args), capture_output=True, text=True, timeout=300,
                          env=environment(), cwd=ROOT, umask=0o002)


def modes(folder: Path) -> dict[str, str]:
    """Mode bits of everything under `folder`, by relative name with timestamps written `<time>`."""
    return {re.sub(r"\d{8}T\d{6}", "<time>", path.relative_to(folder).as_posix()):
            oct(stat.S_IMODE(path.stat().st_mode)) for path in sorted(folder.rglob("*"))}


def test_every_file_a_run_writes_is_private(tmp_path, mongo_db, pg_database):
    documents = patients(12)
    for document in documents[:2]:
        document["balance"] = "not a number"
    documents[2]["balance"] = Decimal128("1.999")
    mongo_db.patients.insert_many(documents)
    job = write_job(tmp_path, name="private_files", database=mongo_db.name, collection="patients",
                    mapping=patients_mapping(tmp_path), pg_dsn=pg_database, max_rejects='"50%"',
                    dynamo=False)
    done = run(job)
    assert done.returncode == 0, done.stdout + done.stderr
    with psycopg.connect(pg_database, autocommit=True) as connection:
        connection.execute("DELETE FROM patients WHERE patient_id = 5")
    checked = run(job, "--validate-only")
    assert checked.returncode == 1, checked.stdout + checked.stderr

    found = modes(tmp_path / ".etl")
    assert found == {
        "audit.jsonl": "0o600",
        "dead_letter.jsonl": "0o600",
        "reports": "0o700",
        "reports/differences-pg.patients-<time>.json": "0o600",
        "reports/private_files-run-<time>.json": "0o600",
        "reports/private_files-run-<time>.md": "0o600",
        "reports/private_files-validate-<time>.json": "0o600",
        "reports/private_files-validate-<time>.md": "0o600",
        "state.sqlite": "0o600",
    } | {name: "0o600" for name in ("state.sqlite-wal", "state.sqlite-shm") if name in found}
    assert oct(stat.S_IMODE((tmp_path / ".etl").stat().st_mode)) == "0o700"
    assert len((tmp_path / ".etl" / "dead_letter.jsonl").read_text().splitlines()) == 3
