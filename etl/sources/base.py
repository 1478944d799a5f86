"""What every source offers the engine. Engine specifics stay in each source's own module.

A source module (``etl/sources/<type>.py``) defines:
  * ``Config``: a pydantic model (``extra="forbid"``) of its section in the job file, with
    ``type: Literal["<type>"]`` and ``tables: dict[str, <TableConfig subclass of SourceTable>]``;
  * ``open_source(name, config, limits) -> Source``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from etl.records import Batch, Json, Partition


class SourceTable(BaseModel):
    """Options every source accepts for one table or collection; sources subclass it."""

    model_config = ConfigDict(extra="forbid")

    mapping: str
    """Path of the mapping file, relative to the job file."""
    partitions: int = 1
    """How many key ranges to split the table into for parallel extraction."""


@dataclass(frozen=True)
class BatchLimits:
    """A batch ends at whichever limit is reached first; memory never grows with table size."""

    records: int = 5000
    bytes: int = 16 * 1024 * 1024


class Source(Protocol):
    name: str

    def check(self) -> None:
        """Connect and check every configured table exists; raise EtlError naming what does exist."""

    def plan(self, table: str, partitions: int) -> list[Partition]:
        """Split `table` into at most `partitions` key ranges that cover every record exactly once."""

    def read(
        self,
        partition: Partition,
        *,
        resume_after: Json = None,
        fields: Sequence[str] | None = None,
    ) -> Iterator[Batch]:
        """Yield batches in key order, starting after `resume_after` (a Batch.resume_after value).

        `fields`: top-level source fields the mapping uses (projection pushdown); None = all.
        """

    def key_text(self, table: str, record: dict) -> str:
        """The record's key as text for reports and dead letters (never other field values)."""

    def sample(self, table: str, n: int) -> list[dict]:
        """The first `n` records in key order, for `--plan` and notebook previews."""

    def count(self, table: str) -> int | None:
        """How many records `table` holds by the source's own count (`COUNT(*)`, `countDocuments`,
        with the table's filter), not by reading them; None where only reading can tell."""

    def close(self) -> None: ...
