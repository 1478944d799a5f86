"""Validate a job's targets against its sources, table by target table, through etl.checksum.

The source side is the source read again and mapped again (so it is in the target model), each
row in the form its sink stores it (`Sink.stored_form`: what `read_back` gives for it once written);
the target side is the sink's `read_back`. Every source table that writes a target table feeds its
source side, so a table filled from two collections is compared against both.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from etl.checksum import (
    BucketChecksums,
    JobValidation,
    SourceCount,
    TableValidation,
    checksum_side,
    validate_table,
)
from etl.checksum.diff import RefusedRowsFound
from etl.checksum.results import json_value, key_text
from etl.engine import faults, validation_progress
from etl.engine.plan import TablePlan, select_tables
from etl.engine.planning import plan_tables
from etl.engine.refused import Refused
from etl.engine.resources import JobResources
from etl.engine.verdict import load_counts, load_verdict, record_validation
from etl.errors import EtlError
from etl.files import write_private
from etl.job import Job
from etl.mapping.compile import MappedBatch
from etl.mapping.reads import present
from etl.records import TableSpec
from etl.redact import redact
from etl.report.run_report import (
    BAD_FILE,
    DIFFERENCES,
    EXIT_CODES,
    FAILED,
    SUCCEEDED,
    RunReport,
    SourceCheck,
    TableCheck,
)
from etl.sinks.deadletter import load_rejects

log = logging.getLogger(__name__)

FIRST_KEYS = 5
"""Differing keys shown per table in the printed report (the files list them all)."""


@dataclass(frozen=True)
class _Target:
    spec: TableSpec
    tables: tuple[TablePlan, ...]
    """Source tables whose mappings write this target table."""
    stored: Callable[[dict], dict] | None = None
    """The sink's `stored_form` of the table: a mapped row as the target reads it back."""

    def rows(self, rows: Iterable[dict]) -> Iterable[dict]:
        """Mapped rows of this table in the target's stored form (what its `read_back` gives)."""
        return rows if self.stored is None else map(self.stored, rows)


def _mapped_batches(resources: JobResources, table: TablePlan,
                    counts: dict[str, SourceCount] | None = None) -> Iterator[MappedBatch]:
    """The source table read and mapped batch by batch, partition by partition (bounded memory).

    With `counts`, the table's completeness is recorded there once it was read to its end: the
    source's own count, taken before reading, beside the records read."""
    mapping = resources.mapping(table.source, table.table)
    source = resources.open_source(table.source)
    key_text = partial(source.key_text, table.table)
    try:
        counted = source.count(table.table) if counts is not None else None
        read = rejected = 0
        pending = [path for path in mapping.reads if not path.optional] if counts is not None else []
        for partition in table.partitions:
            for batch in source.read(partition, fields=mapping.fields):
                read += len(batch.records) + len(batch.rejects)
                if counts is not None:  # the first pass
                    validation_progress.advanced(validation_progress.SOURCE, table.key, batch.extracted)
                if pending and batch.records:
                    found = present(pending, batch.records)
                    pending = [path for path in pending if path.id not in found]
                mapped = mapping.apply(batch.records, key_text, source_table=table.table)
                rejected += len(batch.rejects) + len(mapped.rejects)
                yield mapped
        if counts is not None:
            unseen = [f"{path.where}: {path.doc_path}: `{path.text}`" for path in pending] if read else []
            counts[table.key] = SourceCount(table.key, counted, read, unseen=unseen, rejected=rejected)
    finally:
        source.close()


def _source_rows(resources: JobResources, target: _Target, refused: Refused) -> Iterator[dict]:
    """Every row the sources map into the target table, but those of records it refused at load."""
    wanted = (target.spec.target, target.spec.table)
    for table in target.tables:
        for mapped in _mapped_batches(resources, table):
            rows = mapped.rows.get(wanted)
            if rows is not None:
                yield from target.rows(refused.rows(*wanted, rows))


def _source_checksums(
    resources: JobResources, targets: list[_Target], counts: dict[str, SourceCount], refused: Refused
) -> dict[tuple[str, str], BucketChecksums]:
    """Pass 1 of every target table's source side, each source table read and mapped only once.

    One mapping pass makes the rows of all the tables a source table writes; hashing them all from
    that pass, instead of reading and mapping the source again for each target table, divides the
    source-side work by the number of target tables (4 in the demo)."""
    settings = resources.job.validation
    sums = {(target.spec.target, target.spec.table): BucketChecksums.for_table(
        target.spec, buckets=settings.buckets, tolerances=settings.tolerances) for target in targets}
    by_key = {(target.spec.target, target.spec.table): target for target in targets}
    tables = {(table.source, table.table): table for target in targets for table in target.tables}
    for table in tables.values():
        for mapped in _mapped_batches(resources, table, counts):
            for wanted, rows in mapped.rows.items():
                if wanted in sums:
                    sums[wanted].add_all(by_key[wanted].rows(refused.rows(*wanted, rows)))
    return sums


