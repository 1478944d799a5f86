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
from dataclasses import dataclass
from typing import Literal
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


def refusal(owner: str, endpoint: Endpoint) -> str:
    """The message of a refused connection: who, to where, what is wrong and what to write."""
    return (
        f"{owner}: {endpoint.protocol} connection to {endpoint.host} {weakness(endpoint)}; "
        f"{endpoint.fix}, or set `allow_insecure: true` at the top of the job file to accept "
        "an insecure connection"
    )


def warning(owner: str, endpoint: Endpoint) -> str:
    """The warning every run logs for a weak connection the job allows."""
    return (
        f"{owner}: {endpoint.protocol} connection to {endpoint.host} {weakness(endpoint)}; "
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


def _libpq_settings(dsn: str) -> dict[str, str]:
    from psycopg.conninfo import conninfo_to_dict

    try:
        return {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    except Exception:  # psycopg.ProgrammingError for a malformed DSN: connecting reports it
        return {}


def _libpq_hosts(settings: Mapping[str, str], environ: Mapping[str, str]) -> list[str | None]:
    hosts = settings.get("host") or settings.get("hostaddr") or environ.get("PGHOST") or ""
    return [host or None for host in hosts.split(",")] or [None]


def libpq_sslmode(dsn: str, sslmode: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The sslmode a connection will use: the setting, the DSN's, PGSSLMODE, else verify-full off loopback.

    libpq's own default is `prefer`, which falls back to plaintext without a word; this default
    is the one `libpq_tls_defaults` hands to psycopg.
    """
    environ = os.environ if environ is None else environ
    settings = _libpq_settings(dsn)
    explicit = sslmode or settings.get("sslmode") or environ.get("PGSSLMODE")
    if explicit:
        return explicit
    if all(is_loopback(host) for host in _libpq_hosts(settings, environ)):
        return "prefer"
    return SECURE_SSLMODE


def libpq_tls_defaults(dsn: str, sslmode: str | None = None) -> dict[str, str]:
    """Keyword arguments for `psycopg.connect` that make the connection encrypted and verified by default.

    Empty when the `sslmode` setting, the DSN or PGSSLMODE already chose, or every host is local.
    """
    if sslmode or _libpq_settings(dsn).get("sslmode") or os.environ.get("PGSSLMODE"):
        return {}
    return {"sslmode": SECURE_SSLMODE} if libpq_sslmode(dsn) == SECURE_SSLMODE else {}


def libpq_endpoints(dsn: str, sslmode: str | None = None,
                    environ: Mapping[str, str] | None = None) -> list[Endpoint]:
    """Every host of a libpq DSN or URI (libpq accepts a comma-separated list) and how it is secured."""
    environ = os.environ if environ is None else environ
    settings = _libpq_settings(dsn)
    mode = libpq_sslmode(dsn, sslmode, environ)
    return [
        Endpoint(
            protocol="PostgreSQL",
            host=host,
            encrypted=mode in _ENCRYPTED_SSLMODES,
            verified=mode == "verify-full",
            fix="write `sslmode: verify-full` (with `sslrootcert:` naming the CA bundle) or "
                "sslmode=verify-full in the DSN",
            setting=f"sslmode={mode}",
        )
        for host in _libpq_hosts(settings, environ)
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
