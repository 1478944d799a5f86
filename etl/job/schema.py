"""The job file's schema: every section a job file may hold, the document as written (`JobFile`) and
the validated job the engine takes (`Job`).

`sources`, `targets` and `state` are checked by their own modules' `Config` (etl.sources, etl.sinks,
etl.state); `etl.job.load` puts the validated pieces together.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from etl.audit import AuditConfig
from etl.checksum.tolerances import Tolerances
from etl.errors import did_you_mean
from etl.interpolate import Interpolator
from etl.redact import RedactedRepr
from etl.settings_types import Integer, refuse_boolean
from etl.sources.base import BatchLimits

MIN_BATCH_BYTES = 1024
MAX_BATCH_BYTES = 1024**3
"""The largest `batch.bytes`: a batch is held in memory whole (and once more while it is written),
once per partition running at once, so 1GB already asks for gigabytes per run."""


def _parse_bytes(value: object) -> object:
    """`8MB`, `512KB`, `1GiB` or a plain number of bytes; units are powers of 1024; 1KB to 1GB."""
    refuse_boolean(value)
    out_of_range = ValueError("expected a size from 1KB to 1GB (1024 to 1073741824 bytes)")
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*([KMG]i?B|B)?\s*", value, flags=re.IGNORECASE)
        if not match:
            raise ValueError("expected a size like 8MB, 512KB or a number of bytes")
        if len(match.group(1).lstrip("0")) > 10:  # past 1GB in any unit, and cheap to refuse
            raise out_of_range
        unit = (match.group(2) or "B").upper().replace("I", "")
        value = int(match.group(1)) * {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[unit]
    if isinstance(value, int | float) and not MIN_BATCH_BYTES <= value <= MAX_BATCH_BYTES:
        raise out_of_range
    return value


class Batch(BaseModel):
    """How much one batch may hold; whichever limit is reached first ends the batch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    records: Integer = Field(default=BatchLimits.records, ge=1)
    bytes: Annotated[int, BeforeValidator(_parse_bytes)] = BatchLimits.bytes

    def limits(self) -> BatchLimits:
        return BatchLimits(records=self.records, bytes=self.bytes)


class Executor(BaseModel):
    """Where partitions run: threads/processes on this machine, or tasks on a Dask cluster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["local", "dask"] = "local"
    scheduler: str | None = None
    """Dask scheduler address, e.g. tcp://host:8786 (type dask only)."""
    processes: bool = False
    """Type local only: run each partition in one of `parallelism` worker processes instead of on a
    thread, for loads that keep the CPU busy (mapping, decoding) more than they wait on servers."""

    @model_validator(mode="after")
    def _scheduler_matches_type(self) -> Executor:
        if self.type == "dask" and not self.scheduler:
            raise ValueError("executor type 'dask' needs 'scheduler' (e.g. tcp://host:8786)")
        if self.type == "local" and self.scheduler:
            raise ValueError("'scheduler' applies only to executor type 'dask'")
        if self.type == "dask" and self.processes:
            raise ValueError("'processes' applies only to executor type 'local' (Dask workers are processes "
                             "already: start them with `dask worker --nworkers N --nthreads 1`)")
        return self


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = ".etl/dead_letter.jsonl"
    """JSON-lines file of rejected records, relative to the job file's folder."""
    raw: Literal["omitted", "encrypted"] = "omitted"
    """`omitted`: a dead letter holds the record only as the PII transforms left it. `encrypted`: it
    also holds the raw source record, sealed with a data key from `kms_key` (etl/sinks/deadletter_seal.py)."""
    kms_key: str | None = None
    """For `raw: encrypted`: the KMS key (id, ARN or `alias/...`) data keys are generated under."""
    key_file: str | None = None
    """For `raw: encrypted` in tests and on air-gapped machines only, instead of `kms_key`: a file of 32
    random bytes (relative to the job file's folder); whoever reads it can read every raw record."""
    region: str | None = None
    """AWS region of `kms_key` (default: the AWS configuration's)."""
    endpoint_url: str | None = None
    """KMS endpoint (default: AWS's own HTTPS endpoint); checked like every connection."""

    @model_validator(mode="after")
    def _keys_match_raw(self) -> DeadLetter:
        if self.raw == "encrypted" and (self.kms_key is None) == (self.key_file is None):
            raise ValueError("`raw: encrypted` needs exactly one of `kms_key` (AWS KMS) and `key_file` "
                             "(tests and air-gapped use only)")
        if self.raw == "omitted" and (self.kms_key or self.key_file):
            raise ValueError("`kms_key` and `key_file` apply only with `raw: encrypted`")
        if self.kms_key is None and (self.region or self.endpoint_url):
            raise ValueError("`region` and `endpoint_url` apply only with `kms_key`")
        return self


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dir: str = ".etl/reports"
    """Folder for run and validation reports, relative to the job file's folder."""


