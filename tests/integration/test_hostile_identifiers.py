"""Hostile identifiers from job and mapping files never become SQL: quoted, or rejected with a clear error.

A table named `x"; DROP TABLE y; --` is read from (PostgreSQL source), written into as a schema
(PostgreSQL sink) and used as the state store's schema and table; a canary table `y` and its rows
prove nothing else changed. As a mapping's target table name it is refused before any connection.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.integration.run_helpers import run_cli, saved_report

pytestmark = pytest.mark.integration

HOSTILE = 'x"; DROP TABLE y; --'
QUOTED = '"x""; DROP TABLE y; --"'

MAPPING = """\
version: 1
source:
  key: [id]
targets:
  pg: postgres
outputs:
  - target: pg
    table: {table}
    key: [id]
    columns:
      id: {{from: id, type: int}}
      note: {{from: note, type: text}}
"""


def job_text(dsn: str, mapping: str) -> str:
    hostile = HOSTILE.replace("'", "''")
    return f"""\
version: 1
name: hostile
sources:
  pg_in:
    type: postgres
    dsn: "{dsn}"
    tables:
      '{hostile}': {{mapping: {mapping}, key: [id]}}
targets:
  pg: {{type: postgres, dsn: "{dsn}", schema: '{hostile}', create: if_missing}}
state: {{type: postgres, dsn: "{dsn}", schema: '{hostile}', table: '{hostile}'}}
validation: {{after_run: true}}
"""


def canary(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as connection:
        return connection.execute("SELECT id, note FROM public.y ORDER BY id").fetchall()


@pytest.fixture
def hostile_database(pg_database):
    with psycopg.connect(pg_database, autocommit=True) as admin:
        admin.execute("CREATE TABLE public.y (id int PRIMARY KEY, note text)")
        admin.execute("INSERT INTO public.y VALUES (1, 'canary one'), (2, 'canary two')")
        admin.execute(f"CREATE TABLE public.{QUOTED} (id int PRIMARY KEY, note text)")
        admin.execute(f"INSERT INTO public.{QUOTED} SELECT g, 'row ' || g FROM generate_series(1, 25) g")
    return pg_database


def test_a_hostile_table_schema_and_state_table_are_quoted_everywhere(tmp_path, hostile_database):
    dsn = hostile_database
    (tmp_path / "m.yaml").write_text(MAPPING.format(table="rows"))
    job = tmp_path / "job.yaml"
    job.write_text(job_text(dsn, "m.yaml"))

    result = run_cli(job)
    assert result.returncode == 0, result.stdout + result.stderr
    report = saved_report(result.stdout)
    assert [(t["table"], t["extracted"], t["loaded"]) for t in report["tables"]] == [
        (f"pg_in.{HOSTILE}", 25, 25)]
    assert [(c["table"], c["ok"], c["rows_target"]) for c in report["validation"]] == [("rows", True, 25)]
    assert canary(dsn) == [(1, "canary one"), (2, "canary two")]
    with psycopg.connect(dsn) as connection:
        tables = connection.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2").fetchall()
        moved = connection.execute(f"SELECT count(*), min(note), max(id) FROM {QUOTED}.rows").fetchone()
    assert sorted(tables) == [("public", HOSTILE), ("public", "y"), (HOSTILE, "rows"), (HOSTILE, HOSTILE)]
    assert moved == (25, "row 1", 25)


def test_a_hostile_mapping_table_name_is_refused_before_any_sql(tmp_path, hostile_database):
    (tmp_path / "m.yaml").write_text(MAPPING.format(table=f"'{HOSTILE}'"))
    job = tmp_path / "job.yaml"
    job.write_text(job_text(hostile_database, "m.yaml"))

    result = run_cli(job, "--plan")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.endswith(
        f"error: {tmp_path / 'm.yaml'}:8:12: outputs[0].table: `{HOSTILE}` is not a usable table name\n"
        "  hint: use letters, digits and underscores (at most 63 bytes for PostgreSQL)\n"), result.stderr
    assert canary(hostile_database) == [(1, "canary one"), (2, "canary two")]
    with psycopg.connect(hostile_database) as connection:
        schemas = connection.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s", (HOSTILE,)).fetchone()
    assert schemas == (0,)
