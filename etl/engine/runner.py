"""Run a job end to end: lease, plan, execute the partitions, check the accounting, validate, report.

A run always continues from the checkpoints of the previous one (a killed or failed run resumes
by itself; `--resume` says so explicitly); a finished job does nothing unless `--full-refresh`
clears its state first. Once records start to move, the run ends with a saved report whose
status and exit code say what happened.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from etl.engine import faults
from etl.engine.accounting import Counts, check_accounting
from etl.engine.command_line import rerun_command
from etl.engine.control import ProgressCallback, RunControl
from etl.engine.execution import Execution
from etl.engine.gc_pacing import fewer_collections
from etl.engine.lease import DEFAULT_TTL_SECONDS, LeaseKeeper
from etl.engine.ledger import ledger_of
from etl.engine.local import LocalExecutor
from etl.engine.mapcheck import check_source_table, sample_size
from etl.engine.plan import Plan, Shard, TablePlan
from etl.engine.planning import make_plan
from etl.engine.resources import JobResources
from etl.engine.seen import judge_reads, present_of
from etl.engine.signals import stop_on_signals
from etl.engine.turns import Turn
from etl.engine.verdict import (
    LOADED,
    LOADING,
    PROVEN,
    VALIDATING,
    Fingerprint,
    Verdict,
    fingerprint_of,
    job_loaded,
    load_counts,
    load_verdict,
    save_verdict,
)
from etl.engine.worker import DeadLetters, PartitionOutcome, PartitionWork, PartitionWorker, table_key
from etl.errors import EtlError, JobFileError
from etl.job import Job
from etl.redact import redact
from etl.report.run_report import (
    BAD_FILE,
    DIFFERENCES,
    EXIT_CODES,
    FAILED,
    NOTHING_TO_DO,
    STOPPED,
    SUCCEEDED,
    UNPROVEN,
    RunReport,
    TableReport,
)
from etl.sources.base import Source
from etl.state.base import Checkpoint, StateStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """The command's options, for library callers."""

    resume: bool = False
    """Continue after the checkpoints (what a run does anyway; says so explicitly)."""
    full_refresh: bool = False
    """Forget the checkpoints (and re-plan) and move every record again."""
    only: tuple[str, ...] = ()
    """Source tables to run (`table` or `source.table`); empty: all."""
    limit: int | None = None
    """A quick try: at most this many records per source table, no checkpoint kept."""
    shard: Shard | None = None
    validate: bool | None = None
    """Validate the targets after the run; None: as the job's `validation.after_run` says."""
    lease_ttl: float = DEFAULT_TTL_SECONDS
    prefetch: int = 2
    """Batches a partition reads ahead while the current one is written."""
    incremental: bool = False
    """Apply what changed at the sources since the last run, then validate (docs/cutover.md)."""
    follow: bool = False
    """With `incremental`: keep applying changes until stopped (Ctrl-C, SIGTERM); ends unproven."""
    poll_seconds: float = 5.0
    """With `follow`: how long to wait for changes once every table has caught up."""
    on_plan: Callable[[Plan], None] | None = field(default=None, compare=False)
    on_progress: ProgressCallback | None = field(default=None, compare=False)


def run_job(job: Job, options: RunOptions | None = None) -> RunReport:
    """Run `job`; returns the report (`report.raise_for_status()` raises when it did not succeed).

    Raises EtlError only for what stops a run before records move: an unreachable state store, a
    lease held by another run, a bad mapping file, a source that cannot be planned, a target table
    that cannot be created. From then on the run ends with a saved report. Whatever the ending,
    a crash included, a report is saved before this returns or raises.
    """
    options = options or RunOptions()
    if options.resume and options.full_refresh:
        raise EtlError("--resume and --full-refresh contradict each other", hint="give one of them")
    _check_incremental_options(job, options)
    started_at = datetime.now(UTC)
    started = time.monotonic()
    resources = JobResources(job)
    control = RunControl(
        max_in_flight=max(1, job.parallelism) * (options.prefetch + 1),
        reject_policy=job.max_rejects, limit=options.limit, on_progress=options.on_progress,
    )
    lease_name = job.name if options.shard is None else f"{job.name}#shard{options.shard.label}"
    try:
        store = resources.open_state()
        try:
            lost = lambda message: control.stop("failure", message)  # noqa: E731
            with LeaseKeeper(store, lease_name, ttl=options.lease_ttl, on_lost=lost), ExitStack() as planning:
                report = _run_leased(job, options, resources, store, control, started_at, started, planning)
        finally:
            store.close()
    except BaseException as error:
        _save(job, _failure_report(job, options, resources, started_at, started, error))
        raise
    _save(job, report)
    return report


