"""Loading a job file: read it with positions (etl/located.py), interpolate `${env:..}` and
`${secret:..}`, validate every section with its module's `Config`, apply the connection policy, and
report every problem at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from etl import security
from etl.audit import AuditConfig
from etl.errors import JobFileError
from etl.interpolate import InterpolationError, Interpolator, SecretSource
from etl.job.problems import (
    JobFileProblems,
    PathKey,
    Problem,
    _is_password_key,
    _problems_from,
    _shown,
    dotted,
    nearest,
)
from etl.job.schema import Job, JobFile, Validation
from etl.located import Document, position, read_document, text_position
from etl.redact import is_secret_name, passwords_in, redact
from etl.yaml_limits import MAX_BYTES, YamlRefused

log = logging.getLogger("etl.job")
"""The package's name, as before it was split: warnings are filtered by `etl.job`."""

_Registry = tuple[str, Mapping[str, str], Callable[[str], types.ModuleType]]
"""(kind of section, known types, module_for) of etl.sources, etl.sinks or etl.state."""
_REFERENCE = re.compile(r"\$\{[^}]*\}")


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


def _literal_password_warnings(doc: Document, file: str, interpolate: Interpolator) -> list[str]:
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


def _interpolate(doc: Document, interpolate: Interpolator) -> tuple[list[Problem], set[PathKey]]:
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


def _section_config(
    registry: _Registry, name_path: PathKey, section: dict, doc: Document, resolved: set[PathKey]
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


def _mapping_problems(job_path: Path, sources: dict[str, Any], doc: Document) -> list[Problem]:
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
    registries = {
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
    sections: list[tuple[PathKey, str, list[security.Endpoint]]], allow_insecure: bool, doc: Document,
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
        line, column = text_position(raw, error.start)
        raise JobFileProblems(file, [Problem(line, column, "", "the job file is not UTF-8 text")]) from None
    return raw


def _compose(text: str, file: str) -> Document:
    """The job file's text read with positions (etl/located.py); what cannot be read, as problems."""
    try:
        doc = read_document(text)
    except YamlRefused as refused:
        problem = Problem(refused.line, refused.column, "", f"job file rejected: {refused.reason}")
        raise JobFileProblems(file, [problem]) from None
    except RecursionError:
        raise JobFileProblems(file, [Problem(1, 1, "", "job file rejected: nested too deeply")]) from None
    except yaml.MarkedYAMLError as error:
        raise JobFileProblems(file, [_syntax_problem(error)]) from None
    except yaml.reader.ReaderError as error:
        line, column = text_position(text, error.position)
        code = error.character if isinstance(error.character, int) else ord(error.character)
        problem = Problem(line, column, "", f"invalid YAML: {error.reason} #x{code:04x}")
        raise JobFileProblems(file, [problem]) from None
    if doc is None:
        raise JobFileProblems(file, [Problem(1, 1, "", "the job file is empty")])
    if doc.problems:
        raise JobFileProblems(file, doc.problems)
    if not isinstance(doc.data, dict):
        raise JobFileProblems(
            file, [Problem(1, 1, "", "expected a mapping of job settings at the top level")]
        )
    return doc


def _syntax_problem(error: yaml.MarkedYAMLError) -> Problem:
    mark = error.problem_mark or error.context_mark
    message = f"invalid YAML: {error.problem or 'syntax error'}"
    if isinstance(error, yaml.composer.ComposerError) and "another document" in (error.problem or ""):
        message = "invalid YAML: a job file holds one document, but a second one starts here"
    elif error.context and error.context_mark is not None:
        message += f" ({error.context} started at line {error.context_mark.line + 1})"
    line, column = position(mark) if mark else (1, 1)
    return Problem(line, column, "", message)
