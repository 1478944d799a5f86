"""Redaction: DSN/URI passwords, registered secrets, the logging filter, JSON log lines."""

from __future__ import annotations

import io
import json
import logging
import re
import textwrap

import pytest

from etl.job import load_job
from etl.log import setup_logging
from etl.redact import MASK, RedactingFilter, passwords_in, redact, redact_exception, register_secret


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://u:pw1@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("mongodb://admin:p%40ss@h1,h2/?tls=true", "mongodb://admin:***@h1,h2/?tls=true"),
        ("mongodb+srv://admin:s3cr@t@cluster.x/db", "mongodb+srv://admin:***@cluster.x/db"),
        ("host=db user=app password=pw2 dbname=x", "host=db user=app password=*** dbname=x"),
        ("host=db password='a b c' dbname=x", "host=db password=*** dbname=x"),
        (
            "DRIVER={FreeTDS};SERVER=h;UID=sa;PWD={x;y}z};Encrypt=yes",
            "DRIVER={FreeTDS};SERVER=h;UID=sa;PWD=***z};Encrypt=yes",
        ),
        ("Server=h;Uid=sa;Pwd=abc123;", "Server=h;Uid=sa;Pwd=***;"),
        ("{'user': 'app', 'password': 'pw3'}", "{'user': 'app', 'password': '***'}"),
        ('{"token": "abc\\"def"}', "{\"token\": '***'}"),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI x", "AWS_SECRET_ACCESS_KEY=*** x"),
        ("{'db_password': 'pw4', 'db_host': 'h'}", "{'db_password': '***', 'db_host': 'h'}"),
        ("https://dynamodb.us-east-1.amazonaws.com/", "https://dynamodb.us-east-1.amazonaws.com/"),
        ("http://127.0.0.1:8001", "http://127.0.0.1:8001"),
    ],
)
def test_patterns(text, expected):
    assert redact(text) == expected


def test_passwords_in_finds_inline_passwords():
    assert passwords_in("postgresql://u:p%40ss@h/db password='q r' PWD={s;t}") == ["p@ss", "q r", "s;t"]
    assert passwords_in("host=db user=app") == []


def test_registered_secrets_are_masked_in_every_form():
    register_secret("Sq-9!reg/secret")
    assert redact("plain Sq-9!reg/secret") == f"plain {MASK}"
    assert redact("url Sq-9%21reg%2Fsecret") == f"url {MASK}"
    assert redact('json "Sq-9!reg/secret"') == f'json "{MASK}"'
    register_secret("ab")  # too short to mask usefully
    assert redact("ab cab") == "ab cab"


def test_filter_redacts_message_args_extra_and_exception():
    register_secret("FilterPw-8812")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.redact.filter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ConnectionError("cannot connect to postgresql://app:FilterPw-8812@db.invalid/x")
        except ConnectionError:
            logger.exception("dsn %s failed (%s)", "host=db password=FilterPw-8812", {"token": "tk-991133"})
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "FilterPw-8812" not in output and "tk-991133" not in output
    assert "dsn host=db password=*** failed ({'token': '***'})" in output
    assert "ConnectionError: cannot connect to postgresql://app:***@db.invalid/x" in output


def test_json_log_lines_carry_extra_fields_and_are_redacted():
    register_secret("JsonLogPw-4410")
    stream = io.StringIO()
    handler = setup_logging(debug=True, stream=stream)
    try:
        logging.getLogger("etl.test").debug(
            "loaded %d rows", 59, extra={"table": "customers", "dsn": "x JsonLogPw-4410"}
        )
        logging.getLogger("botocore.test").debug("wire bytes")  # libraries stay quiet at debug
    finally:
        logging.getLogger().removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert set(entry) == {"time", "level", "logger", "message", "table", "dsn"}
    assert (entry["level"], entry["logger"], entry["message"]) == ("debug", "etl.test", "loaded 59 rows")
    assert (entry["table"], entry["dsn"]) == ("customers", "x ***")


def test_setup_logging_replaces_its_own_handler():
    first = setup_logging(debug=False, stream=io.StringIO())
    second = setup_logging(debug=False, stream=io.StringIO())
    try:
        root = logging.getLogger()
        assert first not in root.handlers and second in root.handlers
        assert root.level == logging.INFO
    finally:
        logging.getLogger().removeHandler(second)


def test_a_job_with_a_password_in_its_dsn_never_shows_the_password(tmp_path, capsys):
    """Load a job whose DSN holds a password, log at debug, format an exception quoting the DSN."""
    password = "Pg-Real-Pw-6631"
    (tmp_path / "m.yaml").write_text("{}\n")
    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        textwrap.dedent(f"""\
        version: 1
        name: leak-test
        sources:
          mongo: {{type: mongo, uri: "${{env:MONGO}}", database: d, tables: {{c: {{mapping: m.yaml}}}}}}
        targets:
          pg: {{type: postgres, dsn: "postgresql://app:{password}@wrong-host.invalid:5432/x"}}
        """)
    )
    stream = io.StringIO()
    handler = setup_logging(debug=True, stream=stream)
    try:
        job = load_job(job_file, environ={"MONGO": "mongodb://reader:Mongo-Env-Pw-71@h/"}, secrets={})
        log = logging.getLogger("etl.test.leak")
        log.debug("job %s targets %s", job.name, job.targets["pg"])
        log.debug("sources %r", job.sources)
        try:
            raise RuntimeError(f"could not connect: {job.targets['pg'].dsn}")
        except RuntimeError as error:
            log.exception("run failed")
            formatted = redact_exception(error)
    finally:
        logging.getLogger().removeHandler(handler)
    output = stream.getvalue() + formatted + "".join(job.warnings) + capsys.readouterr().err
    assert password not in output and "Mongo-Env-Pw-71" not in output
    assert "postgresql://app:***@wrong-host.invalid:5432/x" in output
    assert output.count("\n") >= 4
    assert "targets.pg.dsn: a connection string with an inline password is written in the job file" in output


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_output_is_rich_and_redacted():
    register_secret("TtyLogPw-2231")
    stream = FakeTerminal()
    handler = setup_logging(debug=False, stream=stream)
    try:
        try:
            raise ValueError("bad dsn host=h password=TtyLogPw-2231")
        except ValueError:
            logging.getLogger("etl.test.tty").exception("failed with TtyLogPw-2231")
    finally:
        logging.getLogger().removeHandler(handler)
    output = re.sub(r"\x1b\[[0-9;]*m", "", stream.getvalue())
    assert type(handler).__name__ == "RichHandler"
    assert "TtyLogPw-2231" not in output
    assert "failed with ***" in output and "password=***" in output
    assert not output.lstrip().startswith("{")


def test_records_are_redacted_for_handlers_etl_did_not_install():
    register_secret("ForeignHandlerPw-7")
    stream = io.StringIO()
    foreign = logging.StreamHandler(stream)  # e.g. a notebook's own handler: no etl filter on it
    logger = logging.getLogger("tests.redact.foreign")
    logger.addHandler(foreign)
    logger.propagate = False
    try:
        logger.warning("connecting with %s", "ForeignHandlerPw-7")
    finally:
        logger.removeHandler(foreign)
    assert stream.getvalue() == "connecting with ***\n"
