"""Backup chains per engine, restore planning and restore verification (docs/restore.md)."""

from etl.restore.api import load_chain, plan_restore, to_position
from etl.restore.chain import (
    Backup,
    BrokenChain,
    Chain,
    ChainError,
    CopyOnlyMisuse,
    Kind,
    LineageMismatch,
    PositionGap,
    RestorePlan,
    SystemMismatch,
    TargetNotCovered,
    UnreadableInput,
    WrongOrder,
)
from etl.restore.engine import RestoreEngine
from etl.restore.engines import ENGINES, get_engine
from etl.restore.verify import (
    RestoreVerification,
    SegmentCheck,
    TableCheck,
    compose_over_bases,
    differential_manifest,
    manifest_at,
    manifest_for_plan,
    verify_restore,
)

__all__ = [
    "ENGINES",
    "Backup",
    "BrokenChain",
    "Chain",
    "ChainError",
    "CopyOnlyMisuse",
    "Kind",
    "LineageMismatch",
    "PositionGap",
    "RestoreEngine",
    "RestorePlan",
    "RestoreVerification",
    "SegmentCheck",
    "SystemMismatch",
    "TableCheck",
    "TargetNotCovered",
    "UnreadableInput",
    "WrongOrder",
    "compose_over_bases",
    "differential_manifest",
    "get_engine",
    "load_chain",
    "manifest_at",
    "manifest_for_plan",
    "plan_restore",
    "to_position",
    "verify_restore",
]