def _target_rows(resources: JobResources, spec: TableSpec, announce: bool = False) -> Iterator[dict]:
    sink = resources.open_sink(spec.target)
    settings = resources.job.validation
    try:
        rows = sink.read_back(spec, segments=settings.segments, consistent=settings.consistent_reads)
        if announce:  # the first pass
            name = f"{spec.target}.{spec.table}"
            rows = validation_progress.counted(rows, validation_progress.TARGET, name)
        yield from rows
    finally:
        sink.close()


def _target_side(resources: JobResources, spec: TableSpec, stack: ExitStack):
    """The target table as a validation side: the sink's own checksum side when it has one (hashing
    in SQL where it can, `read_back`'s rows otherwise), else its `read_back` rows."""
    sink = resources.open_sink(spec.target)
    stack.callback(sink.close)
    offer = getattr(sink, "checksum_side", None)
    return offer(spec) if offer is not None else partial(_target_rows, resources, spec)


def _pushed_source_side(resources: JobResources, target: _Target, refused: Refused, stack: ExitStack):
    """The source side hashed where the source lives, or None. Only for a target table filled from one
    source table whose mapping copies columns (`CompiledMapping.copies`), by a source that can hash
    those columns itself with the very values the mapping would make (`checksum_side`), no record
    refused at load (those are left out of the source side), and every column hashed there: then the
    source's rows are the mapped rows, and the comparison is the one the Python path makes."""
    if len(target.tables) != 1 or refused.keys.get(f"{target.spec.target}.{target.spec.table}"):
        return None
    table = target.tables[0]
    copies = resources.mapping(table.source, table.table).copies(target.spec.target, target.spec.table)
    if copies is None:
        return None
    source = resources.open_source(table.source)
    stack.callback(source.close)
    offer = getattr(source, "checksum_side", None)
    side = offer(table.table, copies, target.spec.key) if offer is not None else None
    tolerances = resources.job.validation.tolerances
    if side is None or not side.pushes_down(target.spec, tolerances):
        return None
    return _StoredRows(side, target)


class _StoredRows:
    """A source side hashed where it lives, whose rows (read for the drill-down) are given in the
    target's stored form, as the Python path's are (`_Target.rows`)."""

    def __init__(self, side, target: _Target) -> None:
        self.side = side
        self.target = target

    def __call__(self) -> Iterable[dict]:
        return self.target.rows(self.side())

    def bucket_checksums(self, *args, **options):
        return self.side.bucket_checksums(*args, **options)

    def native_hashing(self, *args):
        return self.side.native_hashing(*args)

    def rows_in_buckets(self, *args, **options) -> Iterable[dict]:
        return self.target.rows(self.side.rows_in_buckets(*args, **options))

    def range_kind(self, *args, **options):
        return self.side.range_kind(*args, **options)

    def key_span(self, *args, **options):
        return self.side.key_span(*args, **options)

    def key_quantiles(self, *args):
        return self.side.key_quantiles(*args)

    def range_checksums(self, *args, **options):
        return self.side.range_checksums(*args, **options)

    def rows_in_ranges(self, *args) -> Iterable[dict]:
        return self.target.rows(self.side.rows_in_ranges(*args))


def _targets(resources: JobResources, only: Sequence[str] | None, keep_open: ExitStack) -> list[_Target]:
    pairs = select_tables(resources.source_tables(), only)
    planned, _ = plan_tables(resources, pairs, keep_open=keep_open)
    grouped: dict[tuple[str, str], tuple[TableSpec, list[TablePlan]]] = {}
    for table in planned:
        for spec in resources.mapping(table.source, table.table).tables:
            entry = grouped.setdefault((spec.target, spec.table), (spec, []))
            entry[1].append(table)
    stored: dict[tuple[str, str], Callable[[dict], dict] | None] = {}
    for name in sorted({spec.target for spec, _ in grouped.values()}):
        sink = resources.open_sink(name)
        try:
            for spec, _ in grouped.values():
                if spec.target == name:
                    stored[(spec.target, spec.table)] = sink.stored_form(spec)
        finally:
            sink.close()
    return [_Target(spec, tuple(tables), stored[key]) for key, (spec, tables) in grouped.items()]


