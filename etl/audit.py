"""The audit trail: one record per command run, appended even when the run fails.

Regulated migrations must show who moved which data when, with which job and mapping files,
and what came of it. A record names sources and targets by type, host, port and database only
— never a password, token, DSN option or data value — and every string in it passes through
`etl.redact` before it is written. Records go to a JSON-lines file (default `.etl/audit.jsonl`
beside the job file) and, when the job asks, to a PostgreSQL table as well.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import re
import signal
import socket
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from etl import security
from etl.files import open_descriptor
from etl.redact import RedactedRepr, redact

log = logging.getLogger(__name__)

DEFAULT_PATH = ".etl/audit.jsonl"
STS_TIMEOUT_SECONDS = 3
"""Connect and read timeout of the one STS call that names the AWS principal."""
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$"
"""A plain PostgreSQL identifier (at most 63 characters, NAMEDATALEN - 1)."""


class AuditTable(RedactedRepr, BaseModel):
    """`audit.postgres`: a PostgreSQL table that receives every record as well (created if missing)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    dsn: str
    """libpq connection string or URI; take the password from ${env:..} or ${secret:..}."""
    schema_: str = Field(default="public", alias="schema", pattern=IDENTIFIER)
    table: str = Field(default="etl_audit", pattern=IDENTIFIER)
    sslmode: str | None = None
    """libpq sslmode; default verify-full for any host but this machine."""


class AuditConfig(RedactedRepr, BaseModel):
    """The `audit` section of a job file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = DEFAULT_PATH
    """JSON-lines file, relative to the job file's folder."""
    aws_principal: bool = False
    """Name the AWS principal (STS GetCallerIdentity, one call with a short timeout) in each record."""
    postgres: AuditTable | None = None

    def endpoints(self) -> list[security.Endpoint]:
        """The connections writing the audit trail opens (for the encryption policy)."""
        if self.postgres is None:
            return []
        return security.libpq_endpoints(self.postgres.dsn, self.postgres.sslmode)


@dataclass
class AuditRecord:
    """One command run. `exit_code` is what `python -m etl.run` exited with."""

    command: str
    """run, validate, plan."""
    job_file: str
    started_at: str
    finished_at: str = ""
    exit_code: int | None = None
    os_user: str = ""
    host: str = ""
    job: str | None = None
    """The job's name; None when the job file could not be loaded."""
    job_sha256: str | None = None
    aws_principal: str | None = None
    """The caller's ARN when `audit.aws_principal` is on (or why it is unknown)."""
    mapping_sha256: dict[str, str] = field(default_factory=dict)
    """Mapping file as written in the job -> SHA-256 of its bytes."""
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """`source.table` -> extracted, loaded, rejected, filtered."""
    validation: str | None = None
    """passed, differences, or None when nothing was validated."""
    error: str | None = None
    """The error that ended the command (its kind and redacted message)."""
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return redact(json.dumps(asdict(self), sort_keys=True, default=str))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


# --------------------------------------------------------------------------- describing endpoints

_EASY_CONNECT = re.compile(r"(?:tcps?://)?([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\])(?::(\d+))?/([\w.\-$]+)")


def describe_endpoint(config: Any) -> dict[str, Any]:
    """Type and location of a source or target (type, host, port, database), never a credential."""
    settings = config.model_dump(by_alias=True) if isinstance(config, BaseModel) else dict(config)
    described: dict[str, Any] = {"type": settings.get("type")}
    for key in ("server", "port", "database", "endpoint_url", "region", "schema", "path"):
        value = settings.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            described["host" if key == "server" else key] = value
    if "endpoint_url" in described:
        parts = urlsplit(str(described.pop("endpoint_url")))
        described |= {"host": parts.hostname, "port": parts.port, "scheme": parts.scheme}
    for key in ("uri", "dsn"):
        value = settings.get(key)
        if isinstance(value, str) and value:
            for name, part in _location_of(value).items():
                described.setdefault(name, part)  # `database:` beats a URI's authentication database
    return {k: redact(v) if isinstance(v, str) else v for k, v in described.items() if v is not None}


def _location_of(connection: str) -> dict[str, Any]:
    """Host, port and database from a URI, a libpq keyword DSN or an Oracle Easy Connect string."""
    if "://" in connection and not connection.startswith(("tcp://", "tcps://")):
        parts = urlsplit(connection)
        hosts = parts.netloc.rpartition("@")[2]
        location: dict[str, Any] = {"host": hosts}
        database = parts.path.lstrip("/")
        if database:
            location["database"] = database
        return location
    easy = _EASY_CONNECT.fullmatch(connection.strip())
    if easy:
        host, port, service = easy.groups()
        return {"host": host, "port": int(port) if port else None, "database": service}
    location = {}
    for token in connection.split():
        key, _, value = token.partition("=")
        if key in ("host", "hostaddr", "port"):
            location[key] = value
        elif key == "dbname":
            location["database"] = value
    return location


def _mapping_hashes(job: Any) -> dict[str, str]:
    hashes: dict[str, str] = {}
    for config in job.sources.values():
        for table in (getattr(config, "tables", None) or {}).values():
            mapping = getattr(table, "mapping", None)
            if isinstance(mapping, str) and mapping not in hashes:
                try:
                    hashes[mapping] = file_sha256(job.resolve_path(mapping))
                except OSError as error:
                    hashes[mapping] = f"unreadable: {error.strerror}"
    return hashes


