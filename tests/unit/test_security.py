"""The connection-encryption policy: one verdict for every engine, exact messages, refusal at job load."""

from __future__ import annotations

import logging
import textwrap

import pytest

from etl import security
from etl.job import JobFileProblems, load_job
from etl.security import Endpoint
from etl.sinks import dynamodb as dynamodb_sink
from etl.sinks import postgres as postgres_sink
from etl.sources import mongo, mssql, oracle
from etl.sources import postgres as postgres_source
from etl.state import dynamodb as dynamodb_state
from etl.state import postgres as postgres_state
from tests.jobfiles import write_job_file

PG_FIX = ("write `sslmode: verify-full` (with `sslrootcert:` naming the CA bundle) or sslmode=verify-full "
          "in the DSN")
ALLOW = "or set `allow_insecure: true` at the top of the job file to accept an insecure connection"
MONGO_FIX = ("write tls=true in the URI (or `tls: true`, with `tls_ca_file:` for a private CA) and keep "
             "certificate and host name checks on")
ORACLE_FIX = ("connect with TCPS: write dsn: tcps://host:2484/service (or (PROTOCOL=TCPS) in the "
              "descriptor) and keep ssl_server_dn_match: true")
MSSQL_FIX = ("use `driver: ODBC Driver 18 for SQL Server` with `encrypt: true` and "
             "`trust_server_certificate: false` (Encrypt=yes;TrustServerCertificate=no in a `dsn`)")