def validate_job(job: Job, only: Sequence[str] | None = None, *,
                 resources: JobResources | None = None, generation: str | None = None) -> JobValidation:
    """Compare every target table of `job` (or of the source tables in `only`) with its source.

    `generation`: the job's verdict generation; the records its loads saw refused by a target
    (dead letters of that generation) are left out of that target table's source side and counted
    as rejected (`etl.engine.refused`). None reads it from the state store."""
    resources = resources or JobResources(job)
    refused = _refused(resources, generation)
    # The planning sources stay open until both passes have read every partition: a PostgreSQL
    # partition imports the snapshot they exported, which ends when they close.
    planning = ExitStack()
    targets = _targets(resources, only, planning)

    started = time.monotonic()
    with planning, ExitStack() as stack:
        target_sides = {(target.spec.target, target.spec.table): _target_side(resources, target.spec, stack)
                        for target in targets}
        pushed = {(target.spec.target, target.spec.table): found for target in targets
                  if (found := _pushed_source_side(resources, target, refused, stack)) is not None}
        counts: dict[str, SourceCount] = {}
        tables = _validate(resources, targets, target_sides, pushed, refused, counts, started)
    for target, result in zip(targets, tables, strict=True):
        result.rejected = refused.count(target.spec.target, target.spec.table) + sum(
            counts[table.key].rejected for table in target.tables if table.key in counts)
    return JobValidation(tables, list(counts.values()))


def _announced(resources: JobResources, spec: TableSpec, side):
    """Pass 1 of a target side read back here counts its rows in the validation's progress."""
    return partial(_target_rows, resources, spec, True) if isinstance(side, partial) else side


def _validate(resources: JobResources, targets: list[_Target], target_sides: dict, pushed: dict,
              refused: Refused, counts: dict[str, SourceCount], started: float) -> list[TableValidation]:
    """Both passes of every target table. A table whose source side is `pushed` down is compared
    where both sides live (key ranges when both are PostgreSQL tables with one integer key,
    docs/checksum.md §10); the others are hashed here from the sources, each source table read once
    for all its target tables, beside their targets' checksums."""
    settings = resources.job.validation
    python_side = [target for target in targets if (target.spec.target, target.spec.table) not in pushed]

    def one(target: _Target) -> TableValidation:
        key = (target.spec.target, target.spec.table)
        result = where_both_live(target) if key in pushed else None
        hashed_there = result is not None
        if result is None:
            if key in source_sums:
                sums, target_checksums = source_sums[key], target_sums[key].result()
            else:  # pushed down, but the source holds rows the mapping refuses
                sums, target_checksums = _source_checksums(resources, [target], counts, refused)[key], None
            result = validate_table(
                target.spec,
                lambda: _source_rows(resources, target, refused),
                target_sides[key],
                buckets=settings.buckets, tolerances=settings.tolerances,
                max_differences=settings.max_differences,
                source_checksums=sums, target_checksums=target_checksums,
            )
        log.info("validated %s.%s%s: %s rows, %s differences in %.1f s", target.spec.target,
                 target.spec.table, " (hashed where both sides live)" if hashed_there else "",
                 result.rows_source, result.difference_count, time.monotonic() - started)
        return result

    def where_both_live(target: _Target) -> TableValidation | None:
        """The table compared by its two servers, or None when its source side cannot stand for the
        mapped rows after all: a row holds a value the mapping refuses (found while hashing)."""
        key = (target.spec.target, target.spec.table)
        side = pushed[key]
        table = target.tables[0]
        try:
            result = validate_table(target.spec, side, target_sides[key], buckets=settings.buckets,
                                    tolerances=settings.tolerances, max_differences=settings.max_differences)
        except RefusedRowsFound as found:
            log.info("%s; comparing %s.%s from the mapped rows", found, *key)
            return None
        if table.key not in counts:
            # The source server counted its rows in the scan that hashed them: every row falls in
            # one bucket (hash buckets, or key ranges unbounded at both ends), so no row escapes it.
            counts[table.key] = SourceCount(table.key, result.rows_source, result.rows_source)
        # hashed by the servers: the rows each side holds are known once they have answered
        validation_progress.advanced(validation_progress.SOURCE, table.key, result.rows_source)
        validation_progress.advanced(validation_progress.TARGET, f"{key[0]}.{key[1]}", result.rows_target)
        return result

    with ThreadPoolExecutor(max(1, resources.job.parallelism), thread_name_prefix="validate") as pool:
        # Pass 1: the sources (each read once for all its target tables) beside every target's read-back.
        pending_sources = pool.submit(_source_checksums, resources, python_side, counts, refused)
        target_sums = {}
        for target in python_side:
            key = (target.spec.target, target.spec.table)
            side = _announced(resources, target.spec, target_sides[key])
            target_sums[key] = pool.submit(checksum_side, side, target.spec, buckets=settings.buckets,
                                           tolerances=settings.tolerances)
        source_sums = pending_sources.result()
        for (target_name, table_name), future in target_sums.items():
            if not isinstance(target_sides[(target_name, table_name)], partial):  # hashed by the server
                validation_progress.advanced(validation_progress.TARGET, f"{target_name}.{table_name}",
                                             sum(future.result().counts))
            future.result()
        # Pass 2 (drill-down into mismatched buckets only) reads the sides again for those buckets.
        return list(pool.map(one, targets))