def aws_principal() -> str:
    """The caller's ARN from STS GetCallerIdentity (no permission needed), or why it is unknown."""
    try:
        import boto3
        import botocore.config

        client = boto3.session.Session().client("sts", config=botocore.config.Config(
            connect_timeout=STS_TIMEOUT_SECONDS, read_timeout=STS_TIMEOUT_SECONDS,
            retries={"total_max_attempts": 1}))
        endpoint = security.https_endpoint(client.meta.endpoint_url, "STS")
        if security.verdict(endpoint, allow_insecure=False) != "proceed":
            return f"unknown: STS endpoint {endpoint.host} is not HTTPS"
        return str(client.get_caller_identity()["Arn"])
    except Exception as error:  # no credentials, no network: the record is still written
        return f"unknown: {type(error).__name__}"


# --------------------------------------------------------------------------- the trail of one command


class AuditTrail:
    """Collects one command's record as it runs and appends it when the command ends (`end`).

    Between `begin` and `end`, SIGTERM outside a run's own handler (loading, planning,
    validating) ends the command through KeyboardInterrupt, so the record is still written.
    """

    def __init__(self, job_file: str, command: str, options: Mapping[str, Any] | None = None) -> None:
        self.job_file = Path(job_file).absolute()
        self.record = AuditRecord(command=command, job_file=str(self.job_file), started_at=_now(),
                                  os_user=os_user(), host=socket.gethostname(), options=dict(options or {}))
        self.config = AuditConfig()
        self._previous_handler: Any = None
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGTERM, _interrupt)

    @classmethod
    def for_command(cls, args: Any) -> AuditTrail:
        """The trail of one `python -m etl.run` invocation (its parsed arguments)."""
        command = ("plan" if args.plan else "check" if getattr(args, "check", False)
                   else "profile" if getattr(args, "profile", False) or getattr(args, "profile_sample", None)
                   else "scaffold" if getattr(args, "scaffold", None) or getattr(args, "scaffold_job", None)
                   else "validate" if args.validate_only else "run")
        options = {name: getattr(args, name) for name in ("only", "limit", "shard", "resume", "full_refresh")
                   if getattr(args, name, None)}
        return cls(args.job, command, options)

    def job_loaded(self, job: Any) -> None:
        """Take the job's identity, file hashes and endpoints (before anything can fail at run time)."""
        self.config = job.audit
        record = self.record
        record.job, record.job_sha256 = job.name, job.file_hash()
        record.mapping_sha256 = _mapping_hashes(job)
        record.sources = {name: describe_endpoint(c) for name, c in job.sources.items()}
        record.targets = {name: describe_endpoint(c) for name, c in job.targets.items()}

    def report(self, report: Any) -> None:
        """Counts per table and the validation result of a run or validation report."""
        self.record.counts = {t.table: {"extracted": t.extracted, "loaded": t.loaded,
                                        "rejected": t.rejected, "filtered": t.filtered}
                              for t in report.tables}
        if report.validation is not None:
            self.record.validation = "passed" if all(c.ok for c in report.validation) else "differences"
        error = report.error()
        if error is not None and self.record.error is None:
            # a run stopped by a signal ends without an exception: its report names the stop
            stopped = report.status == "stopped" and report.message
            self.record.error = redact(report.message if stopped else f"{type(error).__name__}: {error}")

    def failed(self, error: BaseException) -> None:
        self.record.error = redact(f"{type(error).__name__}: {error}")

    def end(self, exit_code: int) -> AuditRecord:
        """Finish the record and append it to every destination; never raises (it logs instead)."""
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None
        record = self.record
        record.exit_code, record.finished_at = exit_code, _now()
        if self.config.aws_principal:
            record.aws_principal = aws_principal()
        path = self.job_file.parent / self.config.path
        try:
            append_audit(record, path)
        except OSError as error:
            log.error("audit record not written to %s: %s", path, error.strerror)
        if self.config.postgres is not None:
            try:
                insert_audit(record, self.config.postgres)
            except Exception as error:
                table = f"{self.config.postgres.schema_}.{self.config.postgres.table}"
                log.error("audit record not written to PostgreSQL table %s: %s", table,
                          redact(f"{type(error).__name__}: {error}"))
        return record


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"{signal.Signals(signum).name} received")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def append_audit(record: AuditRecord, path: Path) -> None:
    """Append one line with a single O_APPEND write and fsync: concurrent runs never interleave lines."""
    data = (record.to_json() + "\n").encode("utf-8")
    descriptor = open_descriptor(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def insert_audit(record: AuditRecord, table: AuditTable) -> None:
    """Insert the record as jsonb into `schema.table`; the table is created only when missing, so a
    role with INSERT alone on an existing table can write the trail."""
    import psycopg
    from psycopg import sql

    name = sql.Identifier(table.schema_, table.table)
    tls = security.libpq_tls_defaults(table.dsn, table.sslmode)
    if table.sslmode:
        tls["sslmode"] = table.sslmode
    with psycopg.connect(table.dsn, autocommit=True, connect_timeout=10, **tls) as connection:
        insert = sql.SQL("INSERT INTO {} (record) VALUES (%s::jsonb)").format(name)
        try:
            connection.execute(insert, (record.to_json(),))
        except psycopg.errors.UndefinedTable:
            connection.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, recorded_at timestamptz NOT NULL "
                "DEFAULT now(), record jsonb NOT NULL)").format(name))
            connection.execute(insert, (record.to_json(),))
