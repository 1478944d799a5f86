"""Least privilege: a read-only PostgreSQL role validates a target, and cannot change it.

The role is created here: LOGIN, SELECT on the target tables only, default_transaction_read_only,
and the database's TEMP privilege revoked from PUBLIC, so validation is proven to need neither
CREATE nor temporary tables.
"""

from __future__ import annotations

import json
import re

import psycopg
import pytest

from tests.conftest import unique_name
from tests.integration.run_helpers import patients, patients_mapping, run_cli, saved_report, write_job

pytestmark = pytest.mark.integration

FINGERPRINT = ("SELECT count(*), md5(string_agg(p::text, ',' ORDER BY patient_id)) FROM patients p",
               "SELECT count(*), md5(string_agg(v::text, ',' ORDER BY visit_id)) FROM visits v")


@pytest.fixture
def readonly_role(pg_database):
    """(DSN of the database as a new read-only role, the database's admin DSN)."""
    role = unique_name("etl_ro")
    database = pg_database.rsplit("=", 1)[1]
    with psycopg.connect(pg_database, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'ALTER ROLE "{role}" SET default_transaction_read_only = on')
        admin.execute(f'REVOKE TEMPORARY, CREATE ON DATABASE "{database}" FROM PUBLIC')
        admin.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')
        admin.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
    try:
        yield pg_database.replace("user=postgres", f"user={role}"), role
    finally:
        with psycopg.connect(pg_database, autocommit=True) as admin:
            admin.execute(f'DROP OWNED BY "{role}"')
            admin.execute(f'DROP ROLE "{role}"')


def fingerprint(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as connection:
        return [connection.execute(query).fetchone() for query in FINGERPRINT]


def test_a_read_only_role_validates_and_cannot_write(tmp_path, mongo_db, pg_database, readonly_role):
    readonly_dsn, role = readonly_role
    mongo_db.patients.insert_many(patients(60))
    mapping = patients_mapping(tmp_path)
    loader = write_job(tmp_path, name="loader", database=mongo_db.name, collection="patients",
                       mapping=mapping, pg_dsn=pg_database, dynamo=False, after_run=False)
    loaded = run_cli(loader)
    assert loaded.returncode == 4, loaded.stdout + loaded.stderr  # loaded, proven by the validator below
    with psycopg.connect(pg_database, autocommit=True) as admin:
        admin.execute(f'GRANT SELECT ON patients, visits TO "{role}"')
    before = fingerprint(pg_database)
    assert [count for count, _ in before] == [60, sum(len(p["visits"]) for p in patients(60))]

    validator = write_job(tmp_path, name="validator", database=mongo_db.name, collection="patients",
                          mapping=mapping, pg_dsn=readonly_dsn, dynamo=False)
    validated = run_cli(validator, "--validate-only")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    report = saved_report(validated.stdout)
    assert [(c["table"], c["ok"], c["rows_source"], c["rows_target"]) for c in report["validation"]] == [
        ("patients", True, 60, 60), ("visits", True, before[1][0], before[1][0])]

    written = run_cli(validator, "--full-refresh")
    assert written.returncode == 3, written.stdout + written.stderr
    # two partitions run at once: whichever reaches its first write first fails the run (the
    # parent table's COPY, the first statement of a batch, needs the INSERT privilege)
    assert re.search(r"partition mongo\.patients#[01]/2 failed: permission denied for table patients",
                     written.stderr), written.stderr
    assert "Traceback" not in written.stderr
    assert saved_report(written.stdout)["status"] == "failed"
    assert fingerprint(pg_database) == before
    audit = [json.loads(line) for line in (tmp_path / ".etl" / "audit.jsonl").read_text().splitlines()]
    assert [(r["job"], r["command"], r["exit_code"]) for r in audit] == [
        ("loader", "run", 4), ("validator", "validate", 0), ("validator", "run", 3)]
