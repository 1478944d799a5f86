"""Mapped paths that no record of a table had: the part of a run's verdict that a mapping typo decides.

A path absent from every record makes NULL (or the default) in every row, and validation cannot
see it: it maps both sides with the same mapping. The worker notes which of the mapping's reads
(`CompiledMapping.reads`) some record has (`PartitionOutcome.present`, kept in each checkpoint's
`extra["present"]` so that resumed and earlier runs count); once every partition of a table is
done, `unseen_paths` returns the reads none of its records had, unless marked `optional: true`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from etl.engine.plan import Plan
from etl.engine.resources import JobResources
from etl.engine.worker import PartitionOutcome
from etl.mapping.reads import ReadPath
from etl.report.run_report import FAILED, SUCCEEDED, RunReport
from etl.state.base import Checkpoint

PRESENT = "present"
"""Key of `Checkpoint.extra` holding the ids of the reads some record of the partition had."""


@dataclass(frozen=True)
class Unseen:
    table: str
    """`source.table`."""
    read: ReadPath
    records: int
    """Records extracted from the table, none of which had the path."""

    def __str__(self) -> str:
        return (f"{self.read.where}: {self.read.doc_path}: path `{self.read.text}` is absent from all "
                f"{self.records} records of {self.table}")


def present_of(checkpoint: Checkpoint | None) -> frozenset[str]:
    """The reads a checkpointed partition had found (none for an older checkpoint without them)."""
    if checkpoint is None:
        return frozenset()
    return frozenset((checkpoint.extra or {}).get(PRESENT) or ())


def unseen_paths(plan: Plan, reads: Callable[[str, str], Sequence[ReadPath]],
                 checkpoints: Mapping[str, Checkpoint], outcomes: Iterable[PartitionOutcome],
                 skip: Iterable[str] = ()) -> list[Unseen]:
    """Reads (not optional) that no record of a table had, over all its partitions and runs.

    `reads(source, table)` gives a table's mapping reads. A table is judged only when every one of
    its partitions is done (here or, for other shards and earlier runs, in `checkpoints`) and at
    least one record was extracted: until then a path may still come. Tables in `skip` (`source.table`)
    are not judged here: their mapping changed after their records moved, so their checkpoints
    know only the old mapping's reads, and validation, which reads every record, judges them.
    """
    ran = {outcome.partition: outcome for outcome in outcomes}
    skipped = set(skip)
    unseen: list[Unseen] = []
    for table in plan.tables:
        if table.key in skipped:
            continue
        found: set[str] = set()
        extracted = 0
        for partition in table.partitions:
            outcome, checkpoint = ran.get(partition.id), checkpoints.get(partition.id)
            if outcome is not None and outcome.done:
                found |= outcome.present
                extracted += outcome.counts.extracted
            elif checkpoint is not None and checkpoint.done:
                found |= present_of(checkpoint)
                extracted += int((checkpoint.counts or {}).get("extracted", 0))
            else:
                break
        else:
            if extracted:
                unseen.extend(Unseen(table.key, read, extracted) for read in reads(table.source, table.table)
                              if not read.optional and read.id not in found)
    return unseen


def unseen_verdict(unseen: Sequence[Unseen], resume: str) -> tuple[str, str]:
    """The run report's message and hint for a run whose records lacked mapped paths."""
    tables = sorted({item.table for item in unseen})
    message = (f"mapped paths absent from every record of {', '.join(tables)}; the rows written hold NULL "
               "or the default there:\n" + "\n".join(str(item) for item in unseen))
    hint = (f"fix the paths in the mapping and run `{resume} --full-refresh`, or mark a column "
            "`optional: true` if the source may lack it")
    return message, hint


def judge_reads(report: RunReport, plan: Plan, resources: JobResources, checkpoints: Mapping[str, Checkpoint],
                outcomes: Iterable[PartitionOutcome], resume: str, skip: Iterable[str] = ()) -> None:
    """Add the start-of-run sample warnings to the report's tables, and fail a run that otherwise
    succeeded when a table's records lacked a mapped path (not for `--limit` tries)."""
    for table in report.tables:
        fit = resources.source_fits.get(table.table)
        kind = "catalogue" if fit is not None and fit.checked == "catalogue" else "sample"
        for warning in fit.warnings if fit is not None else ():
            table.warnings[f"{kind}: {warning}"] = 1
    if report.status != SUCCEEDED or report.options.get("limit") is not None:
        return
    unseen = unseen_paths(plan, lambda source, table: resources.mapping(source, table).reads, checkpoints,
                          outcomes, skip)
    if unseen:
        report.status = FAILED
        report.message, report.hint = unseen_verdict(unseen, resume)