def _refused(resources: JobResources, generation: str | None) -> Refused:
    """What the targets refused at load in this generation of the job (nothing when it has none)."""
    job = resources.job
    if generation is None:
        store = resources.open_state()
        try:
            verdict = load_verdict(store, job.name)
        finally:
            store.close()
        if verdict is None:
            return Refused()
        generation = verdict.generation
    return Refused(load_rejects(resources.dead_letter_path, job=job.name, generation=generation))


def _describe(difference) -> str:
    text = f"{difference.kind}: {key_text(difference.key)}"
    if difference.fields:
        text += " (" + ", ".join(f.field for f in difference.fields) + ")"
    return text


def checks_of(validation: JobValidation, folder: Path, started_at: datetime) -> list[TableCheck]:
    """Report lines of a validation; every differing table's full list is written to a JSON file."""
    checks = []
    stamp = started_at.strftime("%Y%m%dT%H%M%S")
    for table in validation.tables:
        check = TableCheck(target=table.target, table=table.table, ok=table.ok, rows_source=table.rows_source,
                           rows_target=table.rows_target, missing=table.missing, extra=table.extra,
                           changed=table.changed, duplicates=table.duplicates,
                           unresolved_buckets=table.unresolved_buckets, rejected=table.rejected,
                           first_keys=[_describe(d) for d in table.differences[:FIRST_KEYS]],
                           tolerances={k: json_value(v) for k, v in table.tolerances.items()})
        if not table.ok:
            path = folder / f"differences-{table.target}.{table.table}-{stamp}.json"
            text = redact(json.dumps(table.to_dict(), indent=2, default=str))
            write_private(path, text + "\n")
            check.differences_file = str(path)
        checks.append(check)
    return checks


def source_checks_of(validation: JobValidation, extracted: dict[str, int]) -> list[SourceCheck]:
    """Report lines of the sources' completeness; `extracted` (per `source.table` fully loaded) is set
    on the validation's counts first, so `validation.ok` also holds the load to the source's count."""
    checks = []
    for source in validation.sources:
        source.extracted = extracted.get(source.table)
        checks.append(SourceCheck(source.table, source.counted, source.read, source.extracted, source.ok,
                                  source.problem()))
    return checks


def verdict_message(validation: JobValidation) -> str:
    """Why a validation is not a proof, in one line."""
    said = []
    differing = [f"{t.target}.{t.table}" for t in validation.tables if not t.ok]
    if differing:
        said.append("validation found differences in " + ", ".join(differing))
    said += [problem for source in validation.sources if (problem := source.problem())]
    return "; ".join(said)


def validation_report(job: Job, only: Sequence[str] | None = None) -> RunReport:
    """`--validate-only`: validate, then report (status `differences`, exit 1, when any table differs).

    A validation of the whole job is recorded as the job's verdict (`etl.engine.verdict`). The
    report is saved whatever the ending, a crash included."""
    started_at = datetime.now(UTC)
    started = time.monotonic()
    resources = JobResources(job)
    folder = job.resolve_path(job.report.dir)
    report = RunReport(job=job.name, mode="validate", status=SUCCEEDED, started_at=started_at.isoformat(),
                       finished_at="", seconds=0.0, options={"only": list(only or ())},
                       state=resources.state_location())
    try:
        faults.reach("validate")
        validation = validate_job(job, only, resources=resources)
        faults.reach("validated")
        report.validation = checks_of(validation, folder, started_at)
        store = resources.open_state()
        try:
            report.sources = source_checks_of(validation, load_counts(job, resources, store))
            if not validation.ok:
                report.status = DIFFERENCES
                report.message = verdict_message(validation)
                report.hint = ("the first differing keys are listed below; the files named hold every "
                               "difference found")
            if not only:
                record_validation(job, resources, store, validation.ok, report.message)
        finally:
            store.close()
    except BaseException as error:
        report.status = BAD_FILE if isinstance(error, EtlError) and error.exit_code == EXIT_CODES[BAD_FILE] \
            else FAILED
        report.message = redact(error.message if isinstance(error, EtlError)
                                else f"validation failed: {type(error).__name__}: {error}")
        _close(report, started, folder)
        raise
    _close(report, started, folder)
    return report


def _close(report: RunReport, started: float, folder: Path) -> None:
    report.finished_at = datetime.now(UTC).isoformat()
    report.seconds = round(time.monotonic() - started, 3)
    report.save(folder)
