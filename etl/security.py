"""The connection-encryption policy every source, target, state store and audit table obeys.

Patient data crosses the network only encrypted, to a server whose certificate and host name
were checked. Each engine module describes the connections it will open as `Endpoint`s (host,
whether the traffic is encrypted, whether the server is verified, and what to write to fix it);
`verdict` alone decides what happens to them, so every engine follows the same rule:

- an encrypted and verified connection, or any connection to a loopback host or a Unix socket,
  proceeds;
- anything else is refused, unless the job says `allow_insecure: true` at its top level, and then
  every run logs a warning.

The libpq and HTTPS helpers live here because several modules share them (PostgreSQL source,
sink, state store and audit table; DynamoDB, Secrets Manager and STS endpoints).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from etl.errors import JobFileError

Verdict = Literal["proceed", "warn", "refuse"]

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
"""Host names that always mean this machine (besides 127.0.0.0/8 and ::1)."""


@dataclass(frozen=True)
class Endpoint:
    """One network connection a module will open, as the module's own settings describe it."""

    protocol: str
    """What speaks over it, for messages: `PostgreSQL`, `MongoDB`, `Oracle`, `SQL Server`, `HTTPS`."""
    host: str | None
    """Host name or address; None for a Unix socket or a local file (never on the network)."""
    encrypted: bool
    """Whether the traffic is encrypted (TLS) whatever the server offers."""
    verified: bool
    """Whether the server's certificate chain and host name are checked (no man in the middle)."""
    fix: str
    """What to write in the job file to make the connection encrypted and verified."""
    setting: str = ""
    """The setting that makes it weak, as written (`sslmode=disable`), shown in messages."""
    origin: str = ""
    """Where the host came from when not from the job's own words (`from PGHOST`), shown in messages."""


class InsecureConnection(JobFileError):
    """A job would send data unencrypted (or to an unverified server) to a host on the network."""


def is_loopback(host: str | None) -> bool:
    """Whether `host` is this machine: None/'' (Unix socket), a socket path, localhost, 127.0.0.0/8, ::1."""
    if not host or host.startswith("/") or host.startswith("@"):
        return True
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def verdict(endpoint: Endpoint, allow_insecure: bool) -> Verdict:
    """`proceed`, `warn` (weak, but the job allows it) or `refuse`."""
    if is_loopback(endpoint.host) or (endpoint.encrypted and endpoint.verified):
        return "proceed"
    return "warn" if allow_insecure else "refuse"


def weakness(endpoint: Endpoint) -> str:
    """What is wrong with a weak endpoint, in words."""
    setting = f" ({endpoint.setting})" if endpoint.setting else ""
    if not endpoint.encrypted:
        return f"is not encrypted{setting}"
    return f"does not verify the server certificate{setting}"


def _where(endpoint: Endpoint) -> str:
    return f"{endpoint.host} ({endpoint.origin})" if endpoint.origin else str(endpoint.host)


def refusal(owner: str, endpoint: Endpoint) -> str:
    """The message of a refused connection: who, to where, what is wrong and what to write."""
    return (
        f"{owner}: {endpoint.protocol} connection to {_where(endpoint)} {weakness(endpoint)}; "
        f"{endpoint.fix}, or set `allow_insecure: true` at the top of the job file to accept "
        "an insecure connection"
    )


def warning(owner: str, endpoint: Endpoint) -> str:
    """The warning every run logs for a weak connection the job allows."""
    return (
        f"{owner}: {endpoint.protocol} connection to {_where(endpoint)} {weakness(endpoint)}; "
        f"allowed by `allow_insecure: true` (to secure it: {endpoint.fix})"
    )


def check(owner: str, endpoint: Endpoint, allow_insecure: bool) -> str | None:
    """Apply the policy to one endpoint: None to proceed, a warning to log, or raise `InsecureConnection`."""
    decided = verdict(endpoint, allow_insecure)
    if decided == "refuse":
        raise InsecureConnection(refusal(owner, endpoint))
    return warning(owner, endpoint) if decided == "warn" else None


# --------------------------------------------------------------------------- libpq (PostgreSQL)

SECURE_SSLMODE = "verify-full"
"""What PostgreSQL connections to other hosts use unless the job says otherwise."""
_ENCRYPTED_SSLMODES = {"require", "verify-ca", "verify-full"}
_LIBPQ_ENVIRONMENT = {"host": "PGHOST", "hostaddr": "PGHOSTADDR", "sslmode": "PGSSLMODE"}
"""The PG* variables libpq reads for the settings that decide where a connection goes and how."""


@dataclass(frozen=True)
class LibpqSettings:
    """The settings libpq will use for a DSN, and where each came from (empty: the DSN itself)."""

    values: Mapping[str, str]
    origins: Mapping[str, str]


