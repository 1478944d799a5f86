"""No representation of a job or of a connection section shows a password: repr, str, rich, errors."""

from __future__ import annotations

import textwrap

import pytest
import rich.pretty
from pydantic import ValidationError

from etl.audit import AuditConfig
from etl.errors import EtlError
from etl.job import Restore, RestoreDatabase, load_job
from etl.sinks import dynamodb as dynamodb_sink
from etl.sinks import postgres as postgres_sink
from etl.sources import mongo, mongodump, mssql, oracle
from etl.sources import postgres as postgres_source
from etl.state import dynamodb as dynamodb_state
from etl.state import postgres as postgres_state
from etl.state import sqlite as sqlite_state

INLINE_PW = "InlineRepr-7731"
ENV_PW = "EnvRepr-4419"
STATE_PW = "StateRepr-2286"
AUDIT_PW = "AuditRepr-9054"
JOB = f"""\
version: 1
name: repr-job
sources:
  mongo:
    type: mongo
    uri: "mongodb://admin:{INLINE_PW}@127.0.0.1:27017/?directConnection=true"
    database: chinook
    tables:
      customers: {{mapping: mappings/customers.yaml}}
targets:
  dynamo: {{type: dynamodb, endpoint_url: "http://127.0.0.1:8001", region: us-east-1}}
  pg: {{type: postgres, dsn: "${{env:REPR_PG_DSN}}", schema: public}}
state: {{type: postgres, dsn: "host=127.0.0.1 user=etl password={STATE_PW} dbname=etl"}}
audit: {{postgres: {{dsn: "postgresql://audit:{AUDIT_PW}@127.0.0.1/audit"}}}}
"""
ENV = {"REPR_PG_DSN": f"postgresql://app:{ENV_PW}@127.0.0.1:5432/target"}
PASSWORDS = (INLINE_PW, ENV_PW, STATE_PW, AUDIT_PW)


def shown(value: object) -> list[str]:
    """Every way a notebook, a log line or a traceback may show `value`."""
    return [repr(value), str(value), f"{value!r}", rich.pretty.pretty_repr(value)]


def write(folder, text: str):
    (folder / "mappings").mkdir(exist_ok=True)
    (folder / "mappings" / "customers.yaml").write_text("{}\n")
    path = folder / "job.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def assert_hidden(texts: list[str], passwords: tuple[str, ...]) -> None:
    for text in texts:
        for password in passwords:
            assert password not in text, text
        assert "***" in text, text


def test_a_loaded_job_and_each_of_its_sections_never_show_a_password(tmp_path):
    job = load_job(write(tmp_path, JOB), environ=ENV, secrets={})
    assert job.targets["pg"].dsn == ENV["REPR_PG_DSN"]  # the value itself is intact
    assert_hidden(shown(job), PASSWORDS)
    assert_hidden(shown(job.sources["mongo"]), (INLINE_PW,))
    assert_hidden(shown(job.targets["pg"]), (ENV_PW,))
    assert_hidden(shown(job.state), (STATE_PW,))
    assert_hidden(shown(job.audit), (AUDIT_PW,))
    assert_hidden(shown(job.audit.postgres), (AUDIT_PW,))
    assert "dynamodb" in repr(job.targets["dynamo"])


# passwords that no job file ever registered: only the patterns can hide them
@pytest.mark.parametrize(
    ("config", "password"),
    [
        (mongo.Config(type="mongo", uri="mongodb+srv://u:Unreg-m1@x.example/db", database="d", tables={}),
         "Unreg-m1"),
        (postgres_source.Config(type="postgres", dsn="host=h password='Unreg p2' dbname=d", tables={}),
         "Unreg p2"),
        (oracle.Config(type="oracle", dsn="h:1521/s", user="u", password="Unreg-o3", tables={},
                       wallet_password="Unreg-w3"), "Unreg-"),
        (mssql.Config(type="mssql", dsn="SERVER=h;UID=sa;PWD={Unreg;s4}", tables={}), "Unreg;s4"),
        (mssql.Config(type="mssql", server="h", user="sa", password="Unreg-s5", tables={}), "Unreg-s5"),
        (postgres_sink.Config(type="postgres", dsn="postgresql://u:Unreg%40p6@h/d"), "Unreg%40p6"),
        (postgres_state.Config(type="postgres", dsn="host=h password=Unreg-t8"), "Unreg-t8"),
        (AuditConfig(postgres={"dsn": "host=h password=Unreg-a9"}), "Unreg-a9"),
        (RestoreDatabase(dsn="postgresql://u:Unreg-r10@h/d"), "Unreg-r10"),
        (Restore(engine="postgresql", restored={"dsn": "host=h password=Unreg-r11"}), "Unreg-r11"),
    ],
)
def test_every_connection_section_hides_a_password_it_was_built_with(config, password):
    assert_hidden(shown(config), (password,))


def test_sections_without_secrets_still_inherit_the_redacted_repr():
    for model in (mongodump.Config, dynamodb_sink.Config, dynamodb_state.Config, sqlite_state.Config):
        assert model.__repr_args__.__qualname__ == "RedactedRepr.__repr_args__"


def test_a_validation_error_never_shows_the_input_that_held_a_password():
    with pytest.raises(ValidationError) as caught:
        postgres_sink.Config.model_validate(
            {"type": "postgres", "dsn": "postgresql://u:Unreg-v1@h/d", "sslmode": "bogus"}
        )
    assert "sslmode" in str(caught.value)
    with pytest.raises(ValidationError) as caught_model:  # a whole-section check quotes the whole input
        mssql.Config.model_validate({"type": "mssql", "user": "sa", "password": "Unreg-v2", "tables": {}})
    assert "set either `dsn`" in str(caught_model.value)
    with pytest.raises(ValidationError) as caught_field:  # the offending value is the password's holder
        dynamodb_sink.Config.model_validate({"type": "dynamodb", "endpoint_url": "http://u:Unreg-v3@10.1.2.3"})
    for error, password in ((caught, "Unreg-v1"), (caught_model, "Unreg-v2"), (caught_field, "Unreg-v3")):
        assert password not in str(error.value)
        assert password not in repr(error.value)


def test_a_job_file_error_for_a_bad_value_never_shows_a_password(tmp_path):
    bad = JOB.replace("schema: public}", "schema: public, sslmode: bogus}") + "parallelism: 0\n"
    with pytest.raises(EtlError) as caught:
        load_job(write(tmp_path, bad), environ=ENV, secrets={})
    message = str(caught.value)
    assert "targets.pg.sslmode" in message and "parallelism" in message
    for password in PASSWORDS:
        assert password not in message
        assert password not in repr(caught.value)
