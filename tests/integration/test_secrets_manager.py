"""`${secret:..}` through real boto3 calls to a loopback server speaking the Secrets Manager JSON protocol.

There is no local Secrets Manager, so the test runs a small HTTP server that answers
`secretsmanager.GetSecretValue` the way the service does (awsJson1.1: `X-Amz-Target` header, JSON
body, `__type` error codes; https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html).
boto3 finds it through the standard AWS_ENDPOINT_URL_SECRETS_MANAGER variable, as a job would.
"""

from __future__ import annotations

import io
import json
import logging
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from etl.errors import JobFileError
from etl.job import load_job
from etl.log import setup_logging
from tests.jobfiles import write_job_file

pytestmark = pytest.mark.integration

SECRETS = {
    "prod/pg": json.dumps({"username": "loader", "password": "Sm-Pg-Pw-90210", "host": "db.internal"}),
    "prod/hmac": "Sm-Hmac-Key-7781",
}


class SecretsManagerHandler(BaseHTTPRequestHandler):
    requests: list[tuple[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server hook name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        target = self.headers.get("X-Amz-Target", "")
        self.requests.append((target, body.get("SecretId")))
        if target != "secretsmanager.GetSecretValue":
            self._reply(400, {"__type": "UnknownOperationException"})
        elif body["SecretId"] not in SECRETS:
            self._reply(
                400,
                {
                    "__type": "ResourceNotFoundException",
                    "message": "Secrets Manager can't find the specified secret.",
                },
            )
        else:
            name = body["SecretId"]
            self._reply(
                200,
                {
                    "ARN": f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf",
                    "Name": name,
                    "VersionId": "00000000-0000-0000-0000-000000000001",
                    "SecretString": SECRETS[name],
                    "VersionStages": ["AWSCURRENT"],
                    "CreatedDate": 1767225600.0,
                },
            )

    def _reply(self, status: int, document: dict) -> None:
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        """Quiet: the test asserts on `requests`."""


@pytest.fixture
def secrets_manager(monkeypatch):
    SecretsManagerHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), SecretsManagerHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield SecretsManagerHandler.requests
    server.shutdown()
    server.server_close()


LOCAL_MONGO = "mongodb://127.0.0.1/?directConnection=true"


def job_text(dsn: str) -> str:
    return textwrap.dedent(f"""\
        version: 1
        name: secrets-demo
        sources:
          mongo: {{type: mongo, uri: "{LOCAL_MONGO}", database: d, tables: {{c: {{mapping: m.yaml}}}}}}
        targets:
          pg: {{type: postgres, dsn: "{dsn}"}}
          pg2: {{type: postgres, dsn: "user=${{secret:prod/pg#username}} host=${{secret:prod/pg#host}}"}}
        """)


def write_job(tmp_path, dsn: str):
    return write_job_file(tmp_path, job_text(dsn), mappings={"m.yaml": "{}\n"})


def test_secrets_resolve_through_boto3_once_per_name(secrets_manager, tmp_path):
    dsn = "postgresql://${secret:prod/pg#username}:${secret:prod/pg#password}@${secret:prod/pg#host}/x"
    stream = io.StringIO()
    handler = setup_logging(debug=True, stream=stream)
    try:
        job = load_job(write_job(tmp_path, dsn), environ={})
        hmac_key = job.interpolate("${secret:prod/hmac}")
        logging.getLogger("etl.test.secrets").debug("dsn is %s, key is %s", job.targets["pg"].dsn, hmac_key)
    finally:
        logging.getLogger().removeHandler(handler)
    assert job.targets["pg"].dsn == "postgresql://loader:Sm-Pg-Pw-90210@db.internal/x"
    assert job.targets["pg2"].dsn == "user=loader host=db.internal"
    assert hmac_key == "Sm-Hmac-Key-7781"
    assert secrets_manager == [
        ("secretsmanager.GetSecretValue", "prod/pg"),
        ("secretsmanager.GetSecretValue", "prod/hmac"),
    ]
    logged = stream.getvalue()
    assert "Sm-Pg-Pw-90210" not in logged and "Sm-Hmac-Key-7781" not in logged
    assert '"message": "dsn is postgresql://***:***@***/x, key is ***"' in logged


def test_a_missing_secret_is_a_job_file_error_naming_it(secrets_manager, tmp_path):
    path = write_job(tmp_path, "${secret:prod/absent#password}")
    with pytest.raises(JobFileError) as caught:
        load_job(path, environ={})
    assert str(caught.value) == (
        f"{path}:6:29: targets.pg.dsn: secret 'prod/absent' does not exist in AWS Secrets Manager"
    )
    assert ("secretsmanager.GetSecretValue", "prod/absent") in secrets_manager


def test_an_unreachable_endpoint_is_a_job_file_error(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    path = write_job(tmp_path, "${secret:prod/pg#password}")
    with pytest.raises(JobFileError) as caught:
        load_job(path, environ={})
    reason = (
        "secret 'prod/pg' could not be read from AWS Secrets Manager: EndpointConnectionError; "
        "check AWS credentials, region (AWS_REGION) and endpoint"
    )
    assert str(caught.value) == (
        f"{path} has 2 problems:\n"
        f"{path}:6:29: targets.pg.dsn: {reason}\n"
        f"{path}:7:30: targets.pg2.dsn: {reason}"
    )
