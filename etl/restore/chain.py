"""The engine-neutral backup chain: backups, the rules that link them, and the restore planner.

Every engine's reader (sqlserver.py, oracle.py, postgres.py, mongo.py) turns its own metadata
into `Backup` values on one number line of positions (LSN, SCN, WAL LSN, oplog timestamp as
integers). The rules here are the ones all engines share: a restore starts from a full backup,
a differential applies to the full it names, an incremental applies on top of the backup it was
taken against, logs must be continuous from the last data backup to the target, and all links
must stay on one fork / incarnation / timeline of one database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, overload

from etl.errors import EtlError

Target = int | datetime | None
"""A restore point: a position (LSN, SCN, oplog timestamp as an integer), an instant, or None for
the latest point the history reaches."""


class Kind(StrEnum):
    FULL = "full"
    """A complete copy; every restore starts from one."""
    DIFFERENTIAL = "differential"
    """Changes since the full it names (cumulative): only the latest one is needed."""
    INCREMENTAL = "incremental"
    """Changes since the previous data backup: every link is needed."""
    LOG = "log"
    """A continuous range of the change log (transaction log, archived redo, WAL, oplog)."""


@dataclass(frozen=True)
class Backup:
    """One backup in an engine's history, on the engine's position number line."""

    name: str
    """How the user knows it (backup set name, tag, folder); every message names it."""
    kind: Kind
    start: int
    """Data backups: the position their contents are relative to (a differential's or incremental's
    base, a full's first position). Logs: the first position they contain."""
    end: int
    """The position the database is at once this backup is applied; the next log continues from here."""
    consistent: int | None = None
    """The earliest position a restore may stop at after this backup (None: `end`). Oracle datafiles
    are fuzzy up to ABSOLUTE_FUZZY_CHANGE#; PostgreSQL base backups up to their end-of-backup LSN."""
    base: str | None = None
    """Name of the backup this one was taken against, when the metadata names it. A differential
    without a known base and an incremental without one are linked by position instead."""
    base_alternatives: tuple[str, ...] = ()
    """Other backups this one applies to as well as `base`: they stand at the same position of the
    same database (a pg_combinebackup output and the incremental it was combined up to)."""
    missing_base: str | None = None
    """When the metadata names a base that is not in the history: how the metadata names it."""
    lineage_start: str | None = None
    """Fork / incarnation / timeline the backup starts on (SQL Server first_recovery_fork_guid,
    Oracle RESETLOGS_CHANGE#, PostgreSQL timeline)."""
    lineage_end: str | None = None
    """Fork / incarnation / timeline the backup ends on (None: same as `lineage_start`)."""
    fork_point: int | None = None
    """When `lineage_end` branched from `lineage_start` during this backup: the position of the
    branch (SQL Server fork_point_lsn). None: unknown (backups on the parent fork are then not
    told apart by position)."""
    system: str | None = None
    """Identity of the database (SQL Server family_guid, Oracle DBID, PostgreSQL system identifier)."""
    can_be_base: bool = True
    """False for a backup no differential or incremental may build on (SQL Server copy-only full,
    Oracle full backup that is not incremental level 0)."""
    finished: datetime | None = None
    """When the backup finished: the instant a restore of it represents (time targets)."""
    details: dict[str, Any] = field(default_factory=dict, compare=False)
    """The engine's own fields, kept for reports."""

    @property
    def ready_at(self) -> int:
        return self.end if self.consistent is None else self.consistent

    @property
    def ends_on(self) -> str | None:
        return self.lineage_start if self.lineage_end is None else self.lineage_end

    @property
    def is_data(self) -> bool:
        return self.kind is not Kind.LOG

    @property
    def is_empty_log(self) -> bool:
        """A log backup holding no change (first position = last position), taken while nothing
        was written: it still carries the time it was taken."""
        return self.kind is Kind.LOG and self.start == self.end


class ChainError(EtlError):
    """The backups do not form a chain that restores to the requested point."""

    exit_code = 3


class UnreadableInput(ChainError):
    """A backup history, backup folder, metadata export or restore point that cannot be read as
    given (missing, malformed, of the wrong type): a bad input, like a bad job file."""

    exit_code = 2


class BrokenChain(ChainError):
    """A backup's base is missing or is not the backup before it."""


class PositionGap(ChainError):
    """Consecutive backups leave positions (LSN, SCN, WAL, oplog) uncovered."""


class CopyOnlyMisuse(ChainError):
    """A differential or incremental was placed on a backup that can be no base."""


class LineageMismatch(ChainError):
    """Two linked backups are on different forks, incarnations or timelines."""


class SystemMismatch(ChainError):
    """Backups of different databases (system identifier, family GUID, DBID) were mixed."""


class WrongOrder(ChainError):
    """Backups are listed in an order the engine cannot apply."""


class TargetNotCovered(ChainError):
    """No backup or log reaches the requested restore point."""


@dataclass(frozen=True)
class RestorePlan:
    """The backups to restore, in order, and the point they reach."""

    engine: str
    steps: tuple[Backup, ...]
    target: Target
    reaches: int
    """The position the last step reaches (for a log: its end; recovery stops at the target)."""
    warnings: tuple[str, ...] = ()
    """What the plan cannot give (a point after the last backup is restored to the last log's end)."""
    unused: tuple[tuple[str, str], ...] = ()
    """Every backup (or history row) of the history the plan does not use, with why."""
    format_position: Callable[[int], str] = field(default=str, compare=False, repr=False)

    @property
    def names(self) -> list[str]:
        return [step.name for step in self.steps]

    @property
    def notes(self) -> list[str]:
        """How steps were linked when the metadata did not name the link (e.g. no differential_base_guid)."""
        return [f"{s.name}: {s.details['link']}" for s in self.steps if s.details.get("link")]

    def describe(self) -> str:
        """One line per step, then link notes, warnings and the unused backups with why."""
        lines = [f"{i + 1}. {s.kind.value:<12} {s.name}" for i, s in enumerate(self.steps)]
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"warning: {warning}" for warning in self.warnings]
        if self.unused:
            lines.append(f"not used ({len(self.unused)}):")
            lines += [f"  {name}: {why}" for name, why in self.unused]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON values: steps with their kind and positions, notes, warnings, unused rows."""
        target = self.target.isoformat() if isinstance(self.target, datetime) else \
            None if self.target is None else self.format_position(self.target)
        return {
            "engine": self.engine,
            "target": target,
            "reaches": self.format_position(self.reaches),
            "steps": [{"name": s.name, "kind": s.kind.value, "start": self.format_position(s.start),
                       "end": self.format_position(s.end),
                       "finished": s.finished.isoformat() if s.finished else None} for s in self.steps],
            "notes": self.notes,
            "warnings": list(self.warnings),
            "unused": [{"name": name, "why": why} for name, why in self.unused],
        }


@dataclass
class Chain:
    """An engine's backup history, able to plan and check restores."""

    engine: str
    backups: list[Backup]
    format_position: Callable[[int], str] = str
    """Shows a position the way the engine does (LSN `0/3000028`, `Timestamp(…)`)."""
    stops_after_last_log: bool = False
    """Whether the engine, asked for a time after its last log backup, restores to the end of that
    log (SQL Server's STOPAT does, with a message, and so does dbatools); other engines stop
    with an error when recovery ends before the target."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """History rows that are no backup a restore can use (file or partial backups, unknown types),
    with why: every plan lists them as unused."""

    def __post_init__(self) -> None:
        self._by_name = {b.name: b for b in self.backups}
        if len(self._by_name) != len(self.backups):
            names = [b.name for b in self.backups]
            dupes = sorted({name for name in names if names.count(name) > 1})
            raise UnreadableInput(f"{self.engine}: backup names are not unique: {', '.join(dupes)}",
                                  hint="give each backup a distinct name (backup set name, tag or folder)")

    def clusters(self) -> list[Chain]:
        """One chain per database holding a full backup (by `system`), for histories that mix
        several; backups that name no system belong to each."""
        systems = sorted({b.system for b in self.backups if b.kind is Kind.FULL and b.system is not None})
        if len(systems) < 2:
            return [self]
        return [Chain(self.engine, [b for b in self.backups if b.system in (None, system)],
                      self.format_position, self.stops_after_last_log, self.skipped) for system in systems]

    def get(self, name: str) -> Backup:
        try:
            return self._by_name[name]
        except KeyError:
            raise ChainError(f"{self.engine}: no backup named {name!r} in the history",
                             hint=f"known backups: {', '.join(self._by_name)}") from None

    def _pos(self, position: int) -> str:
        return self.format_position(position)

    # -- planning --------------------------------------------------------------------------

    def plan(self, target: Target = None, *, full: str | None = None) -> RestorePlan:
        """The shortest valid sequence reaching `target`: a full, the latest applicable differential
        or every incremental link, then the logs. Starts from the latest full that works (or from
        `full` when given); raises the error met from the latest full when none works.

        With forks (a backup that starts on one fork and ends on another), the plan follows one
        path of forks: `latest` is the newest point of the newest fork, a time resolves on the fork
        that holds it, a position on the newest fork whose path reaches it."""
        target = as_utc(target)
        if isinstance(target, datetime) and any(b.finished is None for b in self.backups):
            undated = min(b.name for b in self.backups if b.finished is None)
            raise TargetNotCovered(f"{self.engine}: {undated} carries no time, so a restore point cannot "
                                   "be given as a time", hint="give the target as a position (LSN, SCN, ts)")
        if full and self.get(full).kind is not Kind.FULL:
            raise WrongOrder(f"{self.engine}: {full} is a {self.get(full).kind.value} backup; a restore "
                             "starts from a full backup", hint="name a full backup, or leave `full` out")
        if self.skipped and not any(b.kind is Kind.FULL for b in self.backups):
            shown = "; ".join(f"{name}: {why}" for name, why in sorted(self.skipped)[:5])
            more = f"; and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
            raise TargetNotCovered(f"{self.engine}: the history holds no full backup; {len(self.skipped)} "
                                   f"row(s) are no backup a restore can use ({shown}{more})",
                                   hint="check the export's type column and its encoding")
        if len(clusters := self.clusters()) > 1:
            fulls = [sorted((b.system, b.name) for b in c.backups if b.kind is Kind.FULL) for c in clusters]
            described = "; ".join(f"{names[0][0]}: {', '.join(name for _, name in names)}" for names in fulls)
            raise ChainError(f"{self.engine}: the history holds backups of {len(clusters)} databases "
                             f"({described}); a restore plan is for one",
                             hint="plan each of Chain.clusters() (the command prints one plan per database)")
        paths = [path for path in self._fork_paths(target)
                 if full is None or any(b.name == full for b in path[0])]
        if not paths:
            raise LineageMismatch(f"{self.engine}: {full} is not on the fork of {self._target_text(target)}",
                                  hint="name a full backup of that fork, or leave `full` out")
        first_error: ChainError | None = None
        for backups, off_path, restriction in paths:
            try:
                plan = self._within(backups)._plan_unforked(target, full)
                if target is None:
                    self._within(backups)._check_nothing_newer(plan)
            except ChainError as error:
                if restriction and first_error is None:
                    error = type(error)(f"{error.message} ({restriction})",
                                        hint="export the fork each backup starts on and where forks "
                                        "branched, or take a full backup on the newest fork")
                first_error = first_error or error
                continue
            return replace(plan, unused=self._unused(plan, off_path),
                           format_position=self.format_position,
                           warnings=plan.warnings + ((restriction,) if restriction else ()))
        assert first_error is not None
        raise first_error

    def _within(self, backups: list[Backup]) -> Chain:
        if len(backups) == len(self.backups):
            return self
        return Chain(self.engine, backups, self.format_position, self.stops_after_last_log)

    def _plan_unforked(self, target: Target, full: str | None) -> RestorePlan:
        fulls = [self.get(full)] if full else self._fulls_before(target)
        if not fulls:
            raise TargetNotCovered(f"{self.engine}: no full backup is consistent at or before "
                                   f"{self._target_text(target)}",
                                   hint="choose a later restore point or add the full backup's metadata")
        plans: list[RestorePlan] = []
        first_error: ChainError | None = None
        for candidate in fulls:
            try:
                plans.append(self._plan_from(candidate, target))
            except ChainError as error:
                first_error = first_error or error
        if not plans:
            assert first_error is not None
            raise first_error
        # Latest point: the plan that goes furthest; a given point: the fewest backups, then the
        # latest full (fulls are tried latest first and max keeps the first of equals).
        return max(plans, key=lambda p: (p.reaches if target is None else 0, -len(p.steps)))

    # -- forks -----------------------------------------------------------------------------

    def _fork_edges(self) -> dict[str, tuple[str, int | None]]:
        """Each fork that branched from another during a backup: child -> (parent, branch position
        when the metadata gives it)."""
        edges: dict[str, tuple[str, int | None]] = {}
        for b in sorted(self.backups, key=_order):
            if b.lineage_start is not None and b.lineage_end is not None and b.lineage_start != b.lineage_end:
                known = edges.get(b.lineage_end)
                if known is None or (known[0] == b.lineage_start and b.fork_point is not None
                                     and (known[1] is None or b.fork_point < known[1])):
                    edges[b.lineage_end] = (b.lineage_start, b.fork_point)
        return edges

    def _fork_paths(self, target: Target) -> list[tuple[list[Backup], dict[str, str], str | None]]:
        """The fork to plan on and the backups on its path, in the order to try; one unrestricted
        entry when no backup crosses from one fork to another. When backups name only the fork
        they end on (dbatools exports no first fork), where forks branched is unknown: a plan
        then stays on one fork."""
        edges = self._fork_edges()
        unlinked = not edges and any(b.lineage_start is None and b.lineage_end is not None
                                     for b in self.backups)
        forks = {f for b in self.backups for f in (b.lineage_start, b.ends_on) if f is not None}
        if not edges and not (unlinked and len(forks) > 1):
            return [(self.backups, {}, None)]
        chosen = self._forks_for(target, forks, {parent for parent, _ in edges.values()})
        if unlinked:
            return [(*self._on_fork_alone(fork), f"planned on fork {fork} alone: the history does not say "
                     "where its forks branched (its backups name only the fork they end on)")
                    for fork in chosen]
        return [(*self._on_path(fork, edges), None) for fork in chosen]

    def _forks_for(self, target: Target, forks: set[str], parents: set[str]) -> list[str]:
        """`latest`: the newest fork; a time: the fork of the first backup finished after it (the
        newest when none is); a position: every fork, newest first."""
        def newest(fork: str) -> tuple[datetime, int, str]:
            on = [b for b in self.backups if b.ends_on == fork]
            return (max((as_utc(b.finished) or datetime.min for b in on), default=datetime.min),
                    max((b.end for b in on), default=0), fork)

        by_age = sorted(forks, key=newest, reverse=True)
        newest_leaf = next((f for f in by_age if f not in parents), by_age[0])
        if target is None:
            return [newest_leaf]
        if isinstance(target, datetime):
            later = sorted((b for b in self.backups if b.ends_on is not None and b.finished is not None
                            and as_utc(b.finished) >= target), key=lambda b: (as_utc(b.finished), b.name))
            return [later[0].ends_on] if later and later[0].ends_on else [newest_leaf]
        return by_age

    def _on_fork_alone(self, fork: str) -> tuple[list[Backup], dict[str, str]]:
        off = {b.name: f"on another fork: it ends on {b.ends_on}, and the history does not say where forks "
                       f"branched, so the plan stays on {fork}"
               for b in self.backups if b.ends_on is not None and b.ends_on != fork}
        return [b for b in self.backups if b.name not in off], off

    def _on_path(self, fork: str,
                 edges: dict[str, tuple[str, int | None]]) -> tuple[list[Backup], dict[str, str]]:
        """The backups on the way from the oldest fork to `fork`: a backup that stays on an earlier
        fork past the point the next fork branched from it belongs to the abandoned branch."""
        path, branch_at = [fork], {}
        while path[-1] in edges and edges[path[-1]][0] not in path:
            parent, point = edges[path[-1]]
            if point is not None:
                branch_at[parent] = point
            path.append(parent)
        order = {f: i for i, f in enumerate(reversed(path))}

        def off_path(b: Backup) -> str | None:
            first, last = b.lineage_start or b.ends_on, b.ends_on or b.lineage_start
            if first is None or last is None:
                return None
            if first not in order or last not in order or order[first] > order[last]:
                return f"on another fork: it ends on {last}, not on the way to {fork}"
            if last in branch_at and b.end > branch_at[last]:
                return f"on the abandoned branch of {last}: it passes {self._pos(branch_at[last])}, " \
                       "where the restore point's fork branched off"
            return None
        off = {b.name: why for b in self.backups if (why := off_path(b)) is not None}
        return [b for b in self.backups if b.name not in off], off

    # -- one fork --------------------------------------------------------------------------

    def _check_nothing_newer(self, plan: RestorePlan) -> None:
        """The latest point is the newest the history holds: a log beyond the plan's reach, or a
        data backup there that cannot be linked (its base is missing), is a gap, not a shorter chain."""
        for b in sorted(self.backups, key=_order):
            if b.end <= plan.reaches:
                continue
            if b.is_data and b.missing_base is not None:
                self._check_data_link(plan.steps[0], plan.steps[-1], b)
            if b.kind is Kind.LOG:
                self._raise_uncovered(list(plan.steps), None)

    def _fulls_before(self, target: Target) -> list[Backup]:
        fulls = [b for b in self.backups if b.kind is Kind.FULL and self._at_or_before(b, target)]
        return sorted(fulls, key=lambda b: (b.ready_at, as_utc(b.finished) or datetime.min, b.name),
                      reverse=True)

    def _at_or_before(self, backup: Backup, target: Target) -> bool:
        if target is None:
            return True
        if isinstance(target, datetime):
            return backup.finished is not None and as_utc(backup.finished) <= target
        return backup.ready_at <= target

    def _reached(self, backup: Backup, target: Target) -> bool:
        """Whether applying `backup` brings the database to (or past) the target."""
        if target is None:
            return False
        if isinstance(target, datetime):
            return backup.finished is not None and as_utc(backup.finished) >= target
        return backup.end >= target

    def _plan_from(self, full: Backup, target: Target) -> RestorePlan:
        steps = [full]
        while (data_step := self._best_data_step(steps, target)) is not None:
            self._check_link(steps, data_step)
            steps.append(data_step)
        logs = sorted((b for b in self.backups if b.kind is Kind.LOG), key=_order)
        current = steps[-1]
        if self._exactly_at(current, target):
            return RestorePlan(self.engine, tuple(steps), target, current.end)
        warnings: tuple[str, ...] = ()
        while True:
            covering = [log for log in logs if log not in steps and self._continues(current, log, target)]
            if not covering:
                if target is None and not current.is_data:
                    break
                if self._past_the_end(current, target):
                    warnings = (self._past_the_end_warning(current, target),)
                    break
                self._raise_uncovered(steps, target)
            same_lineage = [log for log in covering if self._same_lineage(current, log)]
            log = max(same_lineage or covering, key=lambda b: self._log_preference(b, target))
            self._check_link(steps, log)
            steps.append(log)
            current = log
            if self._reached(current, target):
                break
        return RestorePlan(self.engine, tuple(steps), target, current.end, warnings)

    @staticmethod
    def _continues(current: Backup, log: Backup, target: Target) -> bool:
        """Whether `log` can follow `current`: it holds the position replay continues from, or it is
        an empty log at that position taken later (it carries a later time, for time targets)."""
        if log.start <= current.end < log.end:
            return True
        return (log.is_empty_log and log.end == current.end and isinstance(target, datetime)
                and log.finished is not None and current.finished is not None
                and as_utc(log.finished) > as_utc(current.finished))

    def _log_preference(self, log: Backup, target: Target) -> tuple:
        """The log that goes furthest; among empty logs at one position, the first reaching the time."""
        reaches = self._reached(log, target)
        seconds = ((as_utc(log.finished) or datetime.min) - datetime.min).total_seconds()
        return log.end, reaches, -seconds if reaches else seconds, log.name

    def _past_the_end(self, current: Backup, target: Target) -> bool:
        """A time after everything the history holds, with a log last, on an engine that then
        restores to the end of the last log."""
        if not self.stops_after_last_log or not isinstance(target, datetime) or current.is_data:
            return False
        return not any(b.end > current.end or (b.finished is not None and current.finished is not None
                                                and as_utc(b.finished) > as_utc(current.finished))
                       for b in self.backups)

    def _past_the_end_warning(self, current: Backup, target: Target) -> str:
        return (f"{self._target_text(target)} is after the last backup: the plan restores to the end of "
                f"{current.name} ({self._pos(current.end)}"
                + (f", {current.finished.isoformat(sep=' ')}" if current.finished else "")
                + "); later changes are in no backup")

    def _exactly_at(self, backup: Backup, target: Target) -> bool:
        """Whether the target is the point this backup restores to, so no log is needed."""
        if target is None:
            return backup.ready_at <= backup.end and not any(
                b.kind is Kind.LOG and b.start <= backup.end < b.end for b in self.backups)
        if isinstance(target, datetime):
            return as_utc(backup.finished) == target
        return backup.ready_at <= target <= backup.end

    @staticmethod
    def _same_lineage(current: Backup, step: Backup) -> bool:
        return current.ends_on is None or step.lineage_start is None or current.ends_on == step.lineage_start

    def _best_data_step(self, steps: list[Backup], target: Target) -> Backup | None:
        """The applicable differential or incremental that goes furthest without passing the target."""
        candidates = [b for b in self.backups if self._applies(steps, b, target)]
        return max(candidates, key=lambda b: (b.end, b.name)) if candidates else None

    def _applies(self, steps: list[Backup], b: Backup, target: Target) -> bool:
        full, current = steps[0], steps[-1]
        if b.kind not in (Kind.DIFFERENTIAL, Kind.INCREMENTAL) or b.end <= current.end \
                or not self._at_or_before(b, target) or not self._same_lineage(current, b):
            return False
        if b.base is not None:
            return b.base == current.name or current.name in b.base_alternatives \
                or (b.kind is Kind.DIFFERENTIAL and b.base == full.name)
        return b.missing_base is None and b.start <= current.end and current.can_be_base

    # -- what a plan leaves out ------------------------------------------------------------

    def _unused(self, plan: RestorePlan, off_path: dict[str, str]) -> tuple[tuple[str, str], ...]:
        """Every history row the plan does not use, with why (skipped rows first, by name)."""
        used = set(plan.names)
        full = plan.steps[0]
        last_data = [s for s in plan.steps if s.is_data][-1]
        rows = sorted(self.skipped)
        for b in sorted(self.backups, key=_order):
            if b.name in used:
                continue
            if b.name in off_path:
                why = off_path[b.name]
            else:
                why = self._why_unused(b, plan, full, last_data)
            rows.append((b.name, why))
        return tuple(rows)

    def _why_unused(self, b: Backup, plan: RestorePlan, full: Backup, last_data: Backup) -> str:
        if b.kind is not Kind.LOG and plan.target is not None and not self._at_or_before(b, plan.target):
            return "after the restore point"
        covered_by = next((s for s in plan.steps if s.is_data and s.end >= b.end), None)
        if b.kind is Kind.FULL:
            if not b.can_be_base:
                return f"{b.details.get('why_no_base', 'can be no base')}: the plan starts from {full.name}"
            if b.ready_at < full.ready_at:
                return f"superseded by the later full {full.name}"
            return f"not needed: the plan from {full.name} is shorter or reaches further"
        if b.kind is Kind.LOG:
            if covered_by is not None:
                return f"superseded by {covered_by.name}, which already reaches {self._pos(covered_by.end)}"
            if b.end > plan.reaches:
                return "after the restore point" if plan.target is not None \
                    else f"after the point the plan reaches ({self._pos(plan.reaches)})"
            return "not needed: the plan's logs already cover its positions"
        if b.missing_base is not None:
            return f"missing base: {b.missing_base} is not in the history"
        if covered_by is not None:
            return f"superseded by {covered_by.name}"
        if b.base is not None and b.base != full.name and b.base not in plan.names:
            return f"unusable {b.kind.value}: based on {b.base}, not on {full.name}"
        return f"unusable {b.kind.value}: it does not follow {last_data.name} " \
               f"(holds changes since {self._pos(b.start)})"

    def _raise_uncovered(self, steps: list[Backup], target: Target) -> None:
        current = steps[-1]
        later = [b for b in self.backups if b.start > current.end and b.kind in (Kind.LOG, Kind.FULL)]
        if later:
            following = min(later, key=lambda b: b.start)
            raise PositionGap(
                f"{self.engine}: gap between {current.name} (ends at {self._pos(current.end)}) and "
                f"{following.name} (starts at {self._pos(following.start)}): positions "
                f"{self._pos(current.end)}..{self._pos(following.start)} are in no backup",
                hint="find the missing log backup, or restore to a point before the gap")
        if current.ready_at > current.end:
            raise TargetNotCovered(
                f"{self.engine}: {current.name} is consistent only once its log from "
                f"{self._pos(current.end)} to {self._pos(current.ready_at)} is replayed, and no log "
                f"backup covers {self._pos(current.end)}",
                hint="add the log (archived WAL, archived redo) taken during that backup")
        raise TargetNotCovered(
            f"{self.engine}: nothing after {current.name} (ends at {self._pos(current.end)}) reaches "
            f"{self._target_text(target)}",
            hint="take or add a later log backup, or choose an earlier restore point")

    def _target_text(self, target: Target) -> str:
        if target is None:
            return "the latest point"
        if isinstance(target, datetime):
            return target.isoformat()
        return self._pos(target)

    # -- checking a given sequence ----------------------------------------------------------

    def check(self, names: Sequence[str], target: Target = None) -> RestorePlan:
        """Check a restore sequence the user intends to run, step by step, the way the engine would."""
        target = as_utc(target)
        steps = [self.get(name) for name in names]
        if not steps:
            raise ChainError(f"{self.engine}: the restore sequence is empty")
        if steps[0].kind is not Kind.FULL:
            raise WrongOrder(f"{self.engine}: the restore sequence starts with {steps[0].kind.value} "
                             f"{steps[0].name}; it must start with a full backup",
                             hint="put the full backup first")
        for earlier, later in zip(steps, steps[1:], strict=False):
            if earlier.is_data == later.is_data and later.end <= earlier.end \
                    and not self._continues(earlier, later, target):
                raise WrongOrder(f"{self.engine}: {later.name} (at {self._pos(later.end)}) is listed after "
                                 f"{earlier.name} (at {self._pos(earlier.end)}) but is older",
                                 hint="apply backups oldest first")
        for i in range(1, len(steps)):
            self._check_link(steps[:i], steps[i])
        warnings: tuple[str, ...] = ()
        if target is not None and not self._reached(steps[-1], target) \
                and not self._exactly_at(steps[-1], target):
            if not self._within(self._fork_paths(target)[0][0])._past_the_end(steps[-1], target):
                raise TargetNotCovered(f"{self.engine}: the sequence ends with {steps[-1].name} at "
                                       f"{self._pos(steps[-1].end)}, before {self._target_text(target)}")
            warnings = (self._past_the_end_warning(steps[-1], target),)
        return RestorePlan(self.engine, tuple(steps), target, steps[-1].end, warnings,
                           format_position=self.format_position)

    def _check_link(self, previous: list[Backup], step: Backup) -> None:
        """Raise the precise error if `step` cannot follow `previous` (which starts with a full)."""
        full, current = previous[0], previous[-1]
        if step.system is not None and full.system is not None and step.system != full.system:
            raise SystemMismatch(f"{self.engine}: {step.name} belongs to database {step.system}, "
                                 f"{full.name} to database {full.system}",
                                 hint="a chain may only hold backups of one database")
        if step.kind is Kind.FULL:
            raise WrongOrder(f"{self.engine}: full backup {step.name} cannot follow {current.name}; "
                             "a restore holds one full backup, first")
        if step.is_data and not current.is_data:
            raise WrongOrder(f"{self.engine}: {step.kind.value} {step.name} cannot follow log "
                             f"{current.name}; data backups come before the logs",
                             hint="restore the differential/incremental before any log")
        if step.is_data:
            self._check_data_link(full, current, step)
        elif step.start > current.end:
            raise PositionGap(
                f"{self.engine}: gap between {current.name} (ends at {self._pos(current.end)}) and "
                f"{step.name} (starts at {self._pos(step.start)})",
                hint="find the log backup that covers the gap")
        elif step.end <= current.end and not step.is_empty_log:
            raise WrongOrder(f"{self.engine}: log {step.name} ends at {self._pos(step.end)}, which "
                             f"{current.name} already passed ({self._pos(current.end)})",
                             hint="list logs in position order and leave out those already covered")
        if current.ends_on is not None and step.lineage_start is not None \
                and step.lineage_start != current.ends_on:
            raise LineageMismatch(f"{self.engine}: {step.name} starts on {step.lineage_start} but "
                                  f"{current.name} ends on {current.ends_on}",
                                  hint="use backups of one fork/incarnation/timeline")

    def _check_data_link(self, full: Backup, current: Backup, step: Backup) -> None:
        if step.missing_base is not None:
            raise BrokenChain(f"{self.engine}: {step.kind.value} {step.name} is based on "
                              f"{step.missing_base}, which is not in the history (the restore "
                              f"reaches {current.name} at {self._pos(current.end)})",
                              hint="add the base backup's metadata, or restore without this backup")
        base_name = step.base
        expected = full if step.kind is Kind.DIFFERENTIAL else current
        if not expected.can_be_base:
            raise CopyOnlyMisuse(f"{self.engine}: {step.kind.value} {step.name} cannot apply to "
                                 f"{expected.name}: {expected.name} can be no base "
                                 f"({expected.details.get('why_no_base', 'copy-only')})"
                                 + (f"; its base is {base_name}" if base_name else ""),
                                 hint="restore the base full instead")
        if base_name is not None and base_name != expected.name \
                and expected.name not in step.base_alternatives \
                and not (step.kind is Kind.DIFFERENTIAL and base_name == current.name):
            base = self.get(base_name)
            later = "a later full that became the new base" if base.kind is Kind.FULL \
                and base.ready_at > expected.ready_at else f"{base.kind.value} {base.name}"
            raise BrokenChain(f"{self.engine}: {step.kind.value} {step.name} is based on {base_name} "
                              f"({later}), not on {expected.name}",
                              hint=f"restore {base_name} instead of {expected.name}")
        if base_name is None and step.start > current.end:
            raise BrokenChain(f"{self.engine}: {step.kind.value} {step.name} holds changes since "
                              f"{self._pos(step.start)} but {current.name} only reaches "
                              f"{self._pos(current.end)}: the backup between them is missing",
                              hint="add the missing incremental, or restore to a point before it")
        if step.end <= current.end:
            raise WrongOrder(f"{self.engine}: {step.kind.value} {step.name} (at {self._pos(step.end)}) "
                             f"is older than {current.name} (at {self._pos(current.end)})",
                             hint="apply backups oldest first")


def _order(backup: Backup) -> tuple[int, int, str]:
    """A listing-independent order of backups: by position, then name."""
    return backup.start, backup.end, backup.name


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
@overload
def as_utc(value: Target) -> Target: ...
def as_utc(value: Target) -> Target:
    """A time as naive UTC (aware times converted), so exported times and targets compare."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def first_present(row: dict[str, Any], *names: str) -> Any:
    """The value of the first of `names` present in `row` (metadata exported with different casings)."""
    # a CSV row longer than its header holds the extra cells under None
    lowered = {key.lower(): value for key, value in row.items() if isinstance(key, str)}
    for name in names:
        value = lowered.get(name.lower())
        if value is not None and value != "":
            return value
    return None

