"""etl: migrate MongoDB, Oracle, SQL Server and PostgreSQL to DynamoDB and Aurora PostgreSQL, and prove it.

The public API (everything else may change):

- `load_job(path)`: a job for notebooks and scripts (`.plan()`, `.preview()`, `.run()`, `.validate()`,
  `.report()`); `run_job`, `validate_job`, `plan_job`, `RunOptions` for the engine directly, given
  the validated job as `load_job(path).config` (`run_job(job.config, RunOptions(full_refresh=True))`);
- `load_mapping`, `compile_mapping`: the mapping language;
- `validate_table`, `Manifest`, `Tolerances`: checksum validation;
- `load_chain`, `plan_restore`, `verify_restore`: backup chains and restore verification;
- `EtlError` and its family: every error a user can cause.

Names are imported on first use so that `import etl.<module>` stays light and free of import cycles.
"""

from __future__ import annotations

import importlib

from etl.errors import (
    ConnectionFailed,
    EtlError,
    JobFileError,
    MappingError,
    RuntimeFailure,
    ValidationDifferences,
)

_LAZY = {
    "load_job": ("etl.api", "open_job"),
    "run_job": ("etl.engine.runner", "run_job"),
    "RunOptions": ("etl.engine.runner", "RunOptions"),
    "validate_job": ("etl.engine.validation", "validate_job"),
    "plan_job": ("etl.engine.planning", "plan_job"),
    "load_mapping": ("etl.mapping", "load_mapping"),
    "compile_mapping": ("etl.mapping", "compile_mapping"),
    "validate_table": ("etl.checksum.diff", "validate_table"),
    "Manifest": ("etl.checksum.manifest", "Manifest"),
    "Tolerances": ("etl.checksum.tolerances", "Tolerances"),
    "load_chain": ("etl.restore", "load_chain"),
    "plan_restore": ("etl.restore", "plan_restore"),
    "verify_restore": ("etl.restore", "verify_restore"),
}

__all__ = [
    "ConnectionFailed",
    "EtlError",
    "JobFileError",
    "MappingError",
    "RuntimeFailure",
    "ValidationDifferences",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'etl' has no attribute {name!r}")
