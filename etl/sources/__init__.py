"""Sources: one module per engine. `module_for(type)` finds the module for a job file's `type:`."""

from __future__ import annotations

import importlib
from types import ModuleType

SOURCE_TYPES = {
    "mongo": "etl.sources.mongo",
    "mongodump": "etl.sources.mongodump",
    "postgres": "etl.sources.postgres",
    "oracle": "etl.sources.oracle",
    "mssql": "etl.sources.mssql",
}


def module_for(source_type: str) -> ModuleType:
    return importlib.import_module(SOURCE_TYPES[source_type])