def _save(job: Job, report: RunReport) -> None:
    if job.report.dir:
        report.save(job.resolve_path(job.report.dir))


def _failure_report(job: Job, options: RunOptions, resources: JobResources, started_at: datetime,
                    started: float, error: BaseException) -> RunReport:
    """The report of a run that ended by an exception: what it was, never a traceback or a secret."""
    report = _new_report(job, options, resources, started_at)
    if isinstance(error, EtlError):
        report.status = BAD_FILE if error.exit_code == EXIT_CODES[BAD_FILE] else FAILED
        report.message, report.hint = redact(error.message), error.hint
    elif isinstance(error, KeyboardInterrupt):
        report.status, report.message = STOPPED, "interrupted"
    else:
        report.status = FAILED
        report.message = redact(f"unexpected {type(error).__name__}: {error}")
        report.hint = ("this is a defect: keep the state store, the dead letters and this report, "
                       "and report it")
    return _finish(report, started)


def _new_report(job: Job, options: RunOptions, resources: JobResources, started_at: datetime) -> RunReport:
    return RunReport(job=job.name, mode="run", status=SUCCEEDED, started_at=started_at.isoformat(),
                     finished_at="", seconds=0.0, shard=options.shard.label if options.shard else None,
                     options=_options_dict(options), dead_letters=str(resources.dead_letter_path),
                     state=resources.state_location())


def _run_leased(job: Job, options: RunOptions, resources: JobResources, store: StateStore,
                control: RunControl, started_at: datetime, started: float, planning: ExitStack) -> RunReport:
    """`planning` closes the sources opened to plan: not before every partition has run, so each
    imports the snapshot exported at plan time (PostgreSQL) instead of taking its own."""
    quick_try = options.limit is not None
    whole_job = options.shard is None and not options.only
    if options.incremental:
        return _run_incremental(job, options, resources, store, control, started_at, started, planning)
    if options.full_refresh and not quick_try and whole_job:
        store.clear(job.name)
    fingerprint = fingerprint_of(job, resources)
    verdict = None if quick_try else _verdict(job, store, fingerprint)
    if job.incremental and not quick_try:
        _keep_positions(job, resources, store, options)
    plan = make_plan(job, resources, store, only=options.only, shard=options.shard,
                     replan=options.full_refresh and whole_job,
                     keep=not quick_try, keep_open=planning, defer_samples=True)
    if options.full_refresh and not quick_try and not whole_job:
        _restart_partitions(store, job.name, plan)
    if options.on_plan is not None:
        options.on_plan(plan)
    checkpoints = {} if quick_try else store.checkpoints(job.name)
    works, finished = _works(plan, checkpoints)
    _check_samples(resources, plan, works)
    report = _new_report(job, options, resources, started_at)
    if not works and verdict is not None and verdict.proven:
        return _nothing_to_do(report, job, verdict, plan, checkpoints, started)

    execution = Execution()
    if works:
        if verdict is not None:
            save_verdict(store, job.name, verdict, LOADING)
        execution = _execute(job, options, resources, store, control, plan, works, finished, checkpoints,
                             quick_try, verdict.generation if verdict is not None else None)
    planning.close()
    if not quick_try:
        checkpoints = store.checkpoints(job.name)  # what failed partitions committed before they failed
    report.tables = _table_reports(plan, checkpoints, execution.outcomes)
    _judge(report, job, execution, control)
    for outcome in execution.outcomes:
        if outcome.fit is not None:
            resources.source_fits.setdefault(outcome.table, outcome.fit)
    # Mapped paths no record had, and the start-of-run sample warnings (etl/engine/seen.py).
    judge_reads(report, plan, resources, checkpoints, execution.outcomes,
                f"python -m etl.run {_shown_path(job.path)}",
                skip=verdict.changed_after_loading if verdict is not None else ())
    if report.status != SUCCEEDED:
        if verdict is not None:
            save_verdict(store, job.name, verdict, LOADING, report.message, _accounting(report))
        return _finish(report, started)
    if quick_try:
        report.status = UNPROVEN
        report.message = (f"a quick try of at most {options.limit} records per table: nothing is proven and "
                          "no checkpoint was kept")
        report.hint = f"run `python -m etl.run {_shown_path(job.path)}` to move and prove every record"
        return _finish(report, started)
    assert verdict is not None
    return _prove(report, job, options, resources, store, verdict, started_at, started)


