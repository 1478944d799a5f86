"""Opening what a job names: sources, sinks, compiled mappings, the state store, dead letters.

Connections are opened per partition run and closed after it (a psycopg connection must not be
shared by threads writing at once); compiled mappings are made once per process and shared.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl import sinks as sink_registry
from etl import sources as source_registry
from etl import state as state_registry
from etl.errors import JobFileError
from etl.job import Job
from etl.mapping import CompiledMapping, MappingSpec, compile_mapping, load_mapping, parse_mapping
from etl.mapping.dms_document import DmsDocument, TableColumns
from etl.records import TableSpec
from etl.sinks.base import Sink
from etl.sinks.deadletter import DeadLetterStore
from etl.sources.base import Source
from etl.state.base import StateStore

if TYPE_CHECKING:
    from etl.sinks.deadletter_seal import KeyProvider


@dataclass(frozen=True)
class MappingText:
    """A mapping file as read, with the values its `${env:..}`/`${secret:..}` references had.

    This is what travels to a Dask worker, which may have neither the job's folder nor its
    environment: parsing the text again with the same values gives the same mapping.
    """

    file: str
    text: str
    resolved: dict[str, str]
    dms: DmsTable | None = None
    """For a table an AWS DMS document maps: the table's columns and the target (the document
    alone does not say which columns a rule copies)."""

    def load(self) -> MappingSpec:
        if self.dms is not None:
            return DmsDocument(self.text, self.file).spec(self.dms.columns, self.dms.target)
        return parse_mapping(self.text, self.file, resolve=lambda text, where: self.resolved[text])


@dataclass(frozen=True)
class DmsTable:
    """A table selected by an AWS DMS document: its catalogue entry and the DynamoDB target."""

    columns: TableColumns
    target: str


class JobResources:
    def __init__(self, job: Job, mapping_texts: dict[str, MappingText] | None = None) -> None:
        """`mapping_texts`: mapping files already read (by `source.table`), e.g. on a Dask worker."""
        self.job = job
        self.mapping_texts: dict[str, MappingText] = dict(mapping_texts or {})
        self._specs: dict[str, MappingSpec] = {}
        self._mappings: dict[str, CompiledMapping] = {}
        self._lock = threading.RLock()
        self._expanded = mapping_texts is not None
        """Patterns and DMS selections are expanded on the driver; a worker gets the expanded job."""
        self.source_fits: dict[str, Any] = {}
        """`source.table` -> its mapping checked against the source (`etl.engine.mapcheck.SourceFit`)."""

    # -- configuration lookups ----------------------------------------------------------------
    def source_tables(self) -> list[tuple[str, str]]:
        """(source, table) of every table the job names, in job-file order; tables picked by
        patterns or an AWS DMS document are listed from their source once, when first asked."""
        self._expand()
        return [(name, table) for name, config in self.job.sources.items() for table in config.tables]

    def _expand(self) -> None:
        with self._lock:
            if not self._expanded:
                from etl.engine.selection import expand_tables

                expand_tables(self)
                self._expanded = True

    def table_config(self, source: str, table: str):
        if table not in self.job.sources[source].tables:
            self._expand()
        return self.job.sources[source].tables[table]

    def spec(self, source: str, table: str) -> MappingSpec:
        """The mapping file of a source table, loaded and validated (once)."""
        key = f"{source}.{table}"
        with self._lock:
            if key in self._specs:
                return self._specs[key]
            if key in self.mapping_texts:
                self._specs[key] = self.mapping_texts[key].load()
                return self._specs[key]
            path = self.job.resolve_path(self.table_config(source, table).mapping)
            interpolate = self.job.interpolate
            resolved: dict[str, str] = {}

            def resolve(text: str, where: str) -> str:
                resolved[text] = interpolate(text, where=where)
                return resolved[text]

            self._specs[key] = load_mapping(path, resolve=resolve)
            self.mapping_texts[key] = MappingText(str(path), path.read_text(encoding="utf-8"), resolved)
            return self._specs[key]

    def mapping(self, source: str, table: str) -> CompiledMapping:
        """The compiled mapping of a source table; every target it names must be in the job."""
        key = f"{source}.{table}"
        with self._lock:
            if key not in self._mappings:
                path = self.job.resolve_path(self.table_config(source, table).mapping)
                compiled = compile_mapping(self.spec(source, table))
                unknown = sorted({spec.target for spec in compiled.tables} - set(self.job.targets))
                if unknown:
                    raise JobFileError(
                        f"{path}: writes to target {', '.join(map(repr, unknown))}, which job "
                        f"{self.job.name} does not define",
                        hint="targets of the job: " + ", ".join(self.job.targets),
                    )
                self._mappings[key] = compiled
            return self._mappings[key]

    def table_contents(self) -> dict[str, str]:
        """Per `source.table` of the job: its settings (but its partition count), its mapping file's
        text and the values that file's references had, as one text to fingerprint. Call after
        every mapping was loaded."""
        contents = {}
        for source, table in self.source_tables():
            key = f"{source}.{table}"
            settings = self.table_config(source, table).model_dump(mode="json", exclude={"partitions"})
            mapping = self.mapping_texts[key]
            content = {"settings": settings, "mapping": mapping.text,
                       "resolved": sorted(mapping.resolved.items())}
            if mapping.dms is not None:  # the columns a DMS rule copies are part of what it means
                content["dms"] = [mapping.dms.target, mapping.dms.columns.columns, mapping.dms.columns.key]
            contents[key] = json.dumps(content, sort_keys=True)
        return contents

    def table_specs(self, target: str, keys: list[tuple[str, str]]) -> list[TableSpec]:
        """Every target table the given source tables write into `target`."""
        specs: dict[str, TableSpec] = {}
        for source, table in keys:
            for spec in self.mapping(source, table).tables:
                if spec.target == target:
                    specs.setdefault(spec.table, spec)
        return list(specs.values())

    # -- connections ---------------------------------------------------------------------------
    def open_source(self, name: str) -> Source:
        config = self.job.sources[name]
        return source_registry.module_for(config.type).open_source(name, config, self.job.batch.limits())

    def open_sink(self, name: str) -> Sink:
        config = self.job.targets[name]
        return sink_registry.module_for(config.type).open_sink(name, config)

    def open_sinks(self, tables: Sequence[TableSpec], stack: ExitStack,
                   empty_at_start: Mapping[str, frozenset[str]] | None = None) -> dict[str, Sink]:
        """A prepared sink for every target the tables belong to, closed when `stack` closes;
        `empty_at_start`: per target, what the run's own prepare returned (`Sink.prepare`)."""
        opened: dict[str, Sink] = {}
        for name in sorted({spec.target for spec in tables}):
            sink = self.open_sink(name)
            stack.callback(sink.close)
            sink.prepare([spec for spec in tables if spec.target == name],
                         empty_at_start=(empty_at_start or {}).get(name, frozenset()))
            opened[name] = sink
        return opened

    def open_state(self) -> StateStore:
        config = self.job.state
        return state_registry.module_for(config.type).open_store(config, base_dir=self.job.path.parent)

    @property
    def dead_letter_path(self) -> Path:
        return self.job.resolve_path(self.job.dead_letter.path)

    def dead_letter_keys(self) -> KeyProvider | None:
        """What seals and opens raw records in dead letters; None with `raw: omitted`."""
        config = self.job.dead_letter
        if config.kms_key is None and config.key_file is None:
            return None
        # cryptography (and, for KMS, boto3) only for a job whose dead letters keep raw records sealed
        from etl.sinks.deadletter_seal import KmsKeys, LocalKeys

        if config.kms_key is not None:
            return KmsKeys(config.kms_key, region=config.region, endpoint_url=config.endpoint_url,
                           allow_insecure=self.job.allow_insecure)
        if config.key_file is not None:
            return LocalKeys(self.job.resolve_path(config.key_file))
        return None

    def open_dead_letters(self, generation: str | None) -> DeadLetterStore:
        """This process's dead-letter store for one run (`generation`: the verdict's)."""
        keys = self.dead_letter_keys()
        sealer = None
        if keys is not None:
            from etl.sinks.deadletter_seal import Sealer  # imported by dead_letter_keys already

            sealer = Sealer(keys, job=self.job.name)
        return DeadLetterStore(self.dead_letter_path, job=self.job.name, generation=generation, sealer=sealer)

    def state_location(self) -> str:
        """Where the state is, for reports: a file path or the backend type (never a DSN)."""
        config = self.job.state
        path = getattr(config, "path", None)
        if path:
            return str(self.job.resolve_path(path))
        table = getattr(config, "table", None)
        return f"{config.type} state store" + (f", table {table}" if table else "")
