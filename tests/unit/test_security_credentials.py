"""A password written in the job file is a warning naming its line, for every engine's password field."""

from __future__ import annotations

import textwrap

from etl.job import load_job
from etl.redact import redact

JOB = """\
version: 1
name: credentials
sources:
  mongo:
    type: mongo
    uri: "mongodb://etl:Mongo-Lit-Pw1@127.0.0.1:27017/?directConnection=true"
    database: d
    tables: {c: {mapping: m.yaml}}
  pg_in:
    type: postgres
    dsn: "host=127.0.0.1 user=etl password=Pg-Lit-Pw2 dbname=d"
    tables: {t: {mapping: m.yaml}}
  ora:
    type: oracle
    dsn: "localhost:1521/FREEPDB1"
    user: etl
    password: Ora-Lit-Pw3
    wallet_password: Wallet-Lit-Pw4
    tables: {t: {mapping: m.yaml}}
  sql:
    type: mssql
    server: 127.0.0.1
    user: etl
    password: Sql-Lit-Pw5
    tables: {t: {mapping: m.yaml}}
  odbc:
    type: mssql
    dsn: "DRIVER={ODBC Driver 18 for SQL Server};SERVER=127.0.0.1;UID=etl;PWD={Odbc-Lit-Pw6}"
    tables: {t: {mapping: m.yaml}}
targets:
  pg: {type: postgres, dsn: "postgresql://etl:Uri-Lit-Pw7@127.0.0.1/d"}
  from_env: {type: postgres, dsn: "host=127.0.0.1 user=etl password=${env:PG_PASSWORD} dbname=d"}
state: {type: postgres, dsn: "host=127.0.0.1 password=State-Lit-Pw8"}
audit: {postgres: {dsn: "host=127.0.0.1 password=Audit-Lit-Pw9"}}
"""
INLINE = "a connection string with an inline password is written in the job file; " \
         "use ${env:NAME} or ${secret:NAME} instead"
LITERAL = "a password is written in the job file; use ${env:NAME} or ${secret:NAME} instead"


def test_every_engines_password_field_is_a_warning_with_its_line(tmp_path):
    (tmp_path / "m.yaml").write_text("{}\n")
    path = tmp_path / "job.yaml"
    path.write_text(textwrap.dedent(JOB))
    job = load_job(path, environ={"PG_PASSWORD": "Env-Pw-10"}, secrets={})
    assert [w.removeprefix(f"{path}:") for w in job.warnings] == [
        f"6:10: sources.mongo.uri: {INLINE}",
        f"11:10: sources.pg_in.dsn: {INLINE}",
        f"17:15: sources.ora.password: {LITERAL}",
        f"18:22: sources.ora.wallet_password: {LITERAL}",
        f"24:15: sources.sql.password: {LITERAL}",
        f"28:10: sources.odbc.dsn: {INLINE}",
        f"31:29: targets.pg.dsn: {INLINE}",
        f"33:30: state.dsn: {INLINE}",
        f"34:25: audit.postgres.dsn: {INLINE}",
    ]
    names = ["Mongo", "Pg", "Ora", "Wallet", "Sql", "Odbc", "Uri", "State", "Audit"]
    for number, name in enumerate(names, 1):
        assert redact(f"leak {name}-Lit-Pw{number}") == "leak ***"
