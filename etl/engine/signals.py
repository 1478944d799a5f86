"""SIGTERM and SIGINT end a run cleanly: no new batches, in-flight ones committed and checkpointed.

ECS, AWS Batch and Kubernetes send SIGTERM before they kill a container; Ctrl-C sends SIGINT.
The first signal asks the run to stop; a second one while stopping gives up at once (the last
checkpoints still hold, so the next run resumes from them).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from etl.engine.control import RunControl

log = logging.getLogger(__name__)

HANDLED = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(control: RunControl) -> Iterator[None]:
    """Within the block, SIGTERM/SIGINT call `control.stop`; outside it the old handlers apply."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if control.stopping and control.stop_reason is not None and control.stop_reason.kind == "signal":
            raise KeyboardInterrupt(f"second {name}: stopping at once")
        log.warning("%s received: finishing the batches in flight, then stopping", name)
        control.stop("signal", f"stopped by {name}")

    previous = {sig: signal.signal(sig, handle) for sig in HANDLED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
