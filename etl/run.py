"""`python -m etl.run job.yaml`: run, plan or validate a job from the command line.

Exit codes: 0 success (the job's targets are proven equal), 1 validation found differences, 2 bad
job or mapping file, 3 runtime failure, 4 unproven (a `--limit` try or a run without validation);
see docs/verdicts.md. Errors are printed as one message without a traceback unless --debug; everything
printed passes through the redaction filter, so passwords and tokens never appear.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from functools import partial
from typing import IO

from etl.errors import EtlError, JobFileError
from etl.redact import redact, redact_exception

log = logging.getLogger("etl.run")

EXIT_OK, EXIT_DIFFERENCES, EXIT_BAD_FILE, EXIT_RUNTIME, EXIT_UNPROVEN = 0, 1, 2, 3, 4
PLAN_SAMPLE = 2
"""Records shown per table by --plan."""
PLAN_ROWS = 3
"""Rows shown per target table and record by --plan."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("etl")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


class _VersionAction(argparse._VersionAction):
    """`--version`, which looks the version up only when asked (importlib.metadata costs start-up time)."""

    def __call__(self, parser, namespace, values, option_string=None):
        self.version = f"%(prog)s {_version()}"
        super().__call__(parser, namespace, values, option_string)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m etl.run",
        description="Move the records a job file names from its sources into its targets, checkpointed "
        "and resumable, then validate the targets against the sources.",
        epilog="exit codes: 0 success (every record moved or rejected with a reason, and the targets "
        "proven equal), 1 validation found differences, 2 bad job or mapping file, 3 runtime failure, "
        "4 unproven (a --limit try, or a run without validation)",
    )
    p.add_argument("--version", action=_VersionAction)
    p.add_argument("job", help="the job file (YAML)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="reach every source, target and state store with the job's settings and say what "
                      "was found (server version, tables, privileges); write nothing; exit 3 when something "
                      "cannot be reached or lacks what a run needs")
    mode.add_argument("--plan", action="store_true",
                      help="print tables, partitions and the first mapped records beside their source "
                      "records; write nothing")
    mode.add_argument("--validate-only", action="store_true",
                      help="compare every target table with its source; move nothing")
    refresh = p.add_mutually_exclusive_group()
    refresh.add_argument("--resume", action="store_true",
                         help="continue after the last checkpoints (what a run does after a failed or "
                         "killed run anyway)")
    refresh.add_argument("--full-refresh", action="store_true",
                         help="forget the checkpoints and move every record again")
    mode.add_argument("--incremental", action="store_true",
                   help="apply what changed at the sources since the last run (deletes included), then "
                   "validate; needs `incremental: true` and a finished full load (docs/cutover.md)")
    mode.add_argument("--follow", action="store_true",
                   help="with --incremental (implied): keep applying changes until Ctrl-C or SIGTERM; "
                   "ends unproven (exit 4): finish with --incremental to validate")
    p.add_argument("--poll", type=_positive, metavar="SECONDS", default=5,
                   help="with --follow: how long to wait for changes once every table caught up (default 5)")
    p.add_argument("--only", action="append", metavar="TABLE", default=[],
                   help="run only this source table (`table` or `source.table`); repeatable")
    p.add_argument("--limit", type=_positive, metavar="N",
                   help="a quick try: at most N records per source table, no checkpoint kept")
    p.add_argument("--shard", metavar="K/N",
                   help="run shard K (0-based) of N: a deterministic share of the partitions")
    p.add_argument("--lease-ttl", type=_positive, metavar="SECONDS", default=60,
                   help="how long the job's lease outlives a run that dies without releasing it "
                   "(renewed every third of it while the run lives; default 60)")
    mode.add_argument("--profile", action="store_true",
                      help="read every record through the mappings and the targets' checks, write nothing, "
                      "and report what a run would reject and why; exit 1 when it would reject any "
                      "(docs/mapping.md)")
    p.add_argument("--profile-sample", type=_positive, metavar="N",
                   help="with --profile (implied): only the first N records of each table")
    mode.add_argument("--scaffold", metavar="SOURCE.TABLE",
                      help="print a mapping proposal for a table of the job's sources (docs/mapping.md)")
    p.add_argument("--sample", type=_positive, metavar="N", default=1000,
                   help="with --scaffold: documents sampled from a MongoDB collection (default 1000)")
    p.add_argument("--output", metavar="FILE",
                   help="with --scaffold: write here instead of stdout (never overwritten)")
    mode.add_argument("--scaffold-job", metavar="SOURCE_TYPE",
                      help="write a new job file, named by the job argument (it must not exist), for a "
                      "source of this type: mongo, mongodump, postgres, oracle or mssql")
    p.add_argument("--debug", action="store_true", help="debug logging and tracebacks")
    from etl.restore.arguments import add_arguments as add_restore_arguments

    add_restore_arguments(p, mode)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from etl.audit import AuditTrail
    from etl.log import setup_logging

    setup_logging(args.debug)
    trail = AuditTrail.for_command(args)
    exit_code = EXIT_RUNTIME
    try:
        exit_code = _reported(args, trail)
        return exit_code
    finally:
        trail.end(exit_code)


