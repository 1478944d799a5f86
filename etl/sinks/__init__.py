"""Sinks: one module per target engine. `module_for(type)` finds the module for a job file's `type:`."""

from __future__ import annotations

import importlib
from types import ModuleType

SINK_TYPES = {
    "dynamodb": "etl.sinks.dynamodb",
    "postgres": "etl.sinks.postgres",
}


CHECK_MODULES = {
    "dynamodb": "etl.sinks.dynamodb_check",
    "postgres": "etl.sinks.postgres_check",
}
"""`--check` probes: `probe(sink, tables) -> [(line, ok)]`."""


def module_for(sink_type: str) -> ModuleType:
    return importlib.import_module(SINK_TYPES[sink_type])


def check_module_for(sink_type: str) -> ModuleType:
    return importlib.import_module(CHECK_MODULES[sink_type])
