"""Job files: read the YAML with the position of every value, interpolate, validate, report every problem.

A job file is user input and may be hostile: its size, nesting depth and alias expansion are
bounded before anything else happens, so a bad file always ends in a `JobFileError` quickly and
in bounded memory. Every problem names file, line, column and the dotted path of the value
(`targets.pg.schema`), and all problems are reported at once, sorted by line.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from etl import security
from etl.audit import AuditConfig
from etl.checksum.tolerances import Tolerances
from etl.errors import JobFileError, did_you_mean
from etl.interpolate import InterpolationError, Interpolator, SecretSource
from etl.redact import RedactedRepr, is_secret_name, passwords_in, redact
from etl.settings_types import DESCRIBED, Integer, refuse_boolean
from etl.sources.base import BatchLimits
from etl.yaml_limits import MAX_BYTES, MAX_DEPTH, MAX_VALUES, DepthBoundLoader, YamlRefused, check_flow_depth

log = logging.getLogger(__name__)

PathKey = tuple[str | int, ...]
_Registry = tuple[str, Mapping[str, str], Callable[[str], types.ModuleType]]
"""(kind of section, known types, module_for) of etl.sources, etl.sinks or etl.state."""
_PASSWORD_KEYS = {"password", "passwd", "pwd"}


def _is_password_key(path: PathKey) -> bool:
    """`password:`, `pwd:`, and any `..._password:` such as Oracle's `wallet_password:`."""
    key = path[-1] if path else None
    return isinstance(key, str) and (key.lower() in _PASSWORD_KEYS or key.lower().endswith("_password"))
_REFERENCE = re.compile(r"\$\{[^}]*\}")


# --------------------------------------------------------------------------- the document's sections


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

    @model_validator(mode="after")
    def _scheduler_matches_type(self) -> Executor:
        if self.type == "dask" and not self.scheduler:
            raise ValueError("executor type 'dask' needs 'scheduler' (e.g. tcp://host:8786)")
        if self.type == "local" and self.scheduler:
            raise ValueError("'scheduler' applies only to executor type 'dask'")
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


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a job file, at a 1-based line and column."""

    line: int
    column: int
    path: str
    message: str

    def format(self, file: str) -> str:
        where = f"{file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class JobFileProblems(JobFileError):
    """A job file with one or more problems; `problems` lists them sorted by line."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = sorted(problems, key=lambda p: (p.line, p.column, p.path))
        super().__init__(redact(problems_text(file, self.problems)))


def problems_text(file: str, problems: list[Problem]) -> str:
    """One problem as `file:line:column: path: message`, several as a count and one such line each."""
    lines = [p.format(file) for p in sorted(problems, key=lambda p: (p.line, p.column, p.path))]
    if len(lines) == 1:
        return lines[0]
    return f"{file} has {len(lines)} problems:\n" + "\n".join(lines)


