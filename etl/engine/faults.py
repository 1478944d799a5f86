"""Test-only fault points: make a crash happen at an exact moment instead of sleeping for it.

`ETL_TEST_FAULT=<action>:<point>:<n>[:<where>]` fires the n-th time (1-based) this process reaches
`point` (at `where`, when given: a partition id such as `mongo.patients#1/2`):
  action  `kill` (SIGKILL to this process: nothing is flushed, nothing is released),
          `term` (SIGTERM to this process, as a scheduler stopping it would) or
          `crash` (raise RuntimeError, as a defect would)
  point   `read`       after a batch is read, before any sink sees it
          `write`      after one sink wrote a batch (before the other sinks, the dead letters
                       and the checkpoint)
          `batch`      after a batch is committed in every sink and checkpointed
          `validate`   when validation starts (before any target is read)
          `validated`  after validation computed its result, before the verdict is saved
          `caught-up`  in an incremental run, each time a table has no more changes waiting
                       (`--follow` reaches it again on every idle wait)

Unset (always, outside tests) it costs one dictionary lookup per call. A malformed value fails
loudly at the first point reached rather than silently never firing.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass

ENVIRONMENT = "ETL_TEST_FAULT"
ACTIONS = ("kill", "term", "crash")
POINTS = ("read", "write", "batch", "validate", "validated", "caught-up")


@dataclass(frozen=True)
class Fault:
    action: str
    point: str
    nth: int
    where: str | None

    @classmethod
    def parse(cls, text: str) -> Fault:
        parts = text.split(":", 3)
        if len(parts) < 3 or parts[0] not in ACTIONS or parts[1] not in POINTS or not parts[2].isdigit() \
                or int(parts[2]) < 1:
            raise ValueError(f"{ENVIRONMENT}={text!r}: expected <{'|'.join(ACTIONS)}>:<{'|'.join(POINTS)}>:"
                             "<n >= 1>[:<partition id>]")
        return cls(parts[0], parts[1], int(parts[2]), parts[3] if len(parts) == 4 else None)


_lock = threading.Lock()
_reached: dict[tuple[str, str | None], int] = {}


def reach(point: str, where: str | None = None) -> None:
    """Fire the configured fault if this is its moment; otherwise do nothing."""
    text = os.environ.get(ENVIRONMENT)
    if not text:
        return
    fault = Fault.parse(text)
    if fault.point != point or (fault.where is not None and fault.where != where):
        return
    with _lock:
        key = (point, fault.where)
        _reached[key] = _reached.get(key, 0) + 1
        fire = _reached[key] == fault.nth
    if not fire:
        return
    if fault.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault.action == "term":
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise RuntimeError(f"test fault {text!r} fired")