def _prove(report: RunReport, job: Job, options: RunOptions, resources: JobResources, store: StateStore,
           verdict: Verdict, started_at: datetime, started: float) -> RunReport:
    """After a load that adds up: record it, then validate (unless this run may not, or a shard that
    is not the last to finish leaves the proof to the one that is)."""
    loaded = job_loaded(job, resources, store)
    save_verdict(store, job.name, verdict, LOADED if loaded else LOADING, accounting=_accounting(report))
    validate = job.validation.after_run if options.validate is None else options.validate
    if not validate:
        report.status = UNPROVEN
        report.message = "the records moved and add up, but this run did not validate the targets"
        report.hint = (f"run `python -m etl.run {_shown_path(job.path)} --validate-only` to prove them "
                       "(validation.after_run is false)")
        return _finish(report, started)
    if options.shard is not None and not loaded:
        report.message = (f"shard {options.shard.label} done; the job is validated by the shard that "
                          "finishes last")
        log.info(report.message)
        return _finish(report, started)
    # a shard that finds every partition done validates the whole job, as the whole job would
    return _validate(report, job, options, resources, store, verdict, not options.only, started_at, started)


def _restart_partitions(store: StateStore, job_name: str, plan: Plan) -> None:
    """Every partition of `plan` starts again from its beginning (a partial full refresh, a re-read)."""
    for partition in plan.partitions():
        store.save_checkpoint(job_name, Checkpoint(partition=partition.id, counts={}, extra={}))


def _nothing_to_do(report: RunReport, job: Job, verdict: Verdict, plan: Plan,
                   checkpoints: dict[str, Checkpoint], started: float) -> RunReport:
    """Nothing left to move and an earlier run proved the same content: the report restates that proof."""
    report.status = NOTHING_TO_DO
    report.message = (f"job {job.name} has already finished and its targets were proven equal to its "
                      f"sources at {verdict.proven_at}")
    report.hint = (f"changes made at the sources since then are applied by `python -m etl.run "
                   f"{_shown_path(job.path)} --incremental`" if job.incremental
                   else "run with --full-refresh to move every record again")
    report.tables = _table_reports(plan, checkpoints, [])
    return _finish(report, started)