def dotted(path: PathKey) -> str:
    """`('sources', 'mongo', 'tables', 'x', 'partitions')` -> `sources.mongo.tables.x.partitions`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# --------------------------------------------------------------------------- reading YAML with positions


_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Builder:
    """Turns composed nodes into plain values (safe_load semantics) and records where each value is."""

    def __init__(self, loader: DepthBoundLoader) -> None:
        self.loader = loader
        self.values = 0
        self.value_marks: dict[PathKey, yaml.Mark] = {}
        self.key_marks: dict[PathKey, yaml.Mark] = {}
        self.boolean_words: dict[PathKey, str] = {}
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            where = self.value_marks.get(path[:1], node.start_mark)
            reason = f"expands to more than {MAX_VALUES} values (nested aliases?)"
            raise YamlRefused(where.line + 1, where.column + 1, reason)
        if len(path) > MAX_DEPTH:
            raise YamlRefused(
                node.start_mark.line + 1,
                node.start_mark.column + 1,
                f"nested more than {MAX_DEPTH} levels deep (recursive alias?)",
            )
        self.value_marks.setdefault(path, node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ_TAG:
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP_TAG:
            return self._mapping(node, path)
        self._problem(node.start_mark, path, f"unsupported YAML tag '{node.tag}'")
        return None

    def _scalar(self, node: yaml.ScalarNode, path: PathKey) -> Any:
        if node.tag not in self.loader.yaml_constructors:
            self._problem(node.start_mark, path, f"unsupported YAML tag '{node.tag}'")
            return None
        try:
            value = self.loader.construct_object(node)
        except (yaml.YAMLError, ValueError) as error:
            reason = getattr(error, "problem", None) or str(error).splitlines()[0]
            if "Exceeds the limit" in reason:
                reason = "a number with more than 4300 digits"
            self._problem(node.start_mark, path, f"invalid value: {reason}")
            return None
        if isinstance(value, bool) and node.value.lower() not in ("true", "false"):
            self.boolean_words[path] = node.value  # yes/no/on/off: YAML 1.1 reads them as booleans
        return value

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[str, Any]:
        result: dict[str, Any] = {}
        explicit: dict[str, yaml.Mark] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self._merge(result, explicit, value_node, path)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem(key_node.start_mark, path, "a key must be plain text, not a mapping or list")
                continue
            key = str(key_node.value)
            if key in explicit:
                first = explicit[key].line + 1
                self._problem(
                    key_node.start_mark, (*path, key), f"duplicate key '{key}' (first at line {first})"
                )
                continue
            explicit[key] = key_node.start_mark
            self.key_marks[(*path, key)] = key_node.start_mark
            self.value_marks[(*path, key)] = value_node.start_mark
            result[key] = self.build(value_node, (*path, key))
        return result

    def _merge(self, result: dict, explicit: dict, value_node: yaml.Node, path: PathKey) -> None:
        """`<<: *base` / `<<: [*a, *b]`: keys not already set are taken from the merged mappings."""
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if not (isinstance(source, yaml.MappingNode) and source.tag == _MAP_TAG):
                self._problem(source.start_mark, path, "'<<' merges only mappings")
                continue
            merged = self._mapping(source, path)
            for key, value in merged.items():
                if key not in explicit and key not in result:
                    result[key] = value

    def _problem(self, mark: yaml.Mark, path: PathKey, message: str) -> None:
        self.problems.append(Problem(mark.line + 1, mark.column + 1, dotted(path), message))


@dataclass
class _Document:
    data: Any
    value_marks: dict[PathKey, yaml.Mark]
    key_marks: dict[PathKey, yaml.Mark]
    boolean_words: dict[PathKey, str]

    def position(self, path: PathKey, *, key: bool = False) -> tuple[int, int]:
        """1-based line and column of the value (or key) at `path`, else of its nearest ancestor."""
        if key and path in self.key_marks:
            mark = self.key_marks[path]
            return mark.line + 1, mark.column + 1
        for end in range(len(path), -1, -1):
            mark = self.value_marks.get(path[:end])
            if mark is not None:
                return mark.line + 1, mark.column + 1
        return 1, 1


def _compose(text: str, file: str) -> _Document:
    try:
        check_flow_depth(text)
        loader = DepthBoundLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise JobFileProblems(file, [Problem(1, 1, "", "the job file is empty")])
            builder = _Builder(loader)
            data = builder.build(node, ())
        finally:
            loader.dispose()
    except YamlRefused as refused:
        problem = Problem(refused.line, refused.column, "", f"job file rejected: {refused.reason}")
        raise JobFileProblems(file, [problem]) from None
    except RecursionError:
        raise JobFileProblems(file, [Problem(1, 1, "", "job file rejected: nested too deeply")]) from None
    except yaml.MarkedYAMLError as error:
        raise JobFileProblems(file, [_syntax_problem(error)]) from None
    except yaml.reader.ReaderError as error:
        before = text[: error.position]
        line, column = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        code = error.character if isinstance(error.character, int) else ord(error.character)
        problem = Problem(line, column, "", f"invalid YAML: {error.reason} #x{code:04x}")
        raise JobFileProblems(file, [problem]) from None
    if builder.problems:
        raise JobFileProblems(file, builder.problems)
    if not isinstance(data, dict):
        raise JobFileProblems(
            file, [Problem(1, 1, "", "expected a mapping of job settings at the top level")]
        )
    return _Document(data, builder.value_marks, builder.key_marks, builder.boolean_words)


def _syntax_problem(error: yaml.MarkedYAMLError) -> Problem:
    mark = error.problem_mark or error.context_mark
    message = f"invalid YAML: {error.problem or 'syntax error'}"
    if isinstance(error, yaml.composer.ComposerError) and "another document" in (error.problem or ""):
        message = "invalid YAML: a job file holds one document, but a second one starts here"
    elif error.context and error.context_mark is not None:
        message += f" ({error.context} started at line {error.context_mark.line + 1})"
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return Problem(line, column, "", message)


# --------------------------------------------------------------------------- interpolation and passwords


def _walk_leaves(value: Any, path: PathKey):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk_leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk_leaves(item, (*path, index))
    else:
        yield path, value


def _walk_strings(value: Any, path: PathKey):
    return ((where, leaf) for where, leaf in _walk_leaves(value, path) if isinstance(leaf, str))


def _set(data: Any, path: PathKey, value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def _literal_password_warnings(doc: _Document, file: str, interpolate: Interpolator) -> list[str]:
    """Warn (never fail) where a password is written in the file instead of coming from ${env}/${secret}."""
    warnings = []
    for path, leaf in _walk_leaves(doc.data, ()):
        if leaf is None or isinstance(leaf, bool | dict | list):
            continue
        text = str(leaf)
        is_password_key = _is_password_key(path)
        literal = _REFERENCE.sub("", text) if is_password_key else ""
        inline = [p for p in passwords_in(text) if "${" not in p] if isinstance(leaf, str) else []
        if not literal and not inline:
            continue
        for secret in [literal, *inline]:
            interpolate.register(secret)
        line, column = doc.position(path)
        where = "a password" if literal else "a connection string with an inline password"
        warnings.append(
            f"{file}:{line}:{column}: {dotted(path)}: {where} is written in the job file; "
            "use ${env:NAME} or ${secret:NAME} instead"
        )
    return warnings


def _interpolate(doc: _Document, interpolate: Interpolator) -> tuple[list[Problem], set[PathKey]]:
    """Resolve every reference in place; return the problems and the paths of resolved values."""
    problems: list[Problem] = []
    resolved: set[PathKey] = set()
    for path, text in list(_walk_strings(doc.data, ())):
        if "${" not in text:
            continue
        resolved.add(path)
        try:
            value = interpolate(text)
        except InterpolationError as error:
            line, column = doc.position(path)
            message = error.message if error.hint is None else f"{error.message}; {error.hint}"
            problems.append(Problem(line, column, dotted(path), message))
            continue
        if isinstance(path[-1], str) and is_secret_name(path[-1]):
            interpolate.register(value)
        _set(doc.data, path, value)
    return problems, resolved


# --------------------------------------------------------------------------- validation


def _model_at(model: Any, loc: tuple) -> type[BaseModel] | None:
    """The pydantic model reached by following `loc` through fields, dicts, lists and optionals."""
    annotation = model
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = _field_named(annotation, part)
            if field is None:
                return None
            annotation = field.annotation
        elif typing.get_origin(annotation) in (dict, list):
            annotation = typing.get_args(annotation)[-1]
        else:
            return None
    annotation = _unwrap(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            models = [a for a in members if isinstance(a, type) and issubclass(a, BaseModel)]
            annotation = (models or members)[0]
        else:
            return annotation


def _field_named(model: type[BaseModel], key: object) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field
    return None


def _keys_of(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def nearest(word: str, choices: list[str]) -> str | None:
    """The choice closest to a misspelt `word` (for "did you mean"), or None."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


