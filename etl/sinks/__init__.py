"""Sinks: one module per target engine. `module_for(type)` finds the module for a job file's `type:`."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from etl.sinks.base import TargetRules

TargetKind = Literal["dynamodb", "postgres"]
"""The kinds of target a job or mapping names: the one list of sinks. Kind `k` is the module
`etl.sinks.k`, and its `--check` probe `etl.sinks.k_check`."""
SINK_TYPES: dict[str, str] = {kind: f"etl.sinks.{kind}" for kind in get_args(TargetKind)}
CHECK_MODULES: dict[str, str] = {kind: f"etl.sinks.{kind}_check" for kind in get_args(TargetKind)}
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