def _execute(job: Job, options: RunOptions, resources: JobResources, store: StateStore, control: RunControl,
             plan: Plan, works: list[PartitionWork], finished: list[str], checkpoints: dict[str, Checkpoint],
             quick_try: bool, generation: str | None, marks: dict[str, str] | None = None) -> Execution:
    """Run `works`; `marks`: per `source.table` read again by an incremental run, the mark its ledger
    entries get (etl/engine/changes.py)."""
    totals = Counts()
    for work in works:
        totals.add(work.counts)
    for partition_id in finished:
        totals.add(_counts_of(checkpoints[partition_id]))
    control.totals = totals
    empty = _prepare_targets(resources, plan)
    works = [replace(work, empty_at_start=empty) for work in works]
    with ExitStack() as stack:
        dead_letters = resources.open_dead_letters(generation)
        stack.callback(dead_letters.close)
        stack.enter_context(stop_on_signals(control))
        if job.executor.type == "dask" and not quick_try:
            from etl.engine.dask import DaskExecutor

            assert job.executor.scheduler is not None  # validated: type dask needs a scheduler
            executor = DaskExecutor(job.executor.scheduler)
            return executor.run(job, works, control, prefetch=options.prefetch, resources=resources,
                                marks=marks or {})
        if job.executor.processes and not quick_try:  # --limit takes exact shares on threads below
            from etl.engine.processes import ProcessExecutor

            return ProcessExecutor(job.parallelism).run(job, works, control, prefetch=options.prefetch,
                                                        resources=resources, marks=marks or {})
        run_one = _local_runner(job, resources, store, dead_letters, control, options, quick_try, marks or {})
        with fewer_collections():
            return LocalExecutor(job.parallelism).run(works, run_one, control)


def _validate(report: RunReport, job: Job, options: RunOptions, resources: JobResources, store: StateStore,
              verdict: Verdict, whole_job: bool, started_at: datetime, started: float) -> RunReport:
    """Validate the job's targets (the tables of `--only`, else all) and record what it proved.

    The verdict says `validating` while it runs: a crash or SIGKILL leaves it there, and the next
    run validates again instead of finding nothing to do."""
    from etl.engine.validation import checks_of, source_checks_of, validate_job, verdict_message

    only = list(options.only) if not whole_job else None
    if whole_job:
        save_verdict(store, job.name, verdict, VALIDATING)
    try:
        faults.reach("validate")
        validation = validate_job(job, only=only, resources=resources, generation=verdict.generation)
        faults.reach("validated")
    except Exception as error:  # the report names it; the verdict stays `validating`
        text = error.message if isinstance(error, EtlError) else f"{type(error).__name__}: {error}"
        report.status = FAILED
        report.message = redact(f"the records moved, but validation could not run: {text}")
        again = f"run `python -m etl.run {_shown_path(job.path)}` again to validate"
        report.hint = error.hint if isinstance(error, EtlError) and error.hint else again
        return _finish(report, started)
    report.validation = checks_of(validation, resources.job.resolve_path(job.report.dir), started_at)
    report.sources = source_checks_of(validation, load_counts(job, resources, store))
    if not validation.ok:
        report.status = DIFFERENCES
        report.message = verdict_message(validation)
        report.hint = "see the first differing keys below and the full lists in the files named"
        if whole_job:
            save_verdict(store, job.name, verdict, DIFFERENCES, report.message)
        return _finish(report, started)
    if whole_job:
        save_verdict(store, job.name, verdict, PROVEN)
    return _finish(report, started)


