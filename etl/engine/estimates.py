"""About how many records each planned table holds, for progress totals and ETAs: the source's
cheap estimate (`Source.estimate`: catalogue statistics, collection metadata), never a count that
reads the table. Sources without one, or whose estimate fails, give None: no total, no ETA."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from etl.engine.plan import Plan
from etl.engine.resources import JobResources

log = logging.getLogger(__name__)

Totals = Callable[[Plan], Mapping[str, int | None]]
"""What a progress display calls with the plan: per `source.table`, about how many records it holds."""


def table_estimates(resources: JobResources, plan: Plan) -> dict[str, int | None]:
    """Per `source.table` of the tables this process runs: the source's estimate, or None."""
    estimates: dict[str, int | None] = {}
    for name in dict.fromkeys(table.source for table in plan.tables):
        try:
            source = resources.open_source(name)
        except Exception as error:  # the run itself will say why it cannot reach the source
            log.debug("no estimates from source %r: %s", name, type(error).__name__)
            continue
        try:
            estimate = getattr(source, "estimate", None)
            for table in plan.tables:
                if table.source == name:
                    estimates[table.key] = _estimate(estimate, table.table)
        finally:
            source.close()
    return estimates


def _estimate(estimate, table: str) -> int | None:
    if estimate is None:
        return None
    try:
        return estimate(table)
    except Exception as error:  # an estimate is a nicety: never a reason for a run to fail
        log.debug("no estimate for %s: %s", table, type(error).__name__)
        return None
