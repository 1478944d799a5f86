"""Making a job's plan from its sources, and keeping it in the state store for resumed runs."""

from __future__ import annotations

from collections.abc import Collection
from contextlib import ExitStack

from etl.engine.mapcheck import check_source_table
from etl.engine.plan import (
    PLAN_STATE_KEY,
    Plan,
    Shard,
    TablePlan,
    assign_shard,
    plan_to_state,
    select_tables,
    stored_partitions,
)
from etl.engine.resources import JobResources
from etl.job import Job
from etl.sources.base import Source
from etl.state.base import StateStore


def plan_tables(resources: JobResources, pairs: list[tuple[str, str]], stored: object = None, *,
                keep_open: ExitStack | None = None, defer_samples: bool = False
                ) -> tuple[list[TablePlan], list[TablePlan]]:
    """Plans of the given tables (stored partitions reused); returns (all, the newly planned).

    Each table's mapping is first checked against its source (`etl.engine.mapcheck`): a path a
    relational table has no column for raises MappingError before anything is planned or moved.
    With `defer_samples` a schemaless table is left for the run to check (`etl.engine.runner`).

    The sources opened to plan are closed on return, or by `keep_open` when given: a source whose
    partitions import a snapshot exported at plan time (PostgreSQL) must stay open until they
    have, or they would each read their own snapshot.
    """
    tables: list[TablePlan] = []
    fresh: list[TablePlan] = []
    with ExitStack() as stack:
        opened: dict[str, Source] = {}
        for source_name, table in pairs:
            config = resources.table_config(source_name, table)
            key = f"{source_name}.{table}"
            if source_name not in opened:
                opened[source_name] = resources.open_source(source_name)
                (keep_open if keep_open is not None else stack).callback(opened[source_name].close)
            check_source_table(resources, opened[source_name], source_name, table, defer_sample=defer_samples)
            partitions = stored_partitions(stored, key, config.partitions)
            if partitions is None:
                partitions = tuple(opened[source_name].plan(table, config.partitions))
            entry = TablePlan(source_name, table, config.mapping, config.partitions, partitions)
            tables.append(entry)
            if stored_partitions(stored, key, config.partitions) is None:
                fresh.append(entry)
    return tables, fresh


def make_plan(job: Job, resources: JobResources, store: StateStore, *, only: tuple[str, ...] = (),
              shard: Shard | None = None, replan: bool = False, keep: bool = True,
              keep_open: ExitStack | None = None, replan_tables: Collection[str] = (),
              defer_samples: bool = False) -> Plan:
    """The run's plan: stored partitions where the job already has them, new ones (stored when
    `keep`) for tables planned for the first time, whose partition count changed, or named in
    `replan_tables` (`source.table`: read again whole by an incremental run, whose stored bounds
    belong to the data as it was). The planning sources are left to `keep_open` to close (see
    `plan_tables`, as is `defer_samples`)."""
    pairs = select_tables(resources.source_tables(), only)
    stored = None if replan else store.get_value(job.name, PLAN_STATE_KEY)
    if replan_tables and isinstance(stored, dict):
        stored = {key: entry for key, entry in stored.items() if key not in replan_tables}
    tables, fresh = plan_tables(resources, pairs, stored, keep_open=keep_open, defer_samples=defer_samples)
    if fresh and keep:
        store.set_value(job.name, PLAN_STATE_KEY, plan_to_state(fresh, stored))
    return Plan(job.name, tuple(tables), shard, assign_shard(tables, shard))


def plan_job(job: Job, *, only: tuple[str, ...] = (), shard: Shard | None = None,
             resources: JobResources | None = None) -> Plan:
    """Plan `job` from its sources without touching the state store (for `--plan` and notebooks);
    `resources.source_fits` then holds what checking each mapping against its source found."""
    resources = resources or JobResources(job)
    tables, _ = plan_tables(resources, select_tables(resources.source_tables(), only))
    return Plan(job.name, tuple(tables), shard, assign_shard(tables, shard))
