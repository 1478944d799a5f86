"""Backup chains per engine, restore planning and restore verification (docs/restore.md).

Names are imported on first use: `python -m etl.run` imports etl.restore.arguments to build its parser
and loads the restore code only for a restore command.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

_LAZY = {
    "load_chain": "etl.restore.api",
    "plan_restore": "etl.restore.api",
    "to_position": "etl.restore.api",
    "Backup": "etl.restore.chain",
    "BrokenChain": "etl.restore.chain",
    "Chain": "etl.restore.chain",
    "ChainError": "etl.restore.chain",
    "CopyOnlyMisuse": "etl.restore.chain",
    "Kind": "etl.restore.chain",
    "LineageMismatch": "etl.restore.chain",
    "PositionGap": "etl.restore.chain",
    "RestorePlan": "etl.restore.chain",
    "SystemMismatch": "etl.restore.chain",
    "TargetNotCovered": "etl.restore.chain",
    "UnreadableInput": "etl.restore.chain",
    "WrongOrder": "etl.restore.chain",
    "RestoreEngine": "etl.restore.engine",
    "ENGINES": "etl.restore.engines",
    "get_engine": "etl.restore.engines",
    "RestoreVerification": "etl.restore.verify",
    "SegmentCheck": "etl.restore.verify",
    "TableCheck": "etl.restore.verify",
    "compose_over_bases": "etl.restore.verify",
    "differential_manifest": "etl.restore.verify",
    "manifest_at": "etl.restore.verify",
    "manifest_for_plan": "etl.restore.verify",
    "verify_restore": "etl.restore.verify",
}

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


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'etl.restore' has no attribute {name!r}")
