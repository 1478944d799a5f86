"""`python -m etl.run job.yaml --check`: reach every source, target and state store with the job's
settings and say what was found, before a run finds out half way.

Per source: the server's version, each table (exists, about how many records, a record read, the
login's read privilege where the engine says). Per target: the server, and each table the job's
mappings write (there with the privileges a run needs, or created by the run). The state store: reached,
and what it holds for the job. Nothing is written. Exit 0 when all of it lets a run proceed, else 3
with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

from etl import sinks as sink_registry
from etl.engine.resources import JobResources
from etl.engine.verdict import load_verdict
from etl.errors import ConnectionFailed, EtlError, MappingError
from etl.job import Job
from etl.records import TableSpec
from etl.redact import redact


@dataclass
class Found:
    """What checking one source, target or the state store found."""

    what: str
    """`source 'mongo' (mongo)`, `target 'pg' (postgres)`, `state store (sqlite)`."""
    lines: list[tuple[str, bool]] = field(default_factory=list)
    """What was found, each with whether it lets a run proceed."""
    unreachable: str | None = None
    """Why it could not be reached (or refused the job's credentials); None when it was."""

    @property
    def ok(self) -> bool:
        return self.unreachable is None and all(ok for _, ok in self.lines)


def check_job(job: Job, resources: JobResources | None = None) -> list[Found]:
    """Check every source, target and the state store of `job`; mapping files are loaded (a bad one
    raises MappingError, exit 2) to know which target tables the job writes."""
    resources = resources or JobResources(job)
    found = [_reach(f"source {name!r} ({config.type})", partial(_source, resources, name))
             for name, config in job.sources.items()]
    keys = resources.source_tables()
    for name, config in job.targets.items():
        found.append(_reach(f"target {name!r} ({config.type})",
                            partial(_target, resources, name, resources.table_specs(name, keys))))
    found.append(_reach(f"state store ({job.state.type})", partial(_state, resources)))
    return found


def _reach(what: str, probe: Callable[[Found, ExitStack], None]) -> Found:
    found = Found(what)
    try:
        with ExitStack() as opened:
            probe(found, opened)
    except MappingError:
        raise
    except EtlError as error:
        found.unreachable = _one_line(error.message)
    except Exception as error:  # a driver's own error: still an answer to "can the run reach it?"
        found.unreachable = _one_line(f"{type(error).__name__}: {error}")
    return found


def _source(resources: JobResources, name: str, found: Found, opened: ExitStack) -> None:
    source = resources.open_source(name)
    opened.callback(source.close)
    version = getattr(source, "server_version", None)
    if version is not None:
        found.lines.append((version() or "server version not asked", True))
    try:
        source.check()  # connects; every configured table exists (the first missing one is named)
    except ConnectionFailed:
        raise
    except EtlError as error:
        found.lines.append((redact(error.message), False))
        return
    estimate = getattr(source, "estimate", None)
    can_read = getattr(source, "can_read", None)
    for table in resources.job.sources[name].tables:
        about = estimate(table) if estimate is not None else None
        said = [f"about {about:,} records" if about is not None else "size not estimated",
                "a record read" if source.sample(table, 1) else "empty"]
        readable = can_read(table) if can_read is not None else True
        if can_read is not None:
            said.append("SELECT granted" if readable else "no SELECT privilege")
        found.lines.append((f"table {table}: exists, " + ", ".join(said), readable))


def _target(resources: JobResources, name: str, tables: list[TableSpec], found: Found,
            opened: ExitStack) -> None:
    sink = resources.open_sink(name)
    opened.callback(sink.close)
    found.lines.extend(sink_registry.check_module_for(resources.job.targets[name].type).probe(sink, tables))


def _state(resources: JobResources, found: Found, opened: ExitStack) -> None:
    job = resources.job
    path = getattr(job.state, "path", None)
    if path:
        file = job.resolve_path(path)
        if not file.exists():
            folder = next(p for p in (file.parent, *file.parent.parents) if p.exists())
            writable = os.access(folder, os.W_OK)
            found.lines.append((f"{file}: not created yet; the first run creates it"
                                + ("" if writable else f", but {folder} is not writable"), writable))
            return
    store = resources.open_state()
    opened.callback(store.close)
    checkpoints = store.checkpoints(job.name)
    done = sum(1 for c in checkpoints.values() if c.done)
    verdict = load_verdict(store, job.name)
    stage = f"; verdict {verdict.stage}" if verdict is not None else ""
    found.lines.append((f"{resources.state_location()}: reached; job {job.name}: {len(checkpoints)} "
                        f"checkpoints, {done} done{stage}", True))


def print_check(job: Job, found: list[Found], stream: IO[str]) -> int:
    """The findings, then the verdict line; returns the exit code (0, or 3 when something fails)."""
    print(f"check of job {job.name} ({_shown(job.path)}):", file=stream)
    for item in found:
        print(f"\n{item.what}: {'ok' if item.ok else 'PROBLEM'}", file=stream)
        if item.unreachable is not None:
            print(f"  unreachable: {item.unreachable}", file=stream)
        for text, ok in item.lines:
            print(f"  {'' if ok else 'problem: '}{text}", file=stream)
    failing = [item.what + (" unreachable" if item.unreachable else "") for item in found if not item.ok]
    if failing:
        print(f"\ncheck failed: {'; '.join(failing)}", file=stream)
        return 3
    print(f"\ncheck passed: {len(found)} connections reached, every table a run needs is there or will be "
          "created", file=stream)
    return 0


def _one_line(text: str) -> str:
    """A driver's message on one line (libpq adds a tab-indented second one), redacted."""
    return redact(" ".join(text.split()))


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