@pytest.fixture(autouse=True)
def _no_pg_environment(monkeypatch, tmp_path_factory):
    """No PG* or AWS endpoint settings from the machine: HOME and the AWS config file are empty folders."""
    for name in ("PGSSLMODE", "PGHOST", "PGHOSTADDR", "PGSERVICE", "PGSERVICEFILE", "PGSYSCONFDIR",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SECRETS_MANAGER",
                 "AWS_ENDPOINT_URL_STS", "AWS_PROFILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "aws-config"))


@pytest.mark.parametrize("host", [None, "", "/var/run/postgresql", "localhost", "127.0.0.1", "127.8.9.10",
                                  "::1", "[::1]", "LOCALHOST"])
def test_loopback_hosts_and_sockets(host):
    assert security.is_loopback(host)


@pytest.mark.parametrize("host", ["db.example.com", "10.0.0.5", "128.0.0.1", "::2", "localhost.example.com",
                                  "0.0.0.0"])
def test_other_hosts_are_not_loopback(host):
    assert not security.is_loopback(host)


def endpoint(host, encrypted, verified):
    return Endpoint("PostgreSQL", host, encrypted, verified, "fix it", "sslmode=x")


@pytest.mark.parametrize(("host", "encrypted", "verified", "allow", "expected"), [
    ("db.example.com", True, True, False, "proceed"),
    ("db.example.com", False, False, False, "refuse"),
    ("db.example.com", True, False, False, "refuse"),
    ("db.example.com", False, False, True, "warn"),
    ("db.example.com", True, False, True, "warn"),
    ("127.0.0.1", False, False, False, "proceed"),
    (None, False, False, False, "proceed"),
])
def test_the_verdict(host, encrypted, verified, allow, expected):
    assert security.verdict(endpoint(host, encrypted, verified), allow) == expected


def test_check_raises_or_returns_the_warning():
    weak = endpoint("db.example.com", False, False)
    with pytest.raises(security.InsecureConnection) as caught:
        security.check("target 'pg'", weak, allow_insecure=False)
    assert str(caught.value) == (
        f"target 'pg': PostgreSQL connection to db.example.com is not encrypted (sslmode=x); fix it, {ALLOW}")
    assert caught.value.exit_code == 2
    assert security.check("target 'pg'", weak, allow_insecure=True) == (
        "target 'pg': PostgreSQL connection to db.example.com is not encrypted (sslmode=x); allowed by "
        "`allow_insecure: true` (to secure it: fix it)")
    assert security.check("target 'pg'", endpoint("db.example.com", True, True), allow_insecure=False) is None


# --------------------------------------------------------------------------- PostgreSQL (libpq)


@pytest.mark.parametrize(("dsn", "sslmode", "expected"), [
    ("host=db.example.com dbname=x", None, ("verify-full", True, True)),
    ("postgresql://u@db.example.com/x", None, ("verify-full", True, True)),
    ("host=db.example.com sslmode=disable", None, ("disable", False, False)),
    ("host=db.example.com sslmode=prefer", None, ("prefer", False, False)),
    ("host=db.example.com sslmode=require", None, ("require", True, False)),
    ("host=db.example.com sslmode=verify-ca", None, ("verify-ca", True, False)),
    ("host=db.example.com sslmode=disable", "verify-full", ("verify-full", True, True)),
    ("host=127.0.0.1 dbname=x", None, ("prefer", False, False)),
])
def test_libpq_sslmode_and_endpoints(dsn, sslmode, expected):
    mode, encrypted, verified = expected
    (found,) = security.libpq_endpoints(dsn, sslmode)
    assert (found.setting, found.encrypted, found.verified) == (f"sslmode={mode}", encrypted, verified)


def test_libpq_defaults_to_verify_full_only_for_other_hosts_without_a_choice(monkeypatch):
    assert security.libpq_tls_defaults("host=db.example.com dbname=x") == {"sslmode": "verify-full"}
    assert security.libpq_tls_defaults("host=127.0.0.1 dbname=x") == {}
    assert security.libpq_tls_defaults("host=/tmp dbname=x") == {}
    assert security.libpq_tls_defaults("host=db.example.com sslmode=require") == {}
    assert security.libpq_tls_defaults("host=db.example.com", "require") == {}
    monkeypatch.setenv("PGSSLMODE", "disable")
    assert security.libpq_tls_defaults("host=db.example.com") == {}
    (found,) = security.libpq_endpoints("host=db.example.com")
    assert found.setting == "sslmode=disable from PGSSLMODE"


def test_every_host_of_a_multi_host_dsn_is_checked():
    found = security.libpq_endpoints("host=127.0.0.1,db.example.com sslmode=disable")
    assert [(e.host, security.verdict(e, False)) for e in found] == [
        ("127.0.0.1", "proceed"), ("db.example.com", "refuse")]


def test_the_three_postgres_modules_share_the_libpq_policy():
    dsn = "host=db.example.com user=app dbname=x sslmode=disable"
    source = postgres_source.Config(type="postgres", dsn=dsn, tables={})
    sink = postgres_sink.Config(type="postgres", dsn=dsn)
    state = postgres_state.Config(type="postgres", dsn=dsn)
    expected = [Endpoint("PostgreSQL", "db.example.com", False, False, PG_FIX, "sslmode=disable")]
    assert postgres_source.endpoints(source) == expected
    assert postgres_sink.endpoints(sink) == expected
    assert postgres_state.endpoints(state) == expected
    secured = postgres_sink.Config(type="postgres", dsn=dsn, sslmode="verify-full")
    assert security.verdict(postgres_sink.endpoints(secured)[0], False) == "proceed"


# --------------------------------------------------------------------------- MongoDB


def mongo_config(uri, **settings):
    return mongo.Config(type="mongo", uri=uri, database="d", tables={}, **settings)


@pytest.mark.parametrize(("uri", "settings", "expected"), [
    ("mongodb://db.example.com:27017/", {}, (True, True, "proceed")),  # TLS on by default
    ("mongodb+srv://cluster.example.com/", {}, (True, True, "proceed")),
    ("mongodb://db.example.com/?tls=false", {}, (False, False, "refuse")),
    ("mongodb://db.example.com/?ssl=false", {}, (False, False, "refuse")),
    ("mongodb://db.example.com/", {"tls": False}, (False, False, "refuse")),
    ("mongodb://db.example.com/?tls=true&tlsAllowInvalidCertificates=true", {}, (True, False, "refuse")),
    ("mongodb://db.example.com/?tls=true&tlsInsecure=true", {}, (True, False, "refuse")),
    ("mongodb://db.example.com/", {"tls_allow_invalid_hostnames": True}, (True, False, "refuse")),
    ("mongodb://127.0.0.1:27017/?directConnection=true", {}, (False, False, "proceed")),
    ("mongodb://%2Ftmp%2Fmongodb-27017.sock/?directConnection=true", {}, (False, False, "proceed")),
])
def test_mongo_endpoints(uri, settings, expected):
    (found,) = mongo.endpoints(mongo_config(uri, **settings))
    assert (found.encrypted, found.verified, security.verdict(found, False)) == expected


def test_mongo_refusal_message_and_every_host_of_a_replica_set():
    found = mongo.endpoints(mongo_config("mongodb://u:pw@a.example.com:27017,127.0.0.1:27018/?tls=false"))
    assert [e.host for e in found] == ["a.example.com", "127.0.0.1"]
    assert security.refusal("source 'mongo'", found[0]) == (
        "source 'mongo': MongoDB connection to a.example.com is not encrypted (tls=false); "
        f"{MONGO_FIX}, {ALLOW}")


DISCOVERY_FIX = f"write directConnection=true in the URI to use only that local server, or {MONGO_FIX}"


@pytest.mark.parametrize(("uri", "settings", "seeds", "verdicts"), [
    # a local seed (an SSH tunnel, a replica-set member) may name members on other hosts: refused
    ("mongodb://127.0.0.1:27017/", {}, "127.0.0.1", ["proceed", "refuse"]),
    ("mongodb://localhost/?replicaSet=rs0", {}, "localhost", ["proceed", "refuse"]),
    ("mongodb://127.0.0.1:27017,[::1]:27018/?replicaSet=rs0", {}, "127.0.0.1, [::1]",
     ["proceed", "proceed", "refuse"]),
    ("mongodb://%2Ftmp%2Fmongodb-27017.sock/", {}, "a Unix socket", ["proceed", "refuse"]),
    ("mongodb://127.0.0.1/?tls=false&directConnection=false", {}, "127.0.0.1", ["proceed", "refuse"]),
    # only the seed: nothing is discovered
    ("mongodb://127.0.0.1:27017/?directConnection=true", {}, None, ["proceed"]),
    ("mongodb://127.0.0.1:27017/?loadBalanced=true", {}, None, ["proceed"]),
    # TLS applies to every member pymongo discovers (the same options), and verification proceeds
    ("mongodb://127.0.0.1/?tls=true", {}, None, ["proceed"]),
    ("mongodb://127.0.0.1/", {"tls": True}, None, ["proceed"]),
])
def test_a_local_seed_without_direct_connection_counts_its_discovered_members(uri, settings, seeds, verdicts):
    found = mongo.endpoints(mongo_config(uri, **settings))
    assert [security.verdict(endpoint, False) for endpoint in found] == verdicts
    if seeds is not None:
        assert security.refusal("source 'mongo'", found[-1]) == (
            f"source 'mongo': MongoDB connection to replica-set members (discovered through the local seed "
            f"{seeds}) is not encrypted (tls=false, no directConnection=true); {DISCOVERY_FIX}, {ALLOW}")
        assert security.verdict(found[-1], True) == "warn"


def test_a_local_seed_without_direct_connection_is_refused_at_load(tmp_path, caplog):
    path = job_file(tmp_path, uri="mongodb://127.0.0.1:27017/")
    with pytest.raises(JobFileProblems) as caught:
        load_job(path, environ={}, secrets={})
    assert str(caught.value) == (
        f"{path}:5:5: sources.mongo: source 'mongo': MongoDB connection to replica-set members (discovered "
        f"through the local seed 127.0.0.1) is not encrypted (tls=false, no directConnection=true); "
        f"{DISCOVERY_FIX}, {ALLOW}")
    assert caught.value.exit_code == 2
    allowed = job_file(tmp_path, uri="mongodb://127.0.0.1:27017/", extra="allow_insecure: true\n")
    assert load_job(allowed, environ={}, secrets={}).warnings == (
        f"{path}:5:5: source 'mongo': MongoDB connection to replica-set members (discovered through the "
        f"local seed 127.0.0.1) is not encrypted (tls=false, no directConnection=true); allowed by "
        f"`allow_insecure: true` (to secure it: {DISCOVERY_FIX})",)


def test_mongo_client_gets_tls_when_the_uri_does_not_say():
    assert mongo._tls_by_default(mongo_config("mongodb://db.example.com/"))
    assert not mongo._tls_by_default(mongo_config("mongodb://db.example.com/?tls=false"))
    assert not mongo._tls_by_default(mongo_config("mongodb://127.0.0.1/"))


# --------------------------------------------------------------------------- Oracle


def oracle_config(dsn, **settings):
    return oracle.Config(type="oracle", dsn=dsn, user="u", password="p", tables={}, **settings)


@pytest.mark.parametrize(("dsn", "settings", "expected"), [
    ("db.example.com:1521/ORCLPDB1", {}, ("db.example.com", "refuse")),
    ("tcp://db.example.com:1521/ORCLPDB1", {}, ("db.example.com", "refuse")),
    ("tcps://db.example.com:2484/ORCLPDB1", {}, ("db.example.com", "proceed")),
    ("tcps://db.example.com:2484/ORCLPDB1", {"ssl_server_dn_match": False}, ("db.example.com", "refuse")),
    ("tcps://db.example.com:2484/X", {"ssl_server_dn_match": False, "ssl_server_cert_dn": "CN=db"},
     ("db.example.com", "proceed")),
    ("localhost:1521/FREEPDB1", {}, ("localhost", "proceed")),
    ("(DESCRIPTION=(ADDRESS=(PROTOCOL=TCPS)(HOST=db.example.com)(PORT=2484))"
     "(CONNECT_DATA=(SERVICE_NAME=X)))", {}, ("db.example.com", "proceed")),
    ("(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST=db.example.com)(PORT=1521))"
     "(CONNECT_DATA=(SERVICE_NAME=X)))", {}, ("db.example.com", "refuse")),
    ("PRODDB", {}, ("tnsnames alias PRODDB", "refuse")),
])
def test_oracle_endpoints(dsn, settings, expected):
    (found,) = oracle.endpoints(oracle_config(dsn, **settings))
    assert (found.host, security.verdict(found, False)) == expected


@pytest.mark.parametrize(("dsn", "expected"), [
    ("tcp://localhost:1521;tcp://db.invalid:1521/svc", [("localhost", "proceed"), ("db.invalid", "refuse")]),
    ("tcps://localhost:2484;db.invalid:1521/svc", [("localhost", "proceed"), ("db.invalid", "refuse")]),
    ("localhost:1521,db.invalid:1521/svc", [("localhost", "proceed"), ("db.invalid", "refuse")]),
    ("tcps://h1.example.com:2484,h2.example.com:2484/svc?wallet_location=/w",
     [("h1.example.com", "proceed"), ("h2.example.com", "proceed")]),
    ("tcps://[2001:db8::1]:2484/svc", [("[2001:db8::1]", "proceed")]),
])
def test_every_host_of_an_easy_connect_string_is_checked(dsn, expected):
    found = oracle.endpoints(oracle_config(dsn))
    assert [(e.host, security.verdict(e, False)) for e in found] == expected


def test_oracle_refusal_message():
    (found,) = oracle.endpoints(oracle_config("db.example.com:1521/ORCLPDB1"))
    assert security.refusal("source 'ora'", found) == (
        f"source 'ora': Oracle connection to db.example.com is not encrypted (TCP); {ORACLE_FIX}, {ALLOW}")


# --------------------------------------------------------------------------- SQL Server


def mssql_config(**settings):
    return mssql.Config(type="mssql", tables={}, **settings)


@pytest.mark.parametrize(("settings", "expected"), [
    ({"server": "sql.example.com"}, ("sql.example.com", "Encrypt=yes", "proceed")),
    ({"server": "sql.example.com", "encrypt": False}, ("sql.example.com", "Encrypt=no", "refuse")),
    ({"server": "sql.example.com", "trust_server_certificate": True},
     ("sql.example.com", "Encrypt=yes, TrustServerCertificate=yes", "refuse")),
    ({"server": "sql.example.com", "driver": "FreeTDS"},
     ("sql.example.com", "FreeTDS, Encryption=require", "refuse")),
    ({"server": "tcp:127.0.0.1,1433", "encrypt": False}, ("127.0.0.1", "Encrypt=no", "proceed")),
    ({"server": "(local)", "encrypt": False}, (None, "Encrypt=no", "proceed")),
    ({"dsn": "DRIVER={ODBC Driver 17 for SQL Server};SERVER=sql.example.com,1433;UID=a;PWD={x;y}"},
     ("sql.example.com", "Encrypt=no", "refuse")),
    ({"dsn": "DRIVER={ODBC Driver 18 for SQL Server};SERVER=tcp:sql.example.com\\INST;Encrypt=strict;"
             "TrustServerCertificate=yes"}, ("sql.example.com", "Encrypt=strict, TrustServerCertificate=yes",
                                             "proceed")),
])
def test_mssql_endpoints(settings, expected):
    (found,) = mssql.endpoints(mssql_config(**settings))
    assert (found.host, found.setting, security.verdict(found, False)) == expected


@pytest.mark.parametrize(("dsn", "shown"), [
    ("DRIVER={ODBC Driver 18 for SQL Server};Server=localhost;Address=db.invalid,1433;Encrypt=no",
     "db.invalid (Address) is not encrypted (Encrypt=no)"),
    ("DRIVER={ODBC Driver 18 for SQL Server};Server=127.0.0.1;Addr=tcp:db.invalid;TrustServerCertificate=yes",
     "db.invalid (Address) does not verify the server certificate (Encrypt=yes, TrustServerCertificate=yes)"),
    ("DSN=prod;UID=a", "the server of ODBC data source prod is not encrypted (Encrypt and "
     "TrustServerCertificate left to ODBC data source prod)"),
    ("DSN=prod;Server=127.0.0.1;Encrypt=no;TrustServerCertificate=no",
     "the server of ODBC data source prod is not encrypted (Encrypt=no)"),
])
def test_mssql_address_and_data_sources_are_checked(dsn, shown):
    (found,) = mssql.endpoints(mssql_config(dsn=dsn))
    assert security.refusal("source 'sql'", found) == (
        f"source 'sql': SQL Server connection to {shown}; {MSSQL_FIX}, {ALLOW}")


def test_mssql_data_source_with_its_security_in_the_string_and_a_local_address():
    (found,) = mssql.endpoints(mssql_config(dsn="DSN=prod;Encrypt=yes;TrustServerCertificate=no"))
    assert security.verdict(found, False) == "proceed"
    (local,) = mssql.endpoints(mssql_config(dsn="DSN=prod;Address=127.0.0.1;Encrypt=no"))
    assert (local.host, security.verdict(local, False)) == ("127.0.0.1", "proceed")


def test_mssql_refusal_message():
    (found,) = mssql.endpoints(mssql_config(server="sql.example.com", trust_server_certificate=True))
    assert security.refusal("source 'sql'", found) == (
        "source 'sql': SQL Server connection to sql.example.com does not verify the server certificate "
        f"(Encrypt=yes, TrustServerCertificate=yes); {MSSQL_FIX}, {ALLOW}")


# --------------------------------------------------------------------------- AWS endpoints


def test_aws_endpoints_over_https():
    assert security.https_endpoint(None, "DynamoDB") == Endpoint(
        "HTTPS", "the AWS DynamoDB endpoint", True, True, "")
    plain = security.https_endpoint("http://dynamo.internal:8000", "DynamoDB")
    assert security.refusal("state store", plain) == (
        "state store: HTTP connection to dynamo.internal is not encrypted (http://); use an https:// "
        f"endpoint URL for DynamoDB, {ALLOW}")
    local = security.https_endpoint("http://127.0.0.1:8001", "DynamoDB")
    assert security.verdict(local, False) == "proceed"
    state = dynamodb_state.Config(type="dynamodb", endpoint_url="http://dynamo.internal:8000")
    assert dynamodb_state.endpoints(state) == [plain]
    sink = dynamodb_sink.Config(type="dynamodb", endpoint_url="https://dynamodb.us-east-1.amazonaws.com")
    assert security.verdict(dynamodb_sink.endpoints(sink)[0], False) == "proceed"


def test_secrets_manager_endpoint_must_be_https(monkeypatch):
    from etl.interpolate import AwsSecretsManager, InterpolationError

    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://secrets.internal:4566")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(InterpolationError) as caught:
        AwsSecretsManager().get_secret("prod/pg")
    assert str(caught.value) == (
        "Secrets Manager: HTTP connection to secrets.internal (from AWS_ENDPOINT_URL_SECRETS_MANAGER) is not "
        f"encrypted (http://); use an https:// endpoint URL for Secrets Manager, {ALLOW}")


# --------------------------------------------------------------------------- at job load

JOB = """\
version: 1
name: secure
sources:
  mongo:
    type: mongo
    uri: "{uri}"
    database: d
    tables:
      customers: {{mapping: m.yaml}}
targets:
  pg: {{type: postgres, dsn: "{dsn}"}}
{extra}"""


def job_file(folder, *, uri="mongodb://127.0.0.1/?directConnection=true", dsn="host=127.0.0.1 dbname=x",
             extra=""):
    return write_job_file(folder, textwrap.dedent(JOB.format(uri=uri, dsn=dsn, extra=extra)),
                          mappings={"m.yaml": "{}\n"})


def test_a_plaintext_remote_connection_is_refused_at_load_naming_the_target_and_the_fix(tmp_path):
    path = job_file(tmp_path, dsn="host=db.example.com dbname=x sslmode=disable")
    with pytest.raises(JobFileProblems) as caught:
        load_job(path, environ={}, secrets={})
    assert str(caught.value) == (
        f"{path}:11:7: targets.pg: target 'pg': PostgreSQL connection to db.example.com is not encrypted "
        f"(sslmode=disable); {PG_FIX}, {ALLOW}")
    assert caught.value.exit_code == 2


def test_every_insecure_section_is_reported_at_once(tmp_path):
    path = job_file(tmp_path, uri="mongodb://m.example.com/?tls=false",
                    dsn="host=db.example.com sslmode=require",
                    extra="state: {type: postgres, dsn: 'host=st.example.com sslmode=prefer'}\n")
    with pytest.raises(JobFileProblems) as caught:
        load_job(path, environ={}, secrets={})
    assert [(p.line, p.path) for p in caught.value.problems] == [
        (5, "sources.mongo"), (11, "targets.pg"), (12, "state")]
    assert "does not verify the server certificate (sslmode=require)" in caught.value.problems[1].message


def test_allow_insecure_loads_and_warns_on_every_load(tmp_path, caplog):
    path = job_file(tmp_path, dsn="host=db.example.com dbname=x sslmode=disable",
                    extra="allow_insecure: true\n")
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="etl.job"):
            job = load_job(path, environ={}, secrets={})
        expected = (f"{path}:11:7: target 'pg': PostgreSQL connection to db.example.com is not encrypted "
                    f"(sslmode=disable); allowed by `allow_insecure: true` (to secure it: {PG_FIX})")
        assert job.allow_insecure is True
        assert job.warnings == (expected,)
        assert [r.getMessage() for r in caplog.records] == [expected]