def _verdict(job: Job, store: StateStore, fingerprint: Fingerprint) -> Verdict:
    """The job's stored verdict, checked against the content the job has now.

    Content that changed after records moved voids what was proven. While loading is unfinished it
    also means the targets would mix two versions: that run is refused (exit 2). Once loading had
    finished, the targets are validated again against the content as it is now."""
    verdict = load_verdict(store, job.name)
    if verdict is None:
        verdict = Verdict.new(fingerprint)
        if store.checkpoints(job.name):  # state from before verdicts were kept: prove it again
            log.info("job %s has checkpoints but no recorded verdict; it is validated again", job.name)
        save_verdict(store, job.name, verdict, LOADING)
        return verdict
    changes = fingerprint.changes(verdict.fingerprint)
    if changes and verdict.stage == LOADING and store.checkpoints(job.name):
        raise JobFileError(
            f"job {job.name}: {', '.join(changes)} changed since its records started moving "
            f"(last recorded {verdict.updated_at}); the targets hold records made by the previous version",
            hint=f"run `python -m etl.run {_shown_path(job.path)} --full-refresh` to move every record again "
                 "with the current files, or put the previous version back to continue",
        )
    if fingerprint == verdict.fingerprint:
        return verdict
    stage, message, stale = verdict.stage, verdict.message, verdict.changed_after_loading
    if changes and stage != LOADING:  # loading had finished: validate against the current files
        stage, message = LOADED, f"changed since the last run: {', '.join(changes)}"
        log.warning("job %s: %s; the targets are validated again", job.name, message)
        stale = sorted({*stale, *fingerprint.changed_tables(verdict.fingerprint)})
    verdict = Verdict(verdict.generation, fingerprint, verdict.stage, verdict.message, verdict.updated_at,
                      accounting=verdict.accounting, changed_after_loading=stale)
    save_verdict(store, job.name, verdict, stage, message)
    return verdict


def _check_incremental_options(job: Job, options: RunOptions) -> None:
    """Option combinations an incremental job or run cannot honour (exit 2)."""
    if options.follow and not options.incremental:
        raise JobFileError("--follow keeps an incremental run going; it needs --incremental")
    if options.incremental:
        given = (("--full-refresh", options.full_refresh), ("--limit", options.limit),
                 ("--shard", options.shard))
        clashing = [name for name, value in given if value]
        if clashing:
            raise JobFileError(f"--incremental cannot be combined with {', '.join(clashing)}",
                               hint="an incremental run applies every change of the tables it runs, in one "
                                    "process")
    elif job.incremental and options.shard is not None:
        raise JobFileError(
            f"job {job.name} keeps change positions (`incremental: true`): its full load cannot run in "
            "shards",
            hint="each table's change position is taken once, before any of its partitions is read; run the "
                 "full load without --shard (parallelism and the Dask executor still apply)")


def _keep_positions(job: Job, resources: JobResources, store: StateStore, options: RunOptions) -> None:
    """Before planning: the change position of every table whose load starts now (a table already
    partly loaded without one cannot get one any more: changes made since its load began would be lost)."""
    from etl.engine.changes import position_key, take_positions
    from etl.engine.plan import select_tables

    pairs = select_tables(resources.source_tables(), options.only)
    if options.full_refresh:
        for source, table in pairs:
            store.set_value(job.name, position_key(f"{source}.{table}"), None)
            store.ledger_clear(job.name, f"{source}.{table}")
        fresh = pairs
    else:
        started = {partition.split("#", 1)[0] for partition in store.checkpoints(job.name)}
        fresh = [(source, table) for source, table in pairs if f"{source}.{table}" not in started]
    take_positions(job.name, resources, store, fresh)


def _run_incremental(job: Job, options: RunOptions, resources: JobResources, store: StateStore,
                     control: RunControl, started_at: datetime, started: float,
                     planning: ExitStack) -> RunReport:
    """Apply what changed since the stored positions (re-read the tables whose sources cannot tell),
    then validate whole tables (etl/engine/incremental.py)."""
    from etl.engine import incremental

    shown = _shown_path(job.path)
    ready = incremental.check_preconditions(job, resources, store, options.only, shown)
    report = _new_report(job, options, resources, started_at)
    report.mode = "incremental"
    verdict = ready.verdict
    incremental.mark_verdict_changing(store, job.name, verdict)
    outcomes, execution = incremental.apply_changes(
        job, resources, store, control, ready.changing, generation=verdict.generation, follow=options.follow,
        poll_seconds=options.poll_seconds)
    report.tables = incremental.change_reports(outcomes)
    if ready.rereading and not control.stopping and not execution.errors:
        report.tables += _reread(job, options, resources, store, control, ready.rereading, verdict, execution,
                                 planning)
    planning.close()
    _judge(report, job, execution, control)
    _judge_changes_policy(report, job, store, [f"{source}.{table}" for source, table, _ in ready.changing])
    if options.follow and report.status == STOPPED:
        report.status = UNPROVEN
        report.message = ("following stopped: the targets hold every change applied until then, but nothing "
                          "proves them equal")
        report.hint = f"run `python -m etl.run {shown} --incremental` to catch up and validate"
    if report.status != SUCCEEDED:
        save_verdict(store, job.name, verdict, LOADED, report.message)
        return _finish(report, started)
    if not (job.validation.after_run if options.validate is None else options.validate):
        report.status = UNPROVEN
        report.message = "the changes are applied, but this run did not validate the targets"
        report.hint = f"run `python -m etl.run {shown} --validate-only` to prove them"
        return _finish(report, started)
    return _validate(report, job, options, resources, store, verdict, not options.only, started_at, started)


