"""The run engine: plan tables x partitions, run them checkpointed on an executor, account for
every record, validate the targets. docs/engine.md describes it.

Names are imported on first use, so that `--plan` (etl.engine.planning) does not load the runner."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from etl.engine.plan import Plan, Shard, TablePlan
    from etl.engine.planning import plan_job
    from etl.engine.runner import RunOptions, run_job
    from etl.engine.validation import validate_job, validation_report

_LAZY = {
    "Plan": "etl.engine.plan",
    "Shard": "etl.engine.plan",
    "TablePlan": "etl.engine.plan",
    "plan_job": "etl.engine.planning",
    "RunOptions": "etl.engine.runner",
    "run_job": "etl.engine.runner",
    "validate_job": "etl.engine.validation",
    "validation_report": "etl.engine.validation",
}

__all__ = [
    "Plan", "RunOptions", "Shard", "TablePlan", "plan_job", "run_job", "validate_job", "validation_report",
]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'etl.engine' has no attribute {name!r}")