def test_secure_and_local_connections_load_without_warnings(tmp_path):
    path = job_file(tmp_path, uri="mongodb://db.example.com/", dsn="host=db.example.com dbname=x")
    job = load_job(path, environ={}, secrets={})
    assert job.warnings == ()
    assert job.allow_insecure is False


def test_the_audit_table_connection_is_checked_too(tmp_path):
    path = job_file(tmp_path, extra="audit: {postgres: {dsn: 'host=audit.example.com sslmode=allow'}}\n")
    with pytest.raises(JobFileProblems) as caught:
        load_job(path, environ={}, secrets={})
    ((problem),) = caught.value.problems
    assert (problem.line, problem.path) == (12, "audit.postgres")
    assert problem.message.startswith(
        "audit table: PostgreSQL connection to audit.example.com is not encrypted")


# --------------------------------------------------------------------------- the endpoint the driver uses

SERVICE = "[other]\nhost=127.0.0.1\n\n[foo]\n# the reporting replica\nhost = db.invalid\nsslmode=disable\n"


def refused_at_load(path) -> str:
    with pytest.raises(JobFileProblems) as caught:
        load_job(path, environ={}, secrets={})
    assert caught.value.exit_code == 2
    return str(caught.value)


def warned_at_load(path, caplog) -> tuple[str, ...]:
    with caplog.at_level(logging.WARNING, logger="etl.job"):
        job = load_job(path, environ={}, secrets={})
    assert [r.getMessage() for r in caplog.records] == list(job.warnings)
    return job.warnings