class Progress(BaseModel):
    """`progress:`: what a run says while it moves records when stderr is no terminal (cron, ECS)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    every_seconds: float = Field(default=30.0, ge=0)
    """A JSON progress line per table at most this often (on its committed batches; 0: on every one),
    and one per table when the load ends (docs/reports.md)."""


class Metrics(BaseModel):
    """`metrics:`: CloudWatch Embedded Metric Format lines at the end of a run (docs/reports.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cloudwatch_emf: bool = False
    namespace: str = Field(default="etl", min_length=1, max_length=255, pattern=r"^[A-Za-z0-9 .\-_/#:]+$")


class Validation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    after_run: bool = True
    """Validate every target against the source when the run ends."""
    buckets: Integer = Field(default=256, ge=1, le=1_000_000)
    """Checksum buckets per table; a mismatched bucket is drilled down to rows."""
    segments: Integer = Field(default=4, ge=1, le=1000)
    """Parallel segments when reading targets back (DynamoDB parallel scan)."""
    consistent_reads: bool = False
    """Strongly consistent reads when reading DynamoDB back."""
    max_differences: Integer = Field(default=100, ge=0)
    """Most row differences listed per table in a report."""
    tolerances: Tolerances = Field(default_factory=Tolerances)


class MaxRejects(BaseModel):
    """How many rejected records a run tolerates: a count (`100`) or a share of extracted (`"1%"`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: Integer | None = Field(default=None, ge=0)
    percent: Decimal | None = Field(default=None, ge=0, le=100)

    @model_validator(mode="before")
    @classmethod
    def _from_scalar(cls, value: object) -> object:
        expected = 'expected a number of records like 100 or a percentage like "1%"'
        if isinstance(value, bool):
            raise ValueError(expected)
        if isinstance(value, int):
            if value < 0:
                raise ValueError(expected)
            return {"count": value}
        if isinstance(value, str):
            text = value.strip()
            if re.fullmatch(r"\d+", text):
                return {"count": int(text)}
            match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", text)
            if match is None:
                raise ValueError(expected)
            try:
                percent = Decimal(match.group(1))
            except InvalidOperation:
                raise ValueError(expected) from None
            if percent > 100:
                raise ValueError("expected a percentage between 0% and 100%")
            return {"percent": percent}
        if isinstance(value, dict | MaxRejects):
            return value
        raise ValueError(expected)

    def exceeded(self, rejected: int, extracted: int) -> bool:
        """Whether `rejected` records out of `extracted` is more than this run may reject."""
        if self.percent is not None:
            return Decimal(rejected) * 100 > self.percent * Decimal(extracted)
        return rejected > (self.count or 0)

    def __str__(self) -> str:
        return f"{self.percent}%" if self.percent is not None else str(self.count or 0)


class RestoreDatabase(RedactedRepr, BaseModel):
    """A database the restore commands read: a job source, a PostgreSQL target of the job, or a
    PostgreSQL DSN. Written as a mapping, or as a plain name meaning `{source: name}`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    source: str | None = None
    """A relational source of the job (postgres, mssql, oracle)."""
    target: str | None = None
    """A postgres target of the job (its DSN and schema)."""
    dsn: str | None = None
    """A PostgreSQL libpq connection string or URI."""
    schema_: str | None = Field(default=None, alias="schema")
    """Schema of the tables when they do not name one."""

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: object) -> object:
        return {"source": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_database(self) -> RestoreDatabase:
        if sum(v is not None for v in (self.source, self.target, self.dsn)) != 1:
            raise ValueError("expected exactly one of 'source', 'target' or 'dsn'")
        return self


class RestoreTable(BaseModel):
    """One table whose checksum manifests are taken at backup time and verified after a restore."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    key: list[str] | None = Field(default=None, min_length=1)
    """Columns that identify a row; default: the primary key."""
    schema_: str | None = Field(default=None, alias="schema")
    segments: Integer = Field(default=8, ge=1, le=10_000)
    """Key-range segments of a full manifest, cut at key quantiles (ignored with `boundaries`)."""
    boundaries: list[list[str | Integer]] | None = None
    """Explicit segment boundaries (key values, ascending)."""


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


class Restore(RedactedRepr, BaseModel):
    """The `restore` section: backup history, restore point, manifests and the databases to
    checksum (docs/restore.md, "Command line")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: str
    """postgres, mssql, oracle or mongo, as sources name them (postgresql, sqlserver and mongodb
    are accepted too and read as those)."""
    history: Annotated[list[str], BeforeValidator(_as_list)] = Field(default_factory=list)
    """Backup metadata exports, backup folders or mongodump folders, relative to the job file."""
    wal_archive: str | None = None
    verify_files: bool = False
    """PostgreSQL: check every backup folder against its backup_manifest before planning."""
    point: Integer | datetime | str | None = None
    """The restore point: LSN, SCN, oplog `seconds:increment`, or a time; none: the latest."""
    manifests: str = ".etl/manifests"
    """Folder of checksum manifests, one `<backup name>.json` per backup."""
    source: RestoreDatabase | None = None
    """The database manifests are taken from at backup time."""
    restored: RestoreDatabase | None = None
    """The restored database --verify-restore checks."""
    tables: dict[str, RestoreTable] = Field(default_factory=dict)
    """Tables to checksum; default: the configured tables of `source` when it is a job source."""
    change_column: str | None = None
    """A column set on every change: restored rows changed after the manifest was taken are drift."""
    drill_down: bool = False
    """Read mismatched buckets from `source` too and name the differing rows (only meaningful while
    `source` is still at the restore point, e.g. frozen for cut-over)."""
    buckets: Integer = Field(default=256, ge=1, le=1_000_000)

    @field_validator("engine")
    @classmethod
    def _engine_name(cls, value: str) -> str:
        from etl.restore.engines import ENGINES, NAMES, get_engine

        if value not in NAMES:
            raise ValueError(f"unknown backup engine {value!r}; use one of {', '.join(ENGINES)}"
                             + did_you_mean(value, NAMES))
        return get_engine(value).name


class JobFile(BaseModel):
    """The document as written; `sources`, `targets` and `state` are checked by their modules' Configs."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    name: str

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}", name):
            raise ValueError("expected a name of letters, digits, '_', '.' and '-' (at most 128 characters)")
        return name

    sources: dict[str, dict[str, Any]] = Field(min_length=1)
    targets: dict[str, dict[str, Any]] = Field(min_length=1)
    batch: Batch = Field(default_factory=Batch)
    parallelism: Integer = Field(default=2, ge=1, le=1024)
    executor: Executor = Field(default_factory=Executor)
    state: dict[str, Any] = Field(default_factory=lambda: {"type": "sqlite"})
    dead_letter: DeadLetter = Field(default_factory=DeadLetter)
    max_rejects: MaxRejects = Field(default_factory=lambda: MaxRejects(count=0))
    validation: Validation = Field(default_factory=Validation)
    report: Report = Field(default_factory=Report)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    progress: Progress = Field(default_factory=Progress)
    metrics: Metrics = Field(default_factory=Metrics)
    allow_insecure: bool = False
    """Accept plaintext or unverified connections to other hosts (each run logs a warning)."""
    incremental: bool = False
    """Keep what `--incremental` runs need (docs/cutover.md): each table's change position, taken before
    its full load reads it, and the ledger of the target keys each source record wrote."""
    restore: Restore | None = None


class Job(RedactedRepr, BaseModel):
    """A validated job. Source, target and state entries are their modules' `Config` instances."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    sources: dict[str, Any]
    targets: dict[str, Any]
    batch: Batch
    parallelism: int
    executor: Executor
    state: Any
    dead_letter: DeadLetter
    max_rejects: MaxRejects
    validation: Validation
    report: Report
    audit: AuditConfig = Field(default_factory=AuditConfig)
    progress: Progress = Field(default_factory=Progress)
    metrics: Metrics = Field(default_factory=Metrics)
    allow_insecure: bool = False
    """Plaintext or unverified connections to other hosts are accepted (and warned about)."""
    incremental: bool = False
    """Change positions and the ledger are kept for `--incremental` runs."""
    path: Path
    """The job file (absolute)."""
    warnings: tuple[str, ...] = ()
    """Validation warnings (e.g. a literal password), already logged."""
    restore: Restore | None = None

    _interpolate: Interpolator = PrivateAttr()
    _file_hash: str = PrivateAttr()
    _content_hash: str = PrivateAttr()

    def resolve_path(self, relative: str | Path) -> Path:
        """A path from the job file, relative to the job file's folder (absolute paths stay as they are)."""
        return self.path.parent / relative

    @property
    def interpolate(self) -> Interpolator:
        """The `${env:..}`/`${secret:..}` resolver this job was loaded with (for mapping files)."""
        return self._interpolate

    def file_hash(self) -> str:
        """SHA-256 (hex) of the job file's bytes as loaded, for the audit trail and reports."""
        return self._file_hash

    def content_hash(self) -> str:
        """SHA-256 (hex) of the settings that decide what the targets hold (sources' and targets'
        settings without secrets, tolerances): a change in them voids what earlier runs proved."""
        return self._content_hash
