"""What a job's runs have proven so far, kept in the state store so no run can forget it.

A run's exit code is the job's verdict, not the run's: 0 only when every partition was read to
its end, the records add up, the reject policy holds over everything moved since the last full
refresh, and a validation finished and found the targets equal, with the same job and mapping
content as now. The stored verdict is what lets a later run continue whatever is unproven
(validate after a killed validation, judge the reject policy again after it was raised) instead
of saying "nothing to do".

Stages, in the order a job goes through them (`docs/verdicts.md`):
  loading     records are moving, or a run stopped before all partitions were read
  loaded      every partition was read and the accounting and reject policy held; not validated
  validating  a validation started and has not ended (a crash or SIGKILL leaves it here)
  differences the last validation found differences
  proven      the last validation found the targets equal; fingerprint says for which content
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from etl.engine.plan import PLAN_STATE_KEY, stored_partitions
from etl.engine.resources import JobResources
from etl.job import Job
from etl.records import Json
from etl.state.base import StateStore

VERDICT_STATE_KEY = "verdict"
"""Name of the state-store value that holds a job's verdict."""

LOADING, LOADED, VALIDATING, DIFFERENCES, PROVEN = "loading", "loaded", "validating", "differences", "proven"


@dataclass(frozen=True)
class Fingerprint:
    """Content hashes of what decides the targets' content: the job's settings and every mapping."""

    job: str
    """`Job.content_hash()`: sources, targets and tolerances as written."""
    mappings: dict[str, str] = field(default_factory=dict)
    """SHA-256 per `source.table` of the mapping file's text and the values its references had."""

    @classmethod
    def of(cls, job_hash: str, tables: Mapping[str, str]) -> Fingerprint:
        """`tables`: per `source.table`, the text that decides what it becomes
        (`JobResources.table_contents`)."""
        return cls(job_hash, {key: hashlib.sha256(text.encode("utf-8")).hexdigest()
                              for key, text in sorted(tables.items())})

    def changed_tables(self, earlier: Fingerprint) -> list[str]:
        """`source.table` of every table whose content differs from `earlier` (all when the job's
        own settings do)."""
        if self.job != earlier.job:
            return sorted(self.mappings)
        return sorted(key for key, digest in self.mappings.items()
                      if earlier.mappings.get(key) not in (None, digest))

    def changes(self, earlier: Fingerprint) -> list[str]:
        """What changed since `earlier` in what records already moved were made with, in words (empty
        when nothing did; a table new to the job, or one no longer in it, voids nothing)."""
        said = ["the job file's sources, targets or tolerances"] if self.job != earlier.job else []
        said += [f"the mapping of {key}" for key in sorted(self.mappings)
                 if earlier.mappings.get(key) not in (None, self.mappings[key])]
        return said

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Json) -> Fingerprint:
        value = value if isinstance(value, Mapping) else {}
        return cls(str(value.get("job", "")), dict(value.get("mappings") or {}))


