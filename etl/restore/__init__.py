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
    WrongOrder,
)
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
    "Backup",
    "BrokenChain",
    "Chain",
    "ChainError",
    "CopyOnlyMisuse",
    "Kind",
    "LineageMismatch",
    "PositionGap",
    "RestorePlan",
    "RestoreVerification",
    "SegmentCheck",
    "SystemMismatch",
    "TableCheck",
    "TargetNotCovered",
    "WrongOrder",
    "compose_over_bases",
    "differential_manifest",
    "load_chain",
    "manifest_at",
    "manifest_for_plan",
    "plan_restore",
    "to_position",
    "verify_restore",
]
