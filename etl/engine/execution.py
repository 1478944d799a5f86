"""What an executor hands back: the outcome of every partition it ran, and what went wrong."""

from __future__ import annotations

from dataclasses import dataclass, field

from etl.engine.worker import PartitionOutcome


@dataclass
class Execution:
    outcomes: list[PartitionOutcome] = field(default_factory=list)
    errors: list[tuple[str, BaseException]] = field(default_factory=list)
    """(partition id, error) of every partition that failed."""
    skipped: list[str] = field(default_factory=list)
    """Partitions never started because the run was stopping."""
