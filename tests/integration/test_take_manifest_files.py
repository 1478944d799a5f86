"""`--take-manifest` end to end as a user runs it (a subprocess, umask 002): the manifest folder is
created 0700 and each manifest 0600, no partial file stays behind, and the files hold exactly the
checksums of the rows in the database (recomputed here from rows read with psycopg), for a full
manifest and a differential one against it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import psycopg
import pytest

from etl.checksum import TableManifest
from etl.job import load_job
from etl.restore.cli import open_reader, table_spec
from tests.integration.run_helpers import ROOT, command, environment
from tests.jobfiles import postgres_target, write_job_file

pytestmark = pytest.mark.integration

BOUNDARIES = [[11], [21], [31]]


def job_file(folder: Path, dsn: str) -> Path:
    return write_job_file(folder, f"""\
version: 1
name: manifests
sources:
  src: {{type: postgres, dsn: "{dsn}", tables: {{}}}}
targets:
  out: {postgres_target(dsn)}
restore:
  engine: postgresql
  manifests: backups/manifests
  source: {{dsn: "{dsn}"}}
  tables:
    patients: {{key: [id], boundaries: {json.dumps(BOUNDARIES)}}}
  buckets: 8
""", name="restore.yaml")


def take(job: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(job, "--take-manifest", *args), capture_output=True, text=True, timeout=300,
                          env=environment(), cwd=ROOT, preexec_fn=lambda: os.umask(0o002))


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def expected_table(job: Path, dsn: str, only: list[int] | None = None) -> dict:
    """The table's manifest from rows read here with psycopg (the spec as the command builds it)."""
    loaded = load_job(job)
    reader = open_reader(loaded, "source", {"patients": {"key": ["id"], "schema": None}})
    try:
        spec = table_spec(reader, "patients")
    finally:
        reader.close()
    with psycopg.connect(dsn) as connection, connection.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        rows = cursor.execute("SELECT * FROM patients").fetchall()
    return TableManifest.build(spec, rows, buckets=8, boundaries=BOUNDARIES, only_segments=only).to_dict()


def test_take_manifest_writes_private_files_with_exactly_the_checksums(tmp_path, pg_database):
    with psycopg.connect(pg_database, autocommit=True) as connection:
        connection.execute("CREATE TABLE patients (id int PRIMARY KEY, name text NOT NULL,"
                           " balance numeric(12,2))")
        connection.execute("INSERT INTO patients SELECT i, 'patient ' || i, i * 1.25"
                           " FROM generate_series(1, 40) i")
    job = job_file(tmp_path, pg_database)

    full = take(job, "full-sun", "--position", "0/3000060")
    assert full.returncode == 0, full.stdout + full.stderr
    folder = tmp_path / "backups" / "manifests"
    path = folder / "full-sun.json"
    saved = json.loads(path.read_text())
    assert full.stdout.splitlines() == [
        f"manifest full-sun (full) at lsn 0/3000060, taken at {saved['taken_at']}",
        "  patients: 40 rows in 4 segments",
        f"manifest saved to {path}",
    ]
    assert (mode(tmp_path / "backups"), mode(folder), mode(path)) == ("0o700", "0o700", "0o600")
    assert sorted(p.name for p in folder.iterdir()) == ["full-sun.json"]
    taken_at = saved.pop("taken_at")
    assert taken_at.endswith("+00:00")
    assert saved == {"encoding": "etl-canonical-1/md5", "kind": "full", "base": None,
                     "position": {"lsn": "0/3000060"}, "tables": [expected_table(job, pg_database)]}
    table = saved["tables"][0]
    assert [(s["index"], s["lower"], s["upper"], sum(s["counts"])) for s in table["segments"]] == [
        (0, None, [11], 10), (1, [11], [21], 10), (2, [21], [31], 10), (3, [31], None, 10)]
    assert (table["key"], table["buckets"], table["boundaries"]) == (["id"], 8, BOUNDARIES)

    with psycopg.connect(pg_database, autocommit=True) as connection:
        connection.execute("UPDATE patients SET name = 'changed' WHERE id = 25")
    diff = take(job, "diff-mon", "--base", "full-sun", "--position", "0/3000100")
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert diff.stdout.splitlines()[1:] == ["  patients: 1 of 4 segments changed [2]",
                                            f"manifest saved to {folder / 'diff-mon.json'}"]
    saved = json.loads((folder / "diff-mon.json").read_text())
    saved.pop("taken_at")
    assert saved == {"encoding": "etl-canonical-1/md5", "kind": "differential", "base": taken_at,
                     "position": {"lsn": "0/3000100"}, "tables": [expected_table(job, pg_database, only=[2])]}
    assert mode(folder / "diff-mon.json") == "0o600"
    assert sorted(p.name for p in folder.iterdir()) == ["diff-mon.json", "full-sun.json"]

    again = take(job, "full-sun", "--position", "0/3000200")
    assert (again.returncode, again.stderr) == (2, f"error: manifest {path} already exists\n"
                                                   "  hint: each backup has one manifest; remove the file "
                                                   "first to take it again\n")
