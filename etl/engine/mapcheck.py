"""Each table's mapping checked against what its source has, when a job starts (before data moves).

A relational source knows its columns: a mapping path whose first name is not one of them is a
MappingError (exit code 2) naming the mapping's file:line:column and the nearest column. A
schemaless source (MongoDB, mongodump) only shows a sample: paths none of the sampled records has
are warnings, logged, shown by `--plan` and kept in the run report. Either way the source's
columns or sampled fields that no output uses are listed for `--plan`.

A run whose table's first partition reads from its start checks its first batch instead of
sampling (`against_first_read`): those are the records the sample would be, and a sample is one
more query, which on a server without a cheap limited read costs a pass over the collection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from etl.engine.resources import JobResources
from etl.errors import MappingError
from etl.job import Problem, nearest, problems_text
from etl.mapping import CompiledMapping, check_against_sample
from etl.sources.base import Catalogue, SampledTable, Source

log = logging.getLogger(__name__)

DEFAULT_SAMPLE = SampledTable.model_fields["check_sample"].default
"""Records sampled from a schemaless table unless its `check_sample:` says otherwise."""


@dataclass(frozen=True)
class SourceFit:
    """What checking one source table's mapping against the source found (errors raise instead)."""

    table: str
    """`source.table`."""
    checked: str
    """`catalogue`, `sample of N records` or `first N records read`."""
    unused: tuple[str, ...]
    """Source columns (catalogue) or top-level fields (sample) that no output reads, sorted; empty
    when the check used a read's records, which hold only the fields the mapping reads."""
    warnings: tuple[str, ...] = ()
    """Sample findings: mapped paths no sampled record has, sampled records it would reject."""


def check_source_table(resources: JobResources, source: Source, source_name: str, table: str, *,
                       defer_sample: bool = False) -> SourceFit | None:
    """Check the mapping of `source_name.table` against `source` (once per JobResources); with
    `defer_sample`, a schemaless table is left unchecked (None) for the run to check as it reads."""
    key = f"{source_name}.{table}"
    if key in resources.source_fits:
        return resources.source_fits[key]
    mapping = resources.mapping(source_name, table)
    catalogue = getattr(source, "catalogue", None)
    if catalogue is not None:
        fit = against_catalogue(mapping, catalogue(table), key)
    elif defer_sample:
        return None
    else:
        fit = against_sample(mapping, source.sample(table, sample_size(resources, source_name, table)), key)
    log_warnings(fit)
    resources.source_fits[key] = fit
    return fit


def sample_size(resources: JobResources, source_name: str, table: str) -> int:
    """How many records of a schemaless table its mapping is checked against (`check_sample:`)."""
    return getattr(resources.table_config(source_name, table), "check_sample", DEFAULT_SAMPLE)


def log_warnings(fit: SourceFit) -> None:
    for warning in fit.warnings:
        log.warning("%s: %s", fit.table, warning)


def against_first_read(mapping: CompiledMapping, first: list[dict], size: int, key: str,
                       sample: Callable[[int], list[dict]]) -> SourceFit:
    """The check of a table's mapping against the first batch its first partition read from the
    start: the first `size` records in key order, which `sample(size)` would return too.

    `sample` is read after all when the batch holds fewer records, or when the check finds
    something: a read's records hold only the fields the mapping reads, and the `did you mean`
    of a warning comes from the others."""
    if len(first) >= size:
        fit = against_sample(mapping, first[:size], key)
        if not fit.warnings:
            return SourceFit(key, f"first {size} records read", ())
    fit = against_sample(mapping, sample(size), key)
    log_warnings(fit)
    return fit


def against_catalogue(mapping: CompiledMapping, catalogue: Catalogue, key: str) -> SourceFit:
    """Every path read from the record must start with a column of the table, spelt as the records
    carry it; raises one MappingError listing each place that does not."""
    names = list(catalogue.names)
    exact = set(names)
    by_case = {name.casefold(): name for name in names}
    problems = []
    for read in mapping.reads:
        if read.top is None or read.optional or read.top in exact:
            continue
        same = [name for name in names if catalogue.names_column(read.top, name)]
        near = same[0] if same else by_case.get(nearest(read.top.casefold(), list(by_case)) or "")
        what = f"column '{read.top}'"
        if read.text != read.top:
            what = f"`{read.text}` reads {what}, which"
        message = f"{what} is not in {catalogue.described}" + (f"; did you mean '{near}'?" if near else "")
        problems.append(Problem(read.line, read.column, read.doc_path, message))
    if problems:
        raise MappingError(
            problems_text(mapping.spec.file, problems),
            hint=f"columns are matched exactly as the catalogue spells them: {', '.join(names)}; mark a "
            "column `optional: true` only if this source may lack it",
        )
    unused = exact - _used(mapping, exact)
    return SourceFit(key, "catalogue", tuple(sorted(unused)), _dropped(mapping, unused, catalogue))


def _dropped(mapping: CompiledMapping, unused: set[str], catalogue: Catalogue) -> tuple[str, ...]:
    """Columns no output reads and nothing lists (`source.ignore`, a DMS rule's exclude-columns):
    a warning, since their values reach no target; an error for a DMS map-record-to-record rule,
    which copies every column it does not exclude (DMS semantics etl cannot honour without the
    columns: `copy-columns`, or the whole DMS document given to the source)."""
    outputs = mapping.spec.outputs
    listed = set(mapping.spec.ignored).union(*(output.dms_excluded for output in outputs))
    dropped = sorted(unused - listed)
    if not dropped:
        return ()
    copying = [output for output in outputs if output.dms_copies]
    if copying:
        node = copying[0].node
        raise MappingError(
            f"{node.where}: {node.path}: the DMS map-record-to-record rule leaves column(s) "
            f"{', '.join(dropped)} of {catalogue.described} neither copied nor excluded; DMS would copy them",
            hint="list them under `copy-columns` (name: type) or `exclude-columns`, or give the whole DMS "
            "document to the source (`dms:` in the job file), which copies every column",
        )
    return (f"source columns no output reads and `source.ignore` does not list: {', '.join(dropped)};"
            " their values reach no target",)


def against_sample(mapping: CompiledMapping, records: list[dict], key: str) -> SourceFit:
    """Warnings for paths none of `records` has (and records the mapping would reject)."""
    fields = {name for record in records for name in record}
    warnings = tuple(str(finding) for finding in check_against_sample(mapping, records))
    unused = tuple(sorted(fields - _used(mapping, fields)))
    return SourceFit(key, f"sample of {len(records)} records", unused, warnings)


def _used(mapping: CompiledMapping, names: set[str]) -> set[str]:
    """The names any output reads; a `rest: true` column reads every name it does not exclude."""
    used = {read.top for read in mapping.reads if read.top is not None}
    for output in mapping.spec.outputs:
        for column in output.columns:
            if column.kind == "rest":
                used |= names - column.exclude
    return used