def _judge_changes_policy(report: RunReport, job: Job, store: StateStore, tables: list[str]) -> None:
    """The reject policy over every change applied since the tables' full loads, not only this run's:
    a reject that failed one catch-up fails the next ones too, until `max_rejects` allows it or a full
    refresh starts again."""
    from etl.engine.changes import rejects_since_load

    rejected, extracted = rejects_since_load(store, job.name, tables)
    if report.status != SUCCEEDED or not job.max_rejects.exceeded(rejected, extracted):
        return
    report.status = FAILED
    report.message = (f"too many rejected changes: {rejected} of {extracted} applied since the full load, "
                      f"more than max_rejects {job.max_rejects} allows")
    report.hint = (f"dead letters are in {report.dead_letters}; fix the data or the mapping and run "
                   f"`python -m etl.run {_shown_path(job.path)} --full-refresh`, or raise max_rejects")


def _reread(job: Job, options: RunOptions, resources: JobResources, store: StateStore, control: RunControl,
            tables: list[tuple[str, str, dict]], verdict: Verdict, execution: Execution,
            planning: ExitStack) -> list[TableReport]:
    """Catch up tables whose sources cannot tell what changed: read them again whole, marking every
    ledger entry seen, then delete what unmarked entries made."""
    from etl.engine.changes import new_mark, sweep_unmarked
    from etl.engine.ledger import Ledger

    keys = tuple(f"{source}.{table}" for source, table, _ in tables)
    plan = make_plan(job, resources, store, only=keys, keep_open=planning, replan_tables=keys)
    _restart_partitions(store, job.name, plan)
    marks = {key: new_mark() for key in keys}
    checkpoints = store.checkpoints(job.name)
    works, finished = _works(plan, checkpoints)
    reread = _execute(job, options, resources, store, control, plan, works, finished, checkpoints, False,
                      verdict.generation, marks)
    execution.outcomes += reread.outcomes
    execution.errors += reread.errors
    execution.skipped += reread.skipped
    reports = _table_reports(plan, store.checkpoints(job.name), reread.outcomes)
    for report in reports:
        deleted = sum(o.rows_deleted for o in reread.outcomes if o.table == report.table)
        report.changes = {"method": "re-read", "applied": {"upsert": report.extracted_this_run},
                          "found_deleted": 0, "rows_deleted": deleted}
        if reread.errors or control.stopping or report.partitions_done < report.partitions:
            continue  # an unfinished re-read proves nothing missing: the next run reads again
        source, table = report.table.split(".", 1)
        mapping = resources.mapping(source, table)
        with ExitStack() as stack:
            sinks = resources.open_sinks(mapping.tables, stack)
            found, deleted = sweep_unmarked(Ledger(store, job.name, report.table, mapping.tables, sinks),
                                            marks[report.table])
        report.changes.update(found_deleted=found, rows_deleted=report.changes["rows_deleted"] + deleted)
    return reports


def _accounting(report: RunReport) -> dict[str, dict[str, int]]:
    """Per source table, the four figures the verdict keeps."""
    return {t.table: {"extracted": t.extracted, "loaded": t.loaded, "rejected": t.rejected,
                      "filtered": t.filtered} for t in report.tables}