@pytest.mark.parametrize("where", ["PGSERVICEFILE", "PGSYSCONFDIR", "HOME"])
def test_a_service_file_host_is_checked(tmp_path, monkeypatch, caplog, where):
    folder = tmp_path / "conf"
    folder.mkdir()
    if where == "PGSERVICEFILE":
        service_file = folder / "services.conf"
        monkeypatch.setenv("PGSERVICEFILE", str(service_file))
    elif where == "PGSYSCONFDIR":
        service_file = folder / "pg_service.conf"
        monkeypatch.setenv("PGSYSCONFDIR", str(folder))
    else:
        service_file = folder / ".pg_service.conf"
        monkeypatch.setenv("HOME", str(folder))
    service_file.write_text(SERVICE)
    path = job_file(tmp_path, dsn="service=foo dbname=x")
    weak = (f"target 'pg': PostgreSQL connection to db.invalid (from service 'foo' in {service_file}) is not "
            "encrypted (sslmode=disable)")
    assert refused_at_load(path) == f"{path}:11:7: targets.pg: {weak}; {PG_FIX}, {ALLOW}"
    path = job_file(tmp_path, dsn="service=foo dbname=x", extra="allow_insecure: true\n")
    assert warned_at_load(path, caplog) == (
        f"{path}:11:7: {weak}; allowed by `allow_insecure: true` (to secure it: {PG_FIX})",)


