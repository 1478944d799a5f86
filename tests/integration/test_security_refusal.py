"""A job that would talk plaintext to a host on the network is refused before any connection is made.

A listener on this machine's network address stands in for the remote servers: after the command,
it must have accepted no connection at all.
"""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from tests.integration.run_helpers import ROOT, command, environment

pytestmark = pytest.mark.integration


def network_address() -> str:
    """This machine's address on its default route (no packet is sent by a UDP connect)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1, RFC 5737
            address = probe.getsockname()[0]
        except OSError:
            pytest.skip("this machine has no network address besides loopback")
    if address.startswith("127."):
        pytest.skip("this machine has no network address besides loopback")
    return address


@pytest.fixture
def listener():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("0.0.0.0", 0))  # noqa: S104 - must be reachable on the network address
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


def accepted(server: socket.socket) -> int:
    count = 0
    while True:
        try:
            connection, _ = server.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


@pytest.mark.parametrize("mode", [(), ("--validate-only",), ("--plan",)])
def test_plaintext_to_a_network_host_is_refused_before_connecting(tmp_path, listener, mode):
    host, port = network_address(), listener.getsockname()[1]
    (tmp_path / "m.yaml").write_text("{}\n")
    job = tmp_path / "job.yaml"
    job.write_text(f"""\
version: 1
name: refused
sources:
  mongo:
    type: mongo
    uri: "mongodb://{host}:{port}/?tls=false&directConnection=true"
    database: d
    tables: {{c: {{mapping: m.yaml}}}}
targets:
  pg: {{type: postgres, dsn: "host={host} port={port} user=etl dbname=d sslmode=disable"}}
""")
    result = subprocess.run(command(job, *mode), capture_output=True, text=True, timeout=120,
                            env=environment(), cwd=ROOT)
    assert result.returncode == 2, result.stdout + result.stderr
    allow = "or set `allow_insecure: true` at the top of the job file to accept an insecure connection"
    assert result.stderr == (
        f"error: {job} has 2 problems:\n"
        f"{job}:5:5: sources.mongo: source 'mongo': MongoDB connection to {host} is not encrypted "
        "(tls=false); write tls=true in the URI (or `tls: true`, with `tls_ca_file:` for a private CA) and "
        f"keep certificate and host name checks on, {allow}\n"
        f"{job}:10:7: targets.pg: target 'pg': PostgreSQL connection to {host} is not encrypted "
        "(sslmode=disable); write `sslmode: verify-full` (with `sslrootcert:` naming the CA bundle) or "
        f"sslmode=verify-full in the DSN, {allow}\n")
    assert accepted(listener) == 0
    (record,) = [json.loads(line) for line in (tmp_path / ".etl" / "audit.jsonl").read_text().splitlines()]
    assert record["exit_code"] == 2 and record["error"].startswith("JobFileProblems: ")


MAPPING = """\
version: 1
source: {key: [_id]}
targets: {pg: postgres, ddb: dynamodb}
outputs:
  - {target: pg, table: people, key: [id], columns: {id: {from: _id, type: int, required: true}}}
  - {target: ddb, table: people, key: [id], columns: {id: {from: _id, type: int, required: true}}}
"""


@pytest.mark.parametrize("mode", [(), ("--validate-only",)])
def test_endpoints_from_the_environment_are_refused_before_connecting(tmp_path, listener, mode):
    """The job names no remote host: a service file and AWS_ENDPOINT_URL_DYNAMODB do."""
    host, port = network_address(), listener.getsockname()[1]
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[warehouse]\nhost={host}\nport={port}\nsslmode=disable\n")
    (tmp_path / "m.yaml").write_text(MAPPING)
    job = tmp_path / "job.yaml"
    job.write_text("""\
version: 1
name: refused
sources:
  mongo:
    type: mongo
    uri: "mongodb://127.0.0.1:27017/?directConnection=true"
    database: d
    tables: {c: {mapping: m.yaml}}
targets:
  pg: {type: postgres, dsn: "service=warehouse user=etl dbname=d"}
  ddb: {type: dynamodb}
""")
    env = environment() | {"PGSERVICEFILE": str(services),
                           "AWS_ENDPOINT_URL_DYNAMODB": f"http://{host}:{port}"}
    for name in ("AWS_ENDPOINT_URL", "PGHOST", "PGHOSTADDR", "PGSSLMODE", "PGSERVICE"):
        env.pop(name, None)
    result = subprocess.run(command(job, *mode), capture_output=True, text=True, timeout=120, env=env,
                            cwd=ROOT)
    assert result.returncode == 2, result.stdout + result.stderr
    allow = "or set `allow_insecure: true` at the top of the job file to accept an insecure connection"
    assert result.stderr == (
        f"error: {job} has 2 problems:\n"
        f"{job}:10:7: targets.pg: target 'pg': PostgreSQL connection to {host} (from service 'warehouse' in "
        f"{services}) is not encrypted (sslmode=disable); write `sslmode: verify-full` (with `sslrootcert:` "
        f"naming the CA bundle) or sslmode=verify-full in the DSN, {allow}\n"
        f"{job}:11:8: targets.ddb: target 'ddb': HTTP connection to {host} (from AWS_ENDPOINT_URL_DYNAMODB) "
        f"is not encrypted (http://); use an https:// endpoint URL for DynamoDB, {allow}\n")
    assert accepted(listener) == 0