@dataclass
class Verdict:
    """The stored verdict of one job (one per job, whatever shard or table a run covered)."""

    generation: str
    """Made anew by every full refresh; dead letters carry it, so validation reads only this
    generation's load rejects."""
    fingerprint: Fingerprint
    stage: str = LOADING
    message: str | None = None
    """What the last run that changed the stage said (why it failed, what differed)."""
    updated_at: str = ""
    proven_at: str | None = None
    accounting: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per `source.table`, as the last run that judged the job counted it: extracted, loaded,
    rejected, filtered since the last full refresh."""
    changed_after_loading: list[str] = field(default_factory=list)
    """Tables (`source.table`) whose settings or mapping changed after their records moved: what
    their checkpoints noted about the records belongs to the old mapping; validation judges them."""

    @property
    def proven(self) -> bool:
        return self.stage == PROVEN

    @classmethod
    def new(cls, fingerprint: Fingerprint) -> Verdict:
        return cls(uuid.uuid4().hex, fingerprint)

    def to_json(self) -> Json:
        value = asdict(self)
        value["fingerprint"] = self.fingerprint.to_json()
        return value

    @classmethod
    def from_json(cls, value: Json) -> Verdict | None:
        if not isinstance(value, Mapping) or not value.get("generation"):
            return None
        return cls(str(value["generation"]), Fingerprint.from_json(value.get("fingerprint")),
                   str(value.get("stage", LOADING)), value.get("message"), str(value.get("updated_at", "")),
                   value.get("proven_at"), dict(value.get("accounting") or {}),
                   list(value.get("changed_after_loading") or ()))


def load_verdict(store: StateStore, job: str) -> Verdict | None:
    return Verdict.from_json(store.get_value(job, VERDICT_STATE_KEY))


def save_verdict(store: StateStore, job: str, verdict: Verdict, stage: str,
                 message: str | None = None, accounting: dict[str, dict[str, int]] | None = None) -> None:
    """Move the verdict to `stage` and make it durable before the step it announces begins."""
    verdict.stage = stage
    verdict.message = message
    if accounting is not None:
        verdict.accounting.update(accounting)
    verdict.updated_at = datetime.now(UTC).isoformat()
    if stage == PROVEN:
        verdict.proven_at = verdict.updated_at
    store.set_value(job, VERDICT_STATE_KEY, verdict.to_json())


def fingerprint_of(job: Job, resources: JobResources) -> Fingerprint:
    """Load and compile every mapping of the job (a bad one stops the run even when nothing is
    left to move), and return the content the targets are made from."""
    for source, table in resources.source_tables():
        resources.mapping(source, table)
    return Fingerprint.of(job.content_hash(), resources.table_contents())


def loaded_tables(job: Job, resources: JobResources, store: StateStore) -> dict[str, int]:
    """The records extracted since the last full refresh, per `source.table` whose stored-plan
    partitions were all read to their end (a table not planned or not finished is left out)."""
    stored = store.get_value(job.name, PLAN_STATE_KEY)
    checkpoints = store.checkpoints(job.name)
    extracted = {}
    for source, table in resources.source_tables():
        requested = resources.table_config(source, table).partitions
        partitions = stored_partitions(stored, f"{source}.{table}", requested)
        if partitions is None or not all(p.id in checkpoints and checkpoints[p.id].done for p in partitions):
            continue
        extracted[f"{source}.{table}"] = sum(checkpoints[p.id].counts.get("extracted", 0) for p in partitions)
    return extracted


def load_counts(job: Job, resources: JobResources, store: StateStore) -> dict[str, int]:
    """`loaded_tables` without the tables an incremental run has changed since their load: what their
    load extracted is history, and validation holds the targets to the source's own count instead."""
    from etl.engine.changes import changed_since_load

    return {table: extracted for table, extracted in loaded_tables(job, resources, store).items()
            if not changed_since_load(store, job.name, table)}


def job_loaded(job: Job, resources: JobResources, store: StateStore) -> bool:
    """Every table of the job was planned and every one of its partitions read to its end."""
    return len(loaded_tables(job, resources, store)) == len(resources.source_tables())


def record_validation(job: Job, resources: JobResources, store: StateStore, ok: bool,
                      message: str | None) -> None:
    """`--validate-only` of the whole job: what it found becomes the job's verdict, but only for the
    content the job has now, once every partition was loaded, and once a run judged the load (a
    validation of half-loaded targets proves nothing about the job, and equal targets do not undo
    a reject policy, an accounting or a mapped-path failure: those leave the stage `loading`)."""
    verdict = load_verdict(store, job.name)
    if verdict is None or verdict.stage == LOADING or verdict.fingerprint != fingerprint_of(job, resources):
        return
    if not job_loaded(job, resources, store):
        return
    save_verdict(store, job.name, verdict, PROVEN if ok else DIFFERENCES, message)