def test_the_service_can_come_from_pgservice_and_the_dsn_wins_over_it(tmp_path, monkeypatch):
    (tmp_path / "services.conf").write_text(SERVICE)
    monkeypatch.setenv("PGSERVICEFILE", str(tmp_path / "services.conf"))
    monkeypatch.setenv("PGSERVICE", "foo")
    (found,) = security.libpq_endpoints("dbname=x")
    assert security.refusal("target 'pg'", found) == (
        f"target 'pg': PostgreSQL connection to db.invalid (from service 'foo' in {tmp_path}/services.conf) "
        f"is not encrypted (sslmode=disable); {PG_FIX}, {ALLOW}")
    (local,) = security.libpq_endpoints("host=127.0.0.1 dbname=x")  # the DSN's host wins
    assert (local.host, local.setting, security.verdict(local, False)) == (
        "127.0.0.1", f"sslmode=disable from service 'foo' in {tmp_path / 'services.conf'}", "proceed")
    (chosen,) = security.libpq_endpoints("service=other sslmode=disable")  # the DSN's service wins
    assert (chosen.host, security.verdict(chosen, False)) == ("127.0.0.1", "proceed")


def test_the_user_service_file_is_read_before_the_system_one(tmp_path, monkeypatch):
    (tmp_path / "pg_service.conf").write_text("[foo]\nhost=127.0.0.1\n")
    (tmp_path / "user.conf").write_text("[foo]\nhost=db.invalid\nsslmode=prefer\n")
    monkeypatch.setenv("PGSYSCONFDIR", str(tmp_path))
    monkeypatch.setenv("PGSERVICEFILE", str(tmp_path / "user.conf"))
    (found,) = security.libpq_endpoints("service=foo")
    assert (found.host, found.setting, security.verdict(found, False)) == (
        "db.invalid", "sslmode=prefer", "refuse")
    monkeypatch.setenv("PGSERVICEFILE", str(tmp_path / "missing.conf"))
    (found,) = security.libpq_endpoints("service=foo")
    assert (found.host, security.verdict(found, False)) == ("127.0.0.1", "proceed")


