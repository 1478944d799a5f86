"""The run engine: plan tables x partitions, run them checkpointed on an executor, account for
every record, validate the targets. docs/engine.md describes it."""

from etl.engine.plan import Plan, Shard, TablePlan
from etl.engine.planning import plan_job
from etl.engine.runner import RunOptions, run_job
from etl.engine.validation import validate_job, validation_report

__all__ = [
    "Plan", "RunOptions", "Shard", "TablePlan", "plan_job", "run_job", "validate_job", "validation_report",
]
