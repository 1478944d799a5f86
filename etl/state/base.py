"""What every checkpoint store offers the engine: leases, per-partition checkpoints, named values.

A backend module (``etl/state/<type>.py``) defines ``Config`` (pydantic, ``type: Literal[...]``)
and ``open_store(config, *, base_dir) -> StateStore``. Every backend keeps the same rules:
a checkpoint is durable when `save_checkpoint` returns; only one unexpired lease per job exists;
`clear` removes checkpoints and values but never the lease of the run that calls it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from etl.errors import RuntimeFailure
from etl.records import Json


@dataclass
class Checkpoint:
    """How far one partition got: everything before `resume_after` is committed in every sink."""

    partition: str
    """Partition.id."""
    resume_after: Json = None
    """Batch.resume_after of the last batch committed in every sink (None: start from the beginning)."""
    done: bool = False
    """The partition has been read to its end."""
    counts: dict[str, int] = field(default_factory=dict)
    """extracted, loaded, rejected, filtered, and rows:<target>.<table> per target table."""
    extra: dict[str, Json] = field(default_factory=dict)
    """Anything else the engine keeps (checksum accumulators...)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Lease:
    """The right to run a job until `expires_at`; `token` tells this holder's lease from a later one."""

    job: str
    holder: str
    expires_at: datetime
    token: str


class StateStore(Protocol):
    def acquire_lease(self, job: str, holder: str, ttl_seconds: float) -> Lease:
        """Take the job's lease; RuntimeFailure naming holder and expiry if another unexpired one exists."""

    def renew_lease(self, lease: Lease, ttl_seconds: float) -> Lease:
        """Extend a lease still held; raise RuntimeFailure when it was lost (expired and taken over)."""

    def release_lease(self, lease: Lease) -> None:
        """Give the lease up; does nothing when it is no longer ours."""

    def checkpoints(self, job: str) -> dict[str, Checkpoint]:
        """Every partition's checkpoint, by Partition.id."""

    def save_checkpoint(self, job: str, checkpoint: Checkpoint) -> None:
        """Replace the partition's checkpoint; atomic and durable on return."""

    def clear(self, job: str) -> None:
        """Forget every checkpoint and value of the job (`--full-refresh`); the lease stays."""

    def get_value(self, job: str, key: str) -> Json | None: ...

    def set_value(self, job: str, key: str, value: Json) -> None: ...

    # The ledger of an incremental job (etl/engine/ledger.py): per source table, an entry per source
    # key text saying what that record wrote, so its deletes and shrinks reach every target row.

    def ledger_get(self, job: str, table: str, keys: Sequence[str]) -> dict[str, Json]:
        """The entries of those `keys` that exist."""

    def ledger_put(self, job: str, table: str, entries: Mapping[str, Json | None]) -> None:
        """Replace entries (None removes one); durable on return."""

    def ledger_page(self, job: str, table: str, after: str | None, limit: int
                    ) -> tuple[list[tuple[str, Json]], str | None]:
        """At most `limit` entries after the cursor `after` (None: from the first), and the cursor
        to continue from (None when there are no more)."""

    def ledger_clear(self, job: str, table: str) -> None:
        """Forget the table's ledger (`clear` forgets every table's)."""

    def close(self) -> None: ...


def now() -> datetime:
    return datetime.now(UTC)


def new_lease(job: str, holder: str, ttl_seconds: float) -> Lease:
    return Lease(job, holder, now() + timedelta(seconds=ttl_seconds), uuid.uuid4().hex)


def lease_held(job: str, holder: str, expires_at: datetime) -> RuntimeFailure:
    """The error for a second run of a job while the first one's lease is unexpired."""
    until = expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return RuntimeFailure(
        f"job '{job}' is already running: its lease is held by '{holder}' until {until}",
        hint="wait for that run to finish, or for the lease to expire if that run died",
    )


def lease_lost(lease: Lease) -> RuntimeFailure:
    """The error for a holder whose lease expired and was taken over (it must stop writing)."""
    return RuntimeFailure(
        f"job '{lease.job}' lost its lease: '{lease.holder}' let it expire and another run took it over",
        hint="this run stopped; the run holding the lease continues the job",
    )


def to_epoch(moment: datetime) -> float:
    return moment.timestamp()


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
