"""What an executor hands back: the outcome of every partition it ran, and what went wrong."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from etl.engine.control import RunControl
from etl.engine.worker import PartitionOutcome
from etl.redact import redact

log = logging.getLogger(__name__)


@dataclass
class Execution:
    outcomes: list[PartitionOutcome] = field(default_factory=list)
    errors: list[tuple[str, BaseException]] = field(default_factory=list)
    """(partition id, error) of every partition that failed."""
    skipped: list[str] = field(default_factory=list)
    """Partitions never started because the run was stopping."""

    def failed(self, partition: str, error: BaseException, control: RunControl) -> None:
        """A partition failed: its error is kept, and the others take no new batch."""
        log.error("partition %s failed: %s", partition, redact(str(error)))
        self.errors.append((partition, error))
        control.stop("failure", f"partition {partition} failed: {error}")