def test_a_service_host_without_sslmode_gets_verify_full(tmp_path, monkeypatch):
    (tmp_path / "services.conf").write_text("[foo]\nhost=db.invalid\n")
    monkeypatch.setenv("PGSERVICEFILE", str(tmp_path / "services.conf"))
    assert security.libpq_tls_defaults("service=foo dbname=x") == {"sslmode": "verify-full"}
    (found,) = security.libpq_endpoints("service=foo dbname=x")
    assert (found.host, found.setting, security.verdict(found, False)) == (
        "db.invalid", "sslmode=verify-full", "proceed")


@pytest.mark.parametrize(("variables", "dsn", "shown"), [
    ({"PGHOST": "db.invalid", "PGSSLMODE": "disable"}, "dbname=x",
     "db.invalid (from PGHOST) is not encrypted (sslmode=disable from PGSSLMODE)"),
    ({"PGHOST": "db.invalid"}, "dbname=x sslmode=disable",
     "db.invalid (from PGHOST) is not encrypted (sslmode=disable)"),
    ({"PGHOSTADDR": "10.1.2.3"}, "host=localhost sslmode=require",
     "10.1.2.3 (hostaddr from PGHOSTADDR, host localhost) does not verify the server certificate "
     "(sslmode=require)"),
    ({}, "host=localhost hostaddr=10.1.2.3 sslmode=disable",
     "10.1.2.3 (hostaddr, host localhost) is not encrypted (sslmode=disable)"),
    ({}, "hostaddr=10.1.2.3 sslmode=disable", "10.1.2.3 (hostaddr) is not encrypted (sslmode=disable)"),
])
def test_pg_environment_and_hostaddr_are_checked(tmp_path, monkeypatch, caplog, variables, dsn, shown):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    path = job_file(tmp_path, dsn=dsn)
    assert refused_at_load(path) == (
        f"{path}:11:7: targets.pg: target 'pg': PostgreSQL connection to {shown}; {PG_FIX}, {ALLOW}")
    path = job_file(tmp_path, dsn=dsn, extra="allow_insecure: true\n")
    assert warned_at_load(path, caplog) == (
        f"{path}:11:7: target 'pg': PostgreSQL connection to {shown}; allowed by `allow_insecure: true` "
        f"(to secure it: {PG_FIX})",)


