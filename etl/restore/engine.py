"""What the restore commands need from a backup engine, as one object per engine.

Like sqlglot's dialects, `RestoreEngine` holds the behaviour every engine shares and each engine
module (sqlserver.py, oracle.py, postgres.py, mongo.py) subclasses it, overriding only what
differs: how its history is read, how a position is written, where a database stands now, and
whether backup files can be checked. `etl.restore.engines` is the registry the API and the
command dispatch through; nothing else compares engine names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from etl.errors import EtlError
from etl.restore.chain import Chain, RestorePlan, Target, UnreadableInput

Source = str | Path | Iterable[Mapping[str, Any]]
"""A history source: a file or folder, or rows (dicts) already read."""


class RestoreEngine:
    """One engine's restore vocabulary; subclasses override what differs."""

    name: ClassVar[str]
    """The engine's name everywhere in the project (sources, sinks, job files, messages)."""
    aliases: ClassVar[tuple[str, ...]] = ()
    """Other names accepted for it (the names restore used before)."""
    position_name: ClassVar[str] = "lsn"
    """How a checksum manifest's `position` names the engine's position: lsn, scn or ts."""
    point_hint: ClassVar[str] = "give an LSN or SCN as a number"
    """How to write a restore point, for messages."""
    verifies_files: ClassVar[bool] = False
    """Whether backups carry file checksums `verify_files` checks (load_history(verify_files=True))."""

    # -- reading a history -----------------------------------------------------------------

    def load_history(self, sources: Sequence[Source], *, wal_archive: str | Path | None = None,
                     verify_files: bool = False) -> Chain:
        """The engine's backup history as a Chain."""
        raise NotImplementedError

    def cannot_read(self, sources: Sequence[Source], takes: str) -> EtlError:
        return EtlError(f"{self.name}: cannot read a backup history from {len(sources)} source(s) of that "
                        "kind", hint=f"{self.name} takes {takes}")

    def verify_files(self, folder: str | Path) -> Any:
        """Check a backup's files against the checksums the engine recorded with it."""
        raise self.no_file_checksums()

    def no_file_checksums(self) -> UnreadableInput:
        return UnreadableInput(f"{self.name}: backups carry no file checksums to verify",
                               hint="leave verify_files out for this engine")

    # -- planning ------------------------------------------------------------------------

    def plan(self, chain: Chain, target: Any = None, *, full: str | None = None,
             sequence: Sequence[str] | None = None) -> RestorePlan:
        """The minimal restore sequence reaching `target` (or the check of a given `sequence`)."""
        point = self.to_position(target)
        if sequence is not None:
            return chain.check(list(sequence), point)
        return chain.plan(point, full=full)

    def to_position(self, target: Any) -> Target:
        """A target from Python code (None, a datetime, a number, the engine's own value) on the
        chain's number line."""
        if target is None or isinstance(target, datetime):
            return target
        native = self.native_position(target)
        if native is not None:
            return native
        try:
            return int(Decimal(str(target)))
        except ArithmeticError:
            raise EtlError(f"{self.name}: restore target {target!r} is not a position",
                           hint="give an LSN, SCN, oplog Timestamp or a datetime") from None

    def native_position(self, value: Any) -> int | None:
        """A position written the engine's own way (a PostgreSQL `X/Y` text, a bson Timestamp)."""
        return None

    # -- points as people write them -----------------------------------------------------------

    def parse_point(self, value: Any) -> Target:
        """A restore point from the job file or the command line: a position, a time, or None
        (`latest`)."""
        if value is None or value == "latest":
            return None
        if isinstance(value, bool):
            raise UnreadableInput(f"{self.name}: restore point {value} is not a position nor a time")
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        position = self.parse_position(text)
        if position is not None:
            return position
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            raise UnreadableInput(f"{self.name}: restore point {text!r} is neither a position nor a time",
                                  hint=f"{self.point_hint}, an ISO time, or 'latest'") from None

    def parse_position(self, text: str) -> int | None:
        """A position in the engine's notation, or None when `text` is not one."""
        return int(text) if text.isascii() and text.isdigit() else None

    def format_point(self, point: Target) -> str:
        if point is None:
            return "the latest point"
        if isinstance(point, datetime):
            return point.isoformat(sep=" ")
        return self.format_position(point)

    def format_position(self, position: int) -> str:
        return str(position)

    def manifest_position(self, point: int) -> dict[str, str]:
        """How a checksum manifest records a position: one name per engine, the engine's notation."""
        return {self.position_name: self.format_point(point)}

    # -- the live database ---------------------------------------------------------------------

    def current_position(self, reader: Any) -> int | None:
        """Where the database `reader` reads from stands now, when the engine can say (None: it
        cannot; a manifest then needs the backup's position given)."""
        return None