_SIMPLE_EXPECTATIONS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "decimal_type": "a number",
    "decimal_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}


def _expected(error: Mapping[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _SIMPLE_EXPECTATIONS:
        return f"expected {_SIMPLE_EXPECTATIONS[kind]}"
    if kind == "literal_error":
        return f"expected {ctx['expected']}"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"expected a number {bounds[kind]} {limit}"
    if kind == "string_pattern_mismatch":
        return f"expected text matching {ctx['pattern']}"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length', 1)} entry"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == DESCRIBED:
        return str(error["msg"])
    message = error["msg"]
    return message[0].lower() + message[1:]


def _shown(value: Any, path: PathKey, resolved: set[PathKey], doc: _Document) -> str:
    """How an offending value is shown: literal short scalars as written, anything else by its kind."""
    if path in resolved or _is_password_key(path):
        return "a value from a reference" if path in resolved else "a password"
    if value is None:
        return "null"
    if isinstance(value, bool):
        word = "true" if value else "false"
        return f"{doc.boolean_words[path]} (YAML reads it as {word})" if path in doc.boolean_words else word
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else "a long string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _problems_from(
    error: ValidationError, model: type[BaseModel], prefix: PathKey, doc: _Document, resolved: set[PathKey]
) -> list[Problem]:
    problems = []
    for item in error.errors():
        loc = tuple(item["loc"])
        path = (*prefix, *loc)
        kind = item["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            valid = _keys_of(_model_at(model, loc[:-1]))
            suggestion = nearest(key, valid)
            message = f"unknown key '{key}'"
            if suggestion:
                message += f"; did you mean '{suggestion}'?"
            elif valid:
                message += f"; valid keys: {', '.join(valid)}"
            line, column = doc.position(path, key=True)
            problems.append(Problem(line, column, dotted(path), message))
        elif kind == "missing":
            line, column = doc.position(path[:-1])
            problems.append(Problem(line, column, dotted(path[:-1]), f"missing required key '{loc[-1]}'"))
        else:
            line, column = doc.position(path)
            expected, shown = _expected(item), _shown(item.get("input"), path, resolved, doc)
            # a check of a whole section (a mapping) says itself what is wrong with it
            described = kind == DESCRIBED or shown in expected or shown == "a mapping"
            message = expected if described else f"{expected}, got {shown}"
            problems.append(Problem(line, column, dotted(path), message))
    return problems


def _section_config(
    registry: _Registry, name_path: PathKey, section: dict, doc: _Document, resolved: set[PathKey]
) -> tuple[Any, list[Problem]]:
    """Validate a `sources.x`, `targets.x` or `state` section with its `type`'s module `Config`."""
    kind, known, module_for = registry
    types_known = sorted(known)
    line, column = doc.position(name_path)
    section_type = section.get("type")
    if section_type is None:
        return None, [
            Problem(
                line,
                column,
                dotted(name_path),
                f"missing required key 'type' (one of {', '.join(types_known)})",
            )
        ]
    type_path = (*name_path, "type")
    if not isinstance(section_type, str) or section_type not in types_known:
        shown = _shown(section_type, type_path, resolved, doc)
        message = f"unknown {kind} type {shown}"
        suggestion = nearest(section_type, types_known) if isinstance(section_type, str) else None
        if suggestion:
            message += f"; did you mean '{suggestion}'?"
        message += f" (known types: {', '.join(types_known)})"
        type_line, type_column = doc.position(type_path)
        return None, [Problem(type_line, type_column, dotted(type_path), message)]
    try:
        module = module_for(section_type)
    except Exception as error:  # a module that fails to import must not hide other problems
        reason = f"{type(error).__name__}: {error}"
        return None, [
            Problem(
                line, column, dotted(type_path), f"{kind} type '{section_type}' is not available ({reason})"
            )
        ]
    try:
        return module.Config.model_validate(section), []
    except ValidationError as error:
        return None, _problems_from(error, module.Config, name_path, doc, resolved)


def _mapping_problems(job_path: Path, sources: dict[str, Any], doc: _Document) -> list[Problem]:
    problems = []
    for source_name, config in sources.items():
        places: list[tuple[tuple, Any]] = [
            (("sources", source_name, "tables", table_name, "mapping"), getattr(table, "mapping", None))
            for table_name, table in (getattr(config, "tables", None) or {}).items()
        ]
        places += [(("sources", source_name, "select", index, "mapping"), selection.mapping)
                   for index, selection in enumerate(getattr(config, "select", None) or [])]
        if getattr(config, "dms", None) is not None:
            places.append((("sources", source_name, "dms", "mapping"), config.dms.mapping))
        for path, mapping in places:
            if isinstance(mapping, str) and not (job_path.parent / mapping).is_file():
                line, column = doc.position(path)
                what = f"mapping file '{mapping}' does not exist"
                if (job_path.parent / mapping).is_dir():
                    what = f"mapping path '{mapping}' is a directory, not a mapping file"
                problems.append(Problem(line, column, dotted(path), what))
    return problems


# --------------------------------------------------------------------------- loading


def load_job(
    path: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    secrets: SecretSource | Mapping[str, str] | None = None,
) -> Job:
    """Read, interpolate and validate a job file; raise `JobFileProblems` listing every problem.

    `environ` replaces `os.environ` and `secrets` replaces AWS Secrets Manager (a `SecretSource`
    or a plain name -> value mapping) for `${env:..}` and `${secret:..}` references.
    """
    from etl import sinks, sources, state

    file = str(path)
    job_path = Path(path).absolute()
    raw = _read(job_path, file)
    doc = _compose(raw.decode("utf-8"), file)
    interpolate = Interpolator(environ, secrets, allow_insecure=doc.data.get("allow_insecure") is True)
    warnings = _literal_password_warnings(doc, file, interpolate)
    for warning in warnings:
        log.warning(warning)
    reference_problems, resolved = _interpolate(doc, interpolate)
    failed = {p.path for p in reference_problems}
    problems: list[Problem] = []

    # top-level `x-...` keys hold YAML anchors for reuse (as in docker-compose); they are not settings
    for key in [k for k in doc.data if k.startswith("x-")]:
        del doc.data[key]
    try:
        top = JobFile.model_validate(doc.data)
    except ValidationError as error:
        problems += _problems_from(error, JobFile, (), doc, resolved)
        top = None

    configs: dict[str, dict[str, Any]] = {"sources": {}, "targets": {}}
    data = doc.data
    registries: dict[str, _Registry] = {
        "sources": ("source", sources.SOURCE_TYPES, sources.module_for),
        "targets": ("target", sinks.SINK_TYPES, sinks.module_for),
    }
    for section, registry in registries.items():
        entries = data.get(section)
        if not isinstance(entries, dict):
            continue
        for name, body in entries.items():
            if isinstance(body, dict):
                config, found = _section_config(registry, (section, name), body, doc, resolved)
                problems += found
                configs[section][name] = config
    state_section = data.get("state", {"type": "sqlite"})
    state_config = None
    if isinstance(state_section, dict):
        state_config, found = _section_config(
            ("state", state.STATE_TYPES, state.module_for), ("state",), state_section, doc, resolved
        )
        problems += found
    if not problems:
        problems += _mapping_problems(job_path, configs["sources"], doc)
    if not problems and top is not None:
        sections = _connection_sections(configs, state_config, top.audit, registries, state)
        letters = top.dead_letter
        if letters.kms_key is not None:
            sections.append((("dead_letter",), "dead-letter KMS key",
                             [security.aws_endpoint("KMS", letters.endpoint_url, letters.region)]))
        if top.restore is not None:
            sections += [(("restore", side), owner, security.libpq_endpoints(db.dsn))
                         for side, owner, db in (("source", "restore source database", top.restore.source),
                                                 ("restored", "restored database", top.restore.restored))
                         if db is not None and db.dsn is not None]
        insecure, connection_warnings = _insecure_connections(sections, top.allow_insecure, doc, file)
        problems += insecure
        for warning in connection_warnings:
            log.warning(warning)
        warnings += connection_warnings

    # a value whose reference failed is reported once, not again as the wrong kind of value
    problems = reference_problems + [p for p in problems if not any(_within(p.path, f) for f in failed)]
    if problems or top is None:
        raise JobFileProblems(file, problems)
    job = Job(
        name=top.name,
        sources=configs["sources"],
        targets=configs["targets"],
        batch=top.batch,
        parallelism=top.parallelism,
        executor=top.executor,
        state=state_config,
        dead_letter=top.dead_letter,
        max_rejects=top.max_rejects,
        validation=top.validation,
        report=top.report,
        audit=top.audit,
        progress=top.progress,
        metrics=top.metrics,
        allow_insecure=top.allow_insecure,
        incremental=top.incremental,
        path=job_path,
        warnings=tuple(warnings),
        restore=top.restore,
    )
    job._interpolate = interpolate
    job._file_hash = hashlib.sha256(raw).hexdigest()
    job._content_hash = _content_hash(configs, top.validation)
    return job


_PICKING = ("select", "dms")
"""Source settings that pick tables when a job starts: part of the hash only when a job uses them,
so a job that does not hashes as it did before they existed."""


def _content_hash(configs: dict[str, dict[str, Any]], validation: Validation) -> str:
    """SHA-256 of what decides the targets' content, but the tables (each table is fingerprinted on
    its own with its mapping): the sources' and targets' settings, passwords and secrets redacted
    out before hashing, and the validation tolerances."""
    content = {
        section: {name: {k: v for k, v in config.model_dump(mode="json").items()
                          if k != "tables" and not (k in _PICKING and not v)}
                  for name, config in entries.items()}
        for section, entries in configs.items()
    }
    content["tolerances"] = validation.tolerances.model_dump(mode="json")
    text = redact(json.dumps(content, sort_keys=True, default=str, separators=(",", ":")))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _connection_sections(
    configs: dict[str, dict[str, Any]], state_config: Any, audit: AuditConfig,
    registries: dict[str, _Registry], state: types.ModuleType,
) -> list[tuple[PathKey, str, list[security.Endpoint]]]:
    """(where in the file, who, the endpoints it connects to) for every section that opens connections.

    Each engine module describes its own connections with `endpoints(config)`; modules without
    one (mongodump, sqlite) never touch the network.
    """
    found: list[tuple[PathKey, str, list[security.Endpoint]]] = []
    for section, registry in registries.items():
        kind, _, module_for = registry
        for name, config in configs[section].items():
            describe = getattr(module_for(config.type), "endpoints", None)
            if describe is not None:
                found.append(((section, name), f"{kind} {name!r}", describe(config)))
    describe_state = getattr(state.module_for(state_config.type), "endpoints", None)
    if describe_state is not None:
        found.append((("state",), "state store", describe_state(state_config)))
    if audit.postgres is not None:
        found.append((("audit", "postgres"), "audit table", audit.endpoints()))
    return found


def _insecure_connections(
    sections: list[tuple[PathKey, str, list[security.Endpoint]]], allow_insecure: bool, doc: _Document,
    file: str,
) -> tuple[list[Problem], list[str]]:
    """The encryption policy (etl/security.py) applied to every connection: refusals and warnings."""
    problems: list[Problem] = []
    warnings: list[str] = []
    for path, owner, endpoints in sections:
        for endpoint in endpoints:
            decided = security.verdict(endpoint, allow_insecure)
            line, column = doc.position(path)
            if decided == "refuse":
                problems.append(Problem(line, column, dotted(path), security.refusal(owner, endpoint)))
            elif decided == "warn":
                warnings.append(f"{file}:{line}:{column}: {security.warning(owner, endpoint)}")
    return problems, warnings


def _within(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith((f"{ancestor}.", f"{ancestor}["))


def _read(job_path: Path, file: str) -> bytes:
    try:
        with job_path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise JobFileError(f"{file}: cannot read the job file: {error.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise JobFileProblems(
            file, [Problem(1, 1, "", f"job file rejected: larger than {MAX_BYTES} bytes")]
        )
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        before = raw[: error.start]
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        raise JobFileProblems(file, [Problem(line, column, "", "the job file is not UTF-8 text")]) from None
    return raw