def _owned(plan: Plan, table: TablePlan) -> bool:
    return any(p.id in plan.owned for p in table.partitions)


def _works(plan: Plan, checkpoints: dict[str, Checkpoint]) -> tuple[list[PartitionWork], list[str]]:
    works, finished = [], []
    for partition in plan.partitions():
        checkpoint = checkpoints.get(partition.id)
        if checkpoint is not None and checkpoint.done:
            finished.append(partition.id)
            continue
        if checkpoint is None:
            works.append(PartitionWork(partition))
        else:
            works.append(PartitionWork(partition, checkpoint.resume_after, _counts_of(checkpoint),
                                       present_of(checkpoint)))
    return works, finished


def _check_samples(resources: JobResources, plan: Plan, works: list[PartitionWork]) -> None:
    """Check each schemaless table's mapping planning left unchecked: against the first batch of its
    first partition when this run reads that partition from its start (no sample query; the check
    is done before the batch is written), otherwise against a sample now."""
    firsts = {table_key(work.partition): work for work in works
              if work.partition.index == 0 and work.resume_after is None}
    with ExitStack() as stack:
        opened: dict[str, Source] = {}
        for table in plan.tables:
            if table.key in resources.source_fits:
                continue
            first = firsts.get(table.key)
            if first is not None:
                first.check_sample = sample_size(resources, table.source, table.table)
                continue
            if table.source not in opened:
                opened[table.source] = resources.open_source(table.source)
                stack.callback(opened[table.source].close)
            check_source_table(resources, opened[table.source], table.source, table.table)


def _counts_of(checkpoint: Checkpoint) -> Counts:
    reasons = (checkpoint.extra or {}).get("reasons") or {}
    return Counts.from_checkpoint(checkpoint.counts or {}, reasons)


def _prepare_targets(resources: JobResources, plan: Plan) -> dict[str, frozenset[str]]:
    """Create (or check) every target table before any data moves; returns, per target, the child
    tables that hold no row yet (every partition's sink is told, `Sink.prepare`)."""
    keys = [(t.source, t.table) for t in plan.tables if _owned(plan, t)]
    empty = {}
    for target in resources.job.targets:
        specs = resources.table_specs(target, keys)
        if not specs:
            continue
        sink = resources.open_sink(target)
        try:
            empty[target] = sink.prepare(specs)
        finally:
            sink.close()
    return empty


def _local_runner(job: Job, resources: JobResources, store: StateStore, dead_letters: DeadLetters,
                  control: RunControl, options: RunOptions, quick_try: bool,
                  marks: dict[str, str]) -> Callable[[PartitionWork, Turn], PartitionOutcome]:
    def run_one(work: PartitionWork, turn: Turn) -> PartitionOutcome:
        partition = work.partition
        mapping = resources.mapping(partition.source, partition.table)
        with ExitStack() as stack:
            source = resources.open_source(partition.source)
            stack.callback(source.close)
            sinks = resources.open_sinks(mapping.tables, stack, work.empty_at_start)
            ledger = None if quick_try else ledger_of(job, store, partition, mapping, sinks, marks)
            worker = PartitionWorker(job=job.name, source=source, mapping=mapping, sinks=sinks,
                                     dead_letters=dead_letters, store=None if quick_try else store,
                                     control=control, prefetch=options.prefetch, ledger=ledger)
            return worker.run(work, turn)

    return run_one