def _reported(args: argparse.Namespace, trail) -> int:
    """Run the command; print its error (redacted, no traceback unless --debug) and return the exit code."""
    try:
        return _main(args, trail)
    except EtlError as error:
        trail.failed(error)
        if args.debug:
            print(redact_exception(error), file=sys.stderr)
        print(f"error: {redact(str(error))}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as error:
        trail.failed(error)
        from etl.engine.command_line import rerun_command

        selected = {"only": _only(args), "shard": args.shard, "incremental": args.incremental}
        print(f"error: interrupted; run `{rerun_command(args.job, selected)} --resume` to continue from the "
              "last checkpoints", file=sys.stderr)
        return EXIT_RUNTIME
    except Exception as error:  # a defect: say so, keep secrets out, traceback only with --debug
        trail.failed(error)
        if args.debug:
            print(redact_exception(error), file=sys.stderr)
        print(f"error: unexpected {type(error).__name__}: {redact(str(error))}"
              + ("" if args.debug else " (run with --debug for the traceback)"), file=sys.stderr)
        return EXIT_RUNTIME


def _main(args: argparse.Namespace, trail) -> int:
    from etl.restore.arguments import requested

    if requested(args):
        from etl.restore import cli as restore_cli

        return restore_cli.run(args, trail, sys.stdout)
    from etl.engine.plan import Shard
    from etl.job import load_job

    only = _only(args)
    shard = Shard.parse(args.shard) if args.shard else None
    if args.limit is not None and (args.shard or args.validate_only):
        raise JobFileError("--limit is a quick try of the whole job; it cannot be combined with "
                           "--shard or --validate-only")
    modes = [name for name, given in (("--plan", args.plan), ("--validate-only", args.validate_only),
                                      ("--incremental", args.incremental), ("--follow", args.follow),
                                      ("--scaffold", args.scaffold), ("--scaffold-job", args.scaffold_job))
             if given]
    if args.profile_sample is not None and modes:
        raise JobFileError(f"--profile-sample profiles the job; it cannot be combined with "
                           f"{', '.join(modes)}")
    if args.scaffold_job:
        from etl.job_skeleton import write_job_skeleton

        return write_job_skeleton(args.job, args.scaffold_job)
    job = load_job(args.job)
    trail.job_loaded(job)
    if args.profile or args.profile_sample:
        from etl.engine.profile import run_profile

        return run_profile(job, only=only, sample=args.profile_sample)
    if args.scaffold:
        from etl.mapping.scaffold import run_scaffold

        return run_scaffold(job, args.scaffold, sample=args.sample, output=args.output)
    if args.plan:
        print_plan(job, only=only, shard=shard)
        return EXIT_OK
    if args.check:
        from etl.engine.check import check_job, print_check

        return print_check(job, check_job(job), sys.stdout)
    if args.validate_only:
        from etl.engine.validation import validation_report

        with _progress(job):
            report = validation_report(job, only)
    else:
        report = _run(job, args, only, shard)
    trail.report(report)
    if job.metrics.cloudwatch_emf:
        from etl.report.metrics import emf_lines

        for line in emf_lines(report, job.metrics.namespace):
            print(line, file=sys.stderr, flush=True)
    print_report(report)
    return report.exit_code


def _only(args: argparse.Namespace) -> tuple[str, ...]:
    """`--only a,b --only c`: the tables named, in order."""
    return tuple(name.strip() for value in args.only for name in value.split(",") if name.strip())


def _run(job, args: argparse.Namespace, only: tuple[str, ...], shard):
    from etl.engine.runner import RunOptions, run_job

    with _progress(job) as progress:
        options = RunOptions(resume=args.resume, full_refresh=args.full_refresh, only=only, limit=args.limit,
                             incremental=args.incremental or args.follow, follow=args.follow,
                             poll_seconds=args.poll,
                             shard=shard, lease_ttl=args.lease_ttl,
                             on_plan=progress.start, on_progress=progress.advance)
        return run_job(job, options)


@contextmanager
def _progress(job):
    """On a terminal the live display; otherwise JSON progress lines (`progress.every_seconds`).
    Either follows validation too. Totals come from the sources' estimates."""
    from etl.engine.estimates import table_estimates
    from etl.engine.resources import JobResources
    from etl.report.progress_lines import ProgressLines, check_message, progress_message

    resources = JobResources(job)
    totals = partial(table_estimates, resources)
    if sys.stderr.isatty():
        from etl.report.live import LiveDisplay  # rich: only for the terminal display

        with LiveDisplay.for_stream(sys.stderr, totals) as display:
            if display is not None:
                yield display
                return
    progress_log = logging.getLogger("etl.progress")

    def emit(line: dict) -> None:
        message = progress_message(line) if line["event"] == "progress" else check_message(line)
        progress_log.info(message, extra=line)

    with ProgressLines(job.progress.every_seconds, emit, totals=totals).watching() as lines:
        yield lines


def print_report(report, stream: IO[str] | None = None) -> None:
    """The Markdown summary, rendered by rich on a terminal, as plain text otherwise."""
    from etl.report.markdown import render_markdown

    stream = stream or sys.stdout
    text = render_markdown(report)
    if stream.isatty():
        from rich.console import Console
        from rich.markdown import Markdown

        Console(file=stream).print(Markdown(text))
    else:
        print(text, file=stream)
    if report.files:
        print(f"report saved to {report.files[0]}", file=stream)


def print_plan(job, *, only: tuple[str, ...] = (), shard=None, stream: IO[str] | None = None) -> None:
    """Tables, partitions, what checking each mapping against its source found (unused source
    columns, sample warnings), and the first records of each table beside what the mapping makes of them.

    Source records are shown with the mapping's `pii:` transforms already applied.
    """
    from etl.engine.plan import key_range
    from etl.engine.planning import plan_job
    from etl.engine.resources import JobResources

    stream = stream or sys.stdout
    resources = JobResources(job)
    plan = plan_job(job, only=only, shard=shard, resources=resources)
    partitions = sum(len(t.partitions) for t in plan.tables)
    owned = f", this shard runs {len(plan.owned)}" if shard else ""
    print(f"job {job.name}: {len(plan.tables)} source tables, {partitions} partitions{owned}; "
          f"parallelism {job.parallelism}, executor {job.executor.type}", file=stream)
    # What checking the mappings found comes first, not after pages of previews (errors raised before).
    for table in plan.tables:
        for warning in resources.source_fits[table.key].warnings:
            print(f"warning: {table.key}: {redact(warning)}", file=stream)
    for table in plan.tables:
        mapping = resources.mapping(table.source, table.table)
        targets = ", ".join(f"{s.target}.{s.table}" for s in mapping.tables)
        print(f"\n{table.key}  (mapping {table.mapping} -> {targets})", file=stream)
        source = resources.open_source(table.source)
        try:
            for p in table.partitions:
                mark = "" if p.id in plan.owned else "  (other shard)"
                lower, upper = (_bound(b) for b in key_range(source, p))
                print(f"  partition {p.index}/{p.count}: from {lower} to {upper}{mark}", file=stream)
            fit = resources.source_fits[table.key]
            kind = "columns" if fit.checked == "catalogue" else "fields"
            unused = ", ".join(fit.unused) or "none"
            print(f"  source {kind} no output uses ({fit.checked}): {unused}", file=stream)
            sample = source.sample(table.table, PLAN_SAMPLE)
            for record in sample:
                key = source.key_text(table.table, record)
                mapped = mapping.apply([record], functools.partial(source.key_text, table.table))
                print(f"\n  source record {key}:\n    {_show(mapping.safe_record(record))}", file=stream)
                for (target, name), rows in mapped.rows.items():
                    for row in rows.rows[:PLAN_ROWS]:
                        print(f"    -> {target}.{name}: {_show(row)}", file=stream)
                    if len(rows.rows) > PLAN_ROWS:
                        more = len(rows.rows) - PLAN_ROWS
                        print(f"    -> {target}.{name}: ... and {more} more rows", file=stream)
                for reject in mapped.rejects:
                    print(f"    -> rejected: {reject.reason}"
                          + (f" ({reject.field_path})" if reject.field_path else ""), file=stream)
                if mapped.filtered:
                    print("    -> filtered out by the mapping's `where`", file=stream)
        finally:
            source.close()


def _bound(text: str | None) -> str:
    """A bound as printed (None: unbounded)."""
    return "(unbounded)" if text is None else redact(text)


def _show(value: object) -> str:
    return redact(json.dumps(value, default=str, ensure_ascii=False))


if __name__ == "__main__":
    sys.exit(main())
