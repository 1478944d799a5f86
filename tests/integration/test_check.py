"""`--check`: every source, target and state store of a job reached with its settings, on the real
local servers and on a port nothing listens on."""

from __future__ import annotations

import json
import re

import psycopg
import pytest

from tests.conftest import free_port
from tests.integration.run_helpers import patients, patients_mapping, run_cli, write_job
from tests.integration.test_operator_cli import source_job

pytestmark = pytest.mark.integration

VERSION = re.compile(r"  PostgreSQL \d+\.\d+ \(.*\)")


def test_check_says_what_it_found_on_postgres(tmp_path, pg_database):
    job = source_job(tmp_path, pg_database)
    with psycopg.connect(pg_database, autocommit=True) as db:
        db.execute("ANALYZE patients")  # the estimate is the catalogue's, exact for a small analysed table
        db.execute("ANALYZE visits")
        db.execute("CREATE TABLE patients_out (id int PRIMARY KEY, name text)")
    result = run_cli(job, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert VERSION.fullmatch(lines[3]) and VERSION.fullmatch(lines[8].split(";")[0])
    lines[3], lines[8] = "  <version>", "  <version>;" + lines[8].split(";", 1)[1]
    assert lines == [
        f"check of job ops ({job}):",
        "",
        "source 'src' (postgres): ok",
        "  <version>",
        "  table patients: exists, about 3,000 records, a record read, SELECT granted",
        "  table visits: exists, about 500 records, a record read, SELECT granted",
        "",
        "target 'pg' (postgres): ok",
        "  <version>; schema public: exists, CREATE granted",
        "  table patients_out: exists, SELECT, INSERT, UPDATE, DELETE granted",
        "  table visits_out: missing; the run creates it (create: if_missing)",
        "",
        "state store (sqlite): ok",
        f"  {tmp_path / '.etl' / 'state.sqlite'}: not created yet; the first run creates it",
        "",
        "check passed: 3 connections reached, every table a run needs is there or will be created",
    ]
    # nothing written but the command's audit record
    assert [p.name for p in (tmp_path / ".etl").iterdir()] == ["audit.jsonl"]
    assert json.loads((tmp_path / ".etl" / "audit.jsonl").read_text())["command"] == "check"


def test_check_exits_3_naming_what_it_cannot_reach(tmp_path, pg_database):
    port = free_port()
    job = source_job(tmp_path, pg_database)
    job.write_text(job.read_text().replace('  pg: {type: postgres, dsn: "host=127.0.0.1 port=5432',
                                           f'  pg: {{type: postgres, dsn: "host=127.0.0.1 port={port}'))
    result = run_cli(job, "--check")
    assert result.returncode == 3, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    at = lines.index("target 'pg' (postgres): PROBLEM")
    assert lines[at + 1] == (
        f"  unreachable: PostgreSQL target 'pg': cannot connect: connection failed: connection to server at "
        f"\"127.0.0.1\", port {port} failed: Connection refused Is the server running on that host and "
        "accepting TCP/IP connections?")
    assert "source 'src' (postgres): ok" in lines
    assert lines[-1] == "check failed: target 'pg' (postgres) unreachable"


def test_check_names_a_missing_source_table_with_the_nearest_one(tmp_path, pg_database):
    job = source_job(tmp_path, pg_database)
    job.write_text(job.read_text().replace("      visits: {mapping", "      visit: {mapping"))
    result = run_cli(job, "--check")
    assert result.returncode == 3, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[2] == "source 'src' (postgres): PROBLEM"
    assert lines[4] == ("  problem: PostgreSQL source 'src': table 'visit' does not exist or is not visible "
                        "to this user; did you mean 'visits'?")
    assert lines[-1] == "check failed: source 'src' (postgres)"


def test_check_on_mongodb_and_dynamodb(tmp_path, mongo_db, pg_database, dynamodb_table_prefix):
    mongo_db.patients.insert_many(patients(20))
    table = f"{dynamodb_table_prefix}_patients"
    job = write_job(tmp_path, name="checked", database=mongo_db.name, collection="patients",
                    mapping=patients_mapping(tmp_path, dynamo_table=table), pg_dsn=pg_database)
    result = run_cli(job, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"  MongoDB \d+\.\d+\.\d+", lines[3])
    assert lines[2:10] == [
        "source 'mongo' (mongo): ok", lines[3],
        "  table patients: exists, about 20 records, a record read",
        "",
        "target 'pg' (postgres): ok", lines[7],
        "  table patients: missing; the run creates it (create: if_missing)",
        "  table visits: missing; the run creates it (create: if_missing)",
    ]
    assert lines[10:14] == [
        "",
        "target 'dynamo' (dynamodb): ok",
        "  DynamoDB at http://127.0.0.1:8001",
        f"  table {table}: missing; the run creates it (create: if_missing)",
    ]
    assert run_cli(job).returncode == 0
    again = run_cli(job, "--check").stdout.splitlines()
    assert f"  table {table}: active, key pk (hash), sk (range), about 20 items" in again
    assert again[-3] == ("  " + str(tmp_path / ".etl" / "state.sqlite")
                         + ": reached; job checked: 2 checkpoints, 2 done; verdict proven")
