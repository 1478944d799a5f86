"""Sinks: one module per target engine. `module_for(type)` finds the module for a job file's `type:`."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from etl.sinks.base import TargetRules

TargetKind = Literal["dynamodb", "postgres"]
"""The kinds of target a job or mapping names: the keys of SINK_TYPES."""
SINK_TYPES: dict[str, str] = {
    "dynamodb": "etl.sinks.dynamodb",
    "postgres": "etl.sinks.postgres",
}
assert set(SINK_TYPES) == set(get_args(TargetKind)), "each target kind has exactly one sink module"


CHECK_MODULES = {
    "dynamodb": "etl.sinks.dynamodb_check",
    "postgres": "etl.sinks.postgres_check",
}
"""`--check` probes: `probe(sink, tables) -> [(line, ok)]`."""


def module_for(sink_type: str) -> ModuleType:
    return importlib.import_module(SINK_TYPES[sink_type])


def rules_for(sink_type: str) -> TargetRules:
    """What targets of this kind allow (the sink module's `RULES`)."""
    return module_for(sink_type).RULES


def engines_with(capability: str) -> str:
    """The engines whose rules have `capability` set, for messages: `DynamoDB`."""
    return " and ".join(rules_for(kind).engine for kind in SINK_TYPES if getattr(rules_for(kind), capability))


def check_module_for(sink_type: str) -> ModuleType:
    return importlib.import_module(CHECK_MODULES[sink_type])
