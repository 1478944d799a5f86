"""The audit record: what it names (and never names), how it is appended, and that SIGTERM still writes it."""

from __future__ import annotations

import argparse
import json
import os
import signal

import pytest

from etl.audit import AuditConfig, AuditRecord, AuditTrail, append_audit, describe_endpoint
from etl.redact import register_secret
from etl.sinks import dynamodb, postgres
from etl.sources import mongo, mssql, oracle


def test_endpoints_are_described_by_type_host_port_and_database_only():
    pg = postgres.Config(type="postgres", dsn="host=db.example.com port=5433 dbname=clinic user=app "
                                                "password=pg-Secret-1 sslmode=verify-full", schema="care")
    assert describe_endpoint(pg) == {"type": "postgres", "host": "db.example.com", "port": "5433",
                                     "database": "clinic", "schema": "care"}
    uri = postgres.Config(type="postgres", dsn="postgresql://app:pg-Secret-2@db.example.com:5432/clinic?x=1")
    assert describe_endpoint(uri) == {"type": "postgres", "host": "db.example.com:5432", "database": "clinic",
                                      "schema": "public"}
    source = mongo.Config(type="mongo", uri="mongodb://u:mongo-Secret-3@a.example.com,b.example.com/admin?tls=true",
                          database="clinic", tables={})
    assert describe_endpoint(source) == {"type": "mongo", "host": "a.example.com,b.example.com",
                                         "database": "clinic"}
    ora = oracle.Config(type="oracle", dsn="tcps://ora.example.com:2484/CLINIC", user="u",
                        password="ora-Secret-4", tables={})
    assert describe_endpoint(ora) == {"type": "oracle", "host": "ora.example.com", "port": 2484,
                                      "database": "CLINIC"}
    sql = mssql.Config(type="mssql", server="sql.example.com", database="clinic", user="u",
                       password="sql-Secret-5", tables={})
    assert describe_endpoint(sql) == {"type": "mssql", "host": "sql.example.com", "port": 1433,
                                      "database": "clinic"}
    odbc = mssql.Config(type="mssql", dsn="DRIVER={x};SERVER=s;PWD=odbc-Secret-6", tables={})
    assert describe_endpoint(odbc) == {"type": "mssql", "port": 1433}
    dynamo = dynamodb.Config(type="dynamodb", endpoint_url="https://dynamodb.eu-west-1.amazonaws.com",
                             region="eu-west-1")
    assert describe_endpoint(dynamo) == {"type": "dynamodb", "region": "eu-west-1",
                                         "host": "dynamodb.eu-west-1.amazonaws.com", "scheme": "https"}


def test_a_record_is_one_redacted_json_line_appended_per_call(tmp_path):
    register_secret("planted-Secret-77")
    path = tmp_path / "deep" / "audit.jsonl"
    for code in (0, 3):
        record = AuditRecord(command="run", job_file="/jobs/j.yaml", started_at="t0", exit_code=code,
                             error="ConnectionFailed: password=planted-Secret-77 refused")
        append_audit(record, path)
    lines = path.read_text().splitlines()
    assert [json.loads(line)["exit_code"] for line in lines] == [0, 3]
    assert "planted-Secret-77" not in path.read_text()
    assert json.loads(lines[1])["error"] == "ConnectionFailed: password=*** refused"
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def arguments(**overrides):
    values = {"job": "jobs/x.yaml", "plan": False, "validate_only": False, "only": [], "limit": None,
              "shard": None, "resume": False, "full_refresh": False}
    return argparse.Namespace(**(values | overrides))


@pytest.mark.parametrize(("overrides", "command", "options"), [
    ({}, "run", {}),
    ({"validate_only": True}, "validate", {}),
    ({"plan": True, "only": ["customers"]}, "plan", {"only": ["customers"]}),
    ({"full_refresh": True, "limit": 5}, "run", {"limit": 5, "full_refresh": True}),
    ({"profile": True}, "profile", {}),
    ({"profile_sample": 10}, "profile", {}),
    ({"scaffold": "mongo.people"}, "scaffold", {}),
    ({"scaffold_job": "postgres"}, "scaffold", {}),
])
def test_the_command_and_its_options(overrides, command, options):
    trail = AuditTrail.for_command(arguments(**overrides))
    try:
        assert (trail.record.command, trail.record.options) == (command, options)
    finally:
        trail.end(0)


def test_sigterm_outside_a_run_interrupts_the_command_and_the_record_is_still_written(tmp_path):
    job = tmp_path / "job.yaml"
    previous = signal.getsignal(signal.SIGTERM)
    trail = AuditTrail(str(job), "validate")
    with pytest.raises(KeyboardInterrupt) as caught:
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0)  # the handler runs on the next bytecode; this only gives it a chance
    trail.failed(caught.value)
    record = trail.end(3)
    assert signal.getsignal(signal.SIGTERM) is previous
    (line,) = (tmp_path / ".etl" / "audit.jsonl").read_text().splitlines()
    written = json.loads(line)
    assert written == json.loads(record.to_json())
    assert (written["command"], written["exit_code"], written["error"]) == (
        "validate", 3, "KeyboardInterrupt: SIGTERM received")
    assert written["job"] is None and written["job_file"] == str(job)


@pytest.mark.parametrize(("status", "message", "error"), [
    ("stopped", "stopped by SIGTERM", "stopped by SIGTERM"),
    ("failed", "partition p#1/2 failed: boom", "RuntimeFailure: partition p#1/2 failed: boom"),
    ("succeeded", None, None),
])
def test_a_run_that_ended_without_an_exception_still_names_what_ended_it(tmp_path, status, message, error):
    from etl.report.run_report import RunReport

    trail = AuditTrail(str(tmp_path / "job.yaml"), "run")
    trail.report(RunReport(job="j", mode="run", status=status, started_at="", finished_at="", seconds=0.0,
                           message=message))
    assert trail.end(3 if error else 0).error == error


def test_the_principal_is_asked_only_when_configured(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "http://sts.example.com")
    trail = AuditTrail(str(tmp_path / "job.yaml"), "run")
    trail.config = AuditConfig(aws_principal=True)
    assert trail.end(0).aws_principal == "unknown: STS endpoint sts.example.com is not HTTPS"
    quiet = AuditTrail(str(tmp_path / "job.yaml"), "run")
    assert quiet.end(0).aws_principal is None
    assert len((tmp_path / ".etl" / "audit.jsonl").read_text().splitlines()) == 2