def _libpq_dsn(dsn: str) -> dict[str, str]:
    from psycopg.conninfo import conninfo_to_dict

    try:
        return {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    except Exception:  # psycopg.ProgrammingError for a malformed DSN: connecting reports it
        return {}


def _service_files(environ: Mapping[str, str]) -> list[str]:
    """Where libpq looks for a service, in order: the user's file, then the system one."""
    user = environ.get("PGSERVICEFILE")
    if user is None:
        home = environ.get("HOME") or os.path.expanduser("~")
        user = os.path.join(home, ".pg_service.conf")
    files = [user]
    if environ.get("PGSYSCONFDIR"):
        files.append(os.path.join(environ["PGSYSCONFDIR"], "pg_service.conf"))
    return files


def _service_entries(path: str, service: str) -> dict[str, str] | None:
    """The `key=value` lines of section `[service]` in a pg_service.conf file; None when it has none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    found: dict[str, str] | None = None
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            if found is not None:
                return found  # libpq stops at the next section
            if line.endswith("]") and line[1:-1] == service:
                found = {}
            continue
        if found is not None and "=" in line:
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), value.strip())  # libpq keeps the first of a key
    return found


def libpq_settings(dsn: str, environ: Mapping[str, str] | None = None) -> LibpqSettings:
    """The host, hostaddr and sslmode libpq will use, with libpq's precedence: the DSN, then the entries
    of its `service` (or PGSERVICE) in the user's service file (PGSERVICEFILE, else ~/.pg_service.conf)
    or else PGSYSCONFDIR/pg_service.conf, then the PG* environment variables."""
    environ = os.environ if environ is None else environ
    values = _libpq_dsn(dsn)
    origins = dict.fromkeys(values, "")
    service = values.get("service") or environ.get("PGSERVICE")
    if service:
        for path in _service_files(environ):
            entries = _service_entries(path, service)
            if entries is not None:
                for key, value in entries.items():
                    if key not in values:
                        values[key] = value
                        origins[key] = f"from service {service!r} in {path}"
                break
    for key, variable in _LIBPQ_ENVIRONMENT.items():
        if key not in values and environ.get(variable):
            values[key] = environ[variable]
            origins[key] = f"from {variable}"
    return LibpqSettings(values, origins)


def _libpq_targets(settings: LibpqSettings) -> list[tuple[str | None, str]]:
    """Where each TCP connection goes and why: `hostaddr` wins over `host` (which then only names the
    server for its certificate); one entry per host of a comma-separated list."""
    hosts = (settings.values.get("host") or "").split(",")
    addresses = (settings.values.get("hostaddr") or "").split(",")
    found: list[tuple[str | None, str]] = []
    for index in range(max(len(hosts), len(addresses))):
        host = hosts[index].strip() if index < len(hosts) else ""
        address = addresses[index].strip() if index < len(addresses) else ""
        if address:
            origin = settings.origins.get("hostaddr", "")
            said = f"hostaddr {origin}" if origin else "hostaddr"
            found.append((address, f"{said}, host {host}" if host else said))
        else:
            found.append((host or None, settings.origins.get("host", "")))
    return found


def libpq_sslmode(dsn: str, sslmode: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The sslmode a connection will use: the setting, the DSN's, its service's, PGSSLMODE, else
    verify-full off loopback.

    libpq's own default is `prefer`, which falls back to plaintext without a word; this default
    is the one `libpq_tls_defaults` hands to psycopg.
    """
    settings = libpq_settings(dsn, environ)
    explicit = sslmode or settings.values.get("sslmode")
    if explicit:
        return explicit
    if all(is_loopback(host) for host, _ in _libpq_targets(settings)):
        return "prefer"
    return SECURE_SSLMODE


def libpq_tls_defaults(dsn: str, sslmode: str | None = None) -> dict[str, Any]:
    """Keyword arguments for `psycopg.connect` that make the connection encrypted and verified by default.

    Empty when the `sslmode` setting, the DSN, its service or PGSSLMODE already chose, or every host
    (or hostaddr) is local.
    """
    if sslmode or libpq_settings(dsn).values.get("sslmode"):
        return {}
    return {"sslmode": SECURE_SSLMODE} if libpq_sslmode(dsn) == SECURE_SSLMODE else {}


def libpq_endpoints(dsn: str, sslmode: str | None = None,
                    environ: Mapping[str, str] | None = None) -> list[Endpoint]:
    """Every host of a libpq DSN or URI (libpq accepts a comma-separated list) and how it is secured,
    as libpq will resolve them (`libpq_settings`)."""
    settings = libpq_settings(dsn, environ)
    mode = libpq_sslmode(dsn, sslmode, environ)
    mode_origin = "" if sslmode else settings.origins.get("sslmode", "")
    targets = _libpq_targets(settings)
    if any(mode_origin == origin for _, origin in targets):
        mode_origin = ""  # said once, with the host
    return [
        Endpoint(
            protocol="PostgreSQL",
            host=host,
            encrypted=mode in _ENCRYPTED_SSLMODES,
            verified=mode == "verify-full",
            fix="write `sslmode: verify-full` (with `sslrootcert:` naming the CA bundle) or "
                "sslmode=verify-full in the DSN",
            setting=f"sslmode={mode} {mode_origin}" if mode_origin else f"sslmode={mode}",
            origin=origin,
        )
        for host, origin in targets
    ]


# --------------------------------------------------------------------------- HTTPS (AWS endpoints)


def https_endpoint(url: str | None, service: str) -> Endpoint:
    """An AWS service endpoint: None is AWS's own HTTPS endpoint; an `http://` URL is plaintext."""
    if url is None:
        return Endpoint("HTTPS", f"the AWS {service} endpoint", True, True, "")
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    return Endpoint(
        protocol="HTTPS" if secure else "HTTP",
        host=parts.hostname or url,
        encrypted=secure,
        verified=secure,  # botocore verifies certificates unless told not to
        fix=f"use an https:// endpoint URL for {service}",
        setting=f"{parts.scheme}://",
    )


_AWS_SERVICES = {"DynamoDB": "dynamodb", "Secrets Manager": "secretsmanager", "STS": "sts", "KMS": "kms"}
"""Service names in messages -> botocore's service names."""


def _aws_config_origin(session: object, service: str, url: str) -> str:
    """Which part of the AWS config file gave a client its endpoint URL: a `[services ...]` section or
    the profile's own `endpoint_url`; empty when neither holds `url`."""
    core: Any = getattr(session, "_session", session)  # a boto3 Session wraps a botocore one
    path = os.path.expanduser(core.get_config_variable("config_file") or "~/.aws/config")
    profile_name = core.profile or "default"
    config = core.full_config
    profile = config.get("profiles", {}).get(profile_name, {})
    section = profile.get("services")
    if section and config.get("services", {}).get(section, {}).get(service, {}).get("endpoint_url") == url:
        return f"from [services {section}] of profile {profile_name!r} in {path}"
    if profile.get("endpoint_url") == url:
        return f"from profile {profile_name!r} in {path}"
    return ""


def aws_client_endpoint(client: object, service: str, endpoint_url: str | None = None,
                        session: object = None) -> Endpoint:
    """The endpoint a botocore client will send its requests to (`client.meta.endpoint_url`: the job's
    `endpoint_url`, else AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL, the config file's `[services]`
    section or profile `endpoint_url`, else AWS's own), and where it came from."""
    url = client.meta.endpoint_url  # type: ignore[attr-defined]
    if endpoint_url is not None and url == endpoint_url:
        return https_endpoint(url, service)
    name = _AWS_SERVICES[service]
    specific = "AWS_ENDPOINT_URL_" + service.upper().replace(" ", "_")
    origin = ""
    if os.environ.get(specific) == url:
        origin = f"from {specific}"
    elif os.environ.get("AWS_ENDPOINT_URL") == url:
        origin = "from AWS_ENDPOINT_URL"
    elif session is not None:
        origin = _aws_config_origin(session, name, url)
    if not origin:
        if urlsplit(url).scheme == "https":
            return https_endpoint(None, service)  # AWS's own endpoint
        origin = "from the AWS configuration"
    return replace(https_endpoint(url, service), origin=origin)


def aws_endpoint(service: str, endpoint_url: str | None, region: str | None) -> Endpoint:
    """The endpoint a client made as etl makes it (a boto3 Session from the standard AWS configuration,
    the job's region and `endpoint_url`) will talk to. Making a client sends no request."""
    if endpoint_url is not None:
        # A client sends to a given endpoint_url exactly as written, and one that cannot be made
        # (unknown profile, malformed URL) is described by it too: no session, and no boto3 import
        # for a job load or --plan.
        return https_endpoint(endpoint_url, service)
    import botocore.exceptions

    from etl.aws_session import boto3_session

    try:
        session = boto3_session(region)
        client = session.client(_AWS_SERVICES[service], endpoint_url=endpoint_url,
                                region_name=session.region_name or "us-east-1")
    except (botocore.exceptions.BotoCoreError, ValueError):
        # an unknown profile or a malformed URL: the connection fails with the same error later
        return https_endpoint(endpoint_url, service)
    return aws_client_endpoint(client, service, endpoint_url, session)
