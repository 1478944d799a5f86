"""A partition's turn in a lane of the local executor: it starts reading while the partition
before it in the lane writes its last batches, and writes once that partition has finished.

Without it a worker's sinks sit idle while its next partition's first query runs (a sort, a
remote server's first reply): from SecantusDB, W2's workers waited 1.3 s for it at each switch
of partition. Each lane still writes one partition at a time, so a sink's writer threads, the
order of a lane's commits and the run's in-flight batch budget are as without it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from etl.engine.control import RunControl


class PartitionSkipped(Exception):
    """The run began stopping before the partition's turn came: it wrote nothing."""


@dataclass
class Turn:
    previous: threading.Event | None = None
    """Set once the partition before this one in its lane has finished (None: the lane's first)."""
    read_ended: threading.Event = field(default_factory=threading.Event)
    """Set once this partition's reader has read its last batch, stopped or failed."""
    done: threading.Event = field(default_factory=threading.Event)
    """Set once this partition has finished (its outcome, skip or failure is recorded)."""

    def wait(self, control: RunControl) -> None:
        """Return when the partition may write; raise PartitionSkipped if the run is stopping."""
        if self.previous is not None:
            self.previous.wait()
        if control.stopping:
            raise PartitionSkipped