@pytest.mark.parametrize(("variables", "dsn"), [
    ({}, "host=db.invalid hostaddr=127.0.0.1 sslmode=disable"),  # the connection goes to hostaddr
    ({"PGHOSTADDR": "127.0.0.1", "PGSSLMODE": "disable"}, "dbname=x"),
    ({"PGHOST": "localhost", "PGSSLMODE": "disable"}, "dbname=x"),
    ({"PGHOST": "db.invalid"}, "host=127.0.0.1 sslmode=disable"),  # the DSN wins over the environment
])
def test_loopback_resolved_endpoints_still_load(tmp_path, monkeypatch, variables, dsn):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert load_job(job_file(tmp_path, dsn=dsn), environ={}, secrets={}).warnings == ()


AWS_CONFIG = """\
[default]
region = us-east-1

[profile direct]
endpoint_url = http://profile.invalid:8000

[profile viaservices]
services = mine

[services mine]
dynamodb =
  endpoint_url = http://services.invalid:8000
"""


@pytest.mark.parametrize(("variables", "shown"), [
    ({"AWS_ENDPOINT_URL_DYNAMODB": "http://db.invalid:8000"}, "db.invalid (from AWS_ENDPOINT_URL_DYNAMODB)"),
    ({"AWS_ENDPOINT_URL": "http://all.invalid:8000"}, "all.invalid (from AWS_ENDPOINT_URL)"),
    ({"AWS_PROFILE": "direct"}, "profile.invalid (from profile 'direct' in {config})"),
    ({"AWS_PROFILE": "viaservices"},
     "services.invalid (from [services mine] of profile 'viaservices' in {config})"),
])
def test_aws_configured_endpoints_are_checked(tmp_path, monkeypatch, caplog, variables, shown):
    config = tmp_path / "aws-config"
    config.write_text(AWS_CONFIG)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    shown = shown.format(config=config)
    weak = f"HTTP connection to {shown} is not encrypted (http://)"
    fix = "use an https:// endpoint URL for DynamoDB"
    (sink,) = dynamodb_sink.endpoints(dynamodb_sink.Config(type="dynamodb"))
    assert security.refusal("target 'ddb'", sink) == f"target 'ddb': {weak}; {fix}, {ALLOW}"
    path = job_file(tmp_path, extra="state: {type: dynamodb}\n")
    assert refused_at_load(path) == f"{path}:12:8: state: state store: {weak}; {fix}, {ALLOW}"
    path = job_file(tmp_path, extra="state: {type: dynamodb}\nallow_insecure: true\n")
    assert warned_at_load(path, caplog) == (
        f"{path}:12:8: state store: {weak}; allowed by `allow_insecure: true` (to secure it: {fix})",)
    # the job's own endpoint_url wins, and AWS_IGNORE_CONFIGURED_ENDPOINT_URLS turns the others off
    local = dynamodb_sink.Config(type="dynamodb", endpoint_url="http://127.0.0.1:8001")
    assert security.verdict(dynamodb_sink.endpoints(local)[0], False) == "proceed"
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    assert dynamodb_state.endpoints(dynamodb_state.Config(type="dynamodb")) == [
        Endpoint("HTTPS", "the AWS DynamoDB endpoint", True, True, "")]


def test_a_loopback_endpoint_from_the_environment_still_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8001")
    path = job_file(tmp_path, extra="state: {type: dynamodb}\n")
    assert load_job(path, environ={}, secrets={}).warnings == ()


def test_secrets_manager_endpoint_from_aws_endpoint_url(monkeypatch):
    from etl.interpolate import AwsSecretsManager, InterpolationError

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://all.invalid:4566")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(InterpolationError) as caught:
        AwsSecretsManager().get_secret("prod/pg")
    assert str(caught.value) == (
        "Secrets Manager: HTTP connection to all.invalid (from AWS_ENDPOINT_URL) is not encrypted (http://); "
        f"use an https:// endpoint URL for Secrets Manager, {ALLOW}")
