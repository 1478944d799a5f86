"""Checkpoint stores. `module_for(type)` finds the module for a job file's `state: {type: ...}`."""

from __future__ import annotations

import importlib
from types import ModuleType

STATE_TYPES = {
    "sqlite": "etl.state.sqlite",
    "postgres": "etl.state.postgres",
    "dynamodb": "etl.state.dynamodb",
}


def module_for(state_type: str) -> ModuleType:
    return importlib.import_module(STATE_TYPES[state_type])
