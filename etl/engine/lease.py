"""Hold the job's lease for the whole run: acquire, renew in the background, release at the end.

The lease stops two runs of one job from writing the same checkpoints. It expires on its own
when a run dies without releasing it (SIGKILL, a lost container), so the next run can start once
`ttl` seconds have passed; a live run renews it every `ttl / 3` seconds. A run on the same host
takes over at once a lease whose holder process is dead (etl/state/liveness.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from etl.redact import redact
from etl.state.base import Lease, StateStore
from etl.state.liveness import holder_identity

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 60.0


def holder_name() -> str:
    """Who holds a lease: host, process id and its start time, enough to find the run and to
    tell it from a later process given the same pid."""
    return holder_identity()


class LeaseKeeper:
    def __init__(
        self,
        store: StateStore,
        name: str,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        on_lost: Callable[[str], None],
    ) -> None:
        self.store = store
        self.name = name
        self.ttl = ttl
        self._on_lost = on_lost
        self.lease: Lease | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LeaseKeeper:
        self.lease = self.store.acquire_lease(self.name, holder_name(), self.ttl)
        self._thread = threading.Thread(target=self._renew, name="lease", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                assert self.lease is not None
                self.lease = self.store.renew_lease(self.lease, self.ttl)
            except Exception as error:  # a lost lease must stop the run, whatever the cause
                message = redact(str(error))
                log.error("lost the lease of job %s: %s", self.name, message)
                self._on_lost(f"lost the lease of job {self.name}: {message}")
                return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lease is not None:
            self.store.release_lease(self.lease)