def _table_reports(plan: Plan, checkpoints: dict[str, Checkpoint],
                   outcomes: list[PartitionOutcome]) -> list[TableReport]:
    by_partition = {o.partition: o for o in outcomes}
    reports = []
    for table in plan.tables:
        owned = [p for p in table.partitions if p.id in plan.owned]
        if not owned:
            continue
        counts, done, run_extracted = Counts(), 0, 0
        ran = [by_partition[p.id] for p in owned if p.id in by_partition]
        for partition in owned:
            outcome = by_partition.get(partition.id)
            checkpoint = checkpoints.get(partition.id)
            if outcome is not None:
                counts.add(outcome.counts)
                run_extracted += outcome.run.extracted
                done += outcome.done
            elif checkpoint is not None:
                counts.add(_counts_of(checkpoint))
                done += checkpoint.done
        seconds = (max(o.started + o.seconds for o in ran) - min(o.started for o in ran)) if ran else 0.0
        warnings: Counter[str] = Counter()
        for outcome in ran:
            warnings.update(outcome.warnings)
        reports.append(TableReport(
            table=table.key, partitions=len(owned), partitions_done=done, extracted=counts.extracted,
            loaded=counts.loaded, rejected=counts.rejected, filtered=counts.filtered,
            extracted_this_run=run_extracted, seconds=seconds, rows=dict(counts.rows),
            top_reasons=counts.top_reasons(), warnings=dict(sorted(warnings.items())),
        ))
    return reports


def _judge(report: RunReport, job: Job, execution: Execution, control: RunControl) -> None:
    """Set the report's status from what happened: failures, stops, unfinished partitions, the
    reject policy over everything moved since the last full refresh, then the accounting check."""
    reason = control.stop_reason
    resume = rerun_command(_shown_path(job.path), report.options)
    if execution.errors:
        partition, error = execution.errors[0]
        report.status = FAILED
        text = error.message if isinstance(error, EtlError) else f"{type(error).__name__}: {error}"
        more = f" (and {len(execution.errors) - 1} more)" if len(execution.errors) > 1 else ""
        what = "partition" if "#" in partition else "table"  # incremental runs fail by table
        report.message = redact(f"{what} {partition} failed{more}: {text}")
        report.hint = (error.hint if isinstance(error, EtlError) and error.hint else
                       f"every committed batch is checkpointed; fix the cause and run `{resume}` to continue")
        return
    total = report.totals()
    if job.max_rejects.exceeded(total.rejected, total.extracted):
        report.status = FAILED
        reasons = Counts()
        for table in report.tables:
            reasons.add_reasons(dict(table.top_reasons))
        top = "; ".join(f"{r} ({c})" for r, c in reasons.top_reasons(3))
        report.message = (f"too many rejected records: {total.rejected} of {total.extracted} extracted, more "
                          f"than max_rejects {job.max_rejects} allows; most frequent: {top}")
        report.hint = (f"dead letters are in {report.dead_letters}; fix the mapping or the data and run "
                       f"`{resume} --full-refresh`, or raise max_rejects and run `{resume}` again")
        return
    if reason is not None and reason.kind != "max_rejects":
        report.status = STOPPED if reason.kind == "signal" else FAILED
        report.message = redact(reason.message)
        report.hint = f"every committed batch is checkpointed; run `{resume} --resume` to continue"
        return
    if report.options.get("limit") is None and any(t.partitions_done < t.partitions for t in report.tables):
        report.status = FAILED
        report.message = "some partitions did not finish"
        report.hint = f"run `{resume} --resume` to continue"
        return
    try:
        check_accounting({t.table: Counts(t.extracted, t.loaded, t.rejected, t.filtered)
                          for t in report.tables})
    except EtlError as error:
        report.status = FAILED
        report.message = error.message
        report.hint = error.hint


def _shown_path(path: Path) -> str:
    """The job file as the user would type it: relative to the current folder when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _options_dict(options: RunOptions) -> dict:
    return {"resume": options.resume, "full_refresh": options.full_refresh, "only": list(options.only),
            "limit": options.limit, "shard": options.shard.label if options.shard else None,
            "incremental": options.incremental, "follow": options.follow}


def _finish(report: RunReport, started: float) -> RunReport:
    report.finished_at = datetime.now(UTC).isoformat()
    report.seconds = time.monotonic() - started
    if report.seconds and math.isfinite(report.seconds):
        report.seconds = round(report.seconds, 3)
    return report
