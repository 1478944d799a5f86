"""Oracle RMAN backup history: rows of V$BACKUP_SET, V$BACKUP_DATAFILE and V$BACKUP_REDOLOG as a Chain.

Column meanings (Oracle Database Reference):
- V$BACKUP_SET https://docs.oracle.com/en/database/oracle/oracle-database/19/refrn/V-BACKUP_SET.html
  BACKUP_TYPE D = datafile full or level 0, I = incremental, L = archived redo log; INCREMENTAL_LEVEL.
- V$BACKUP_DATAFILE https://docs.oracle.com/en/database/oracle/oracle-database/19/refrn/V-BACKUP_DATAFILE.html
  INCREMENTAL_CHANGE#: "all blocks changed after the incremental change number are included in this
  backup; 0 for a full backup"; CHECKPOINT_CHANGE#: "all changes up to the checkpoint change number
  are included"; ABSOLUTE_FUZZY_CHANGE#: "highest change number in this backup" (recovery must go at
  least that far); RESETLOGS_CHANGE#: the incarnation the datafile belonged to. FILE# 0 is the control file.
- V$BACKUP_REDOLOG https://docs.oracle.com/en/database/oracle/oracle-database/19/refrn/V-BACKUP_REDOLOG.html
  FIRST_CHANGE# / NEXT_CHANGE# bound each archived log; SEQUENCE#, THREAD#, RESETLOGS_CHANGE#.
- Backup types https://docs.oracle.com/cd/B19306_01/backup.102/b14191/rcmconc1005.htm: a full backup
  (not level 0) "cannot be the parent for a subsequent incremental backup"; a cumulative level 1
  holds the blocks changed since the last level 0, a differential level 1 those since the last level 0 or 1.

A backup is the backup sets sharing a TAG (join V$BACKUP_PIECE.TAG into the set rows), or one set
when no tag is given. Datafiles of one backup are checkpointed at different SCNs in an online
backup, so links are made per datafile: a level 1's parent is the backup whose CHECKPOINT_CHANGE#
equals its INCREMENTAL_CHANGE# for every datafile. A level 1 whose parent is a level 0 is
cumulative (only the latest is needed); one whose parent is a level 1 is differential (every link
is needed). Planning covers one redo thread (single-instance databases).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from etl.inputs import csv_rows, json_rows, parse_json, read_text, whole_number
from etl.restore.chain import Backup, Chain, ChainError, Kind, UnreadableInput, first_present
from etl.restore.engine import RestoreEngine, Source

VIEW_QUERIES = {
    "v$backup_set": "SELECT s.SET_STAMP, s.SET_COUNT, s.BACKUP_TYPE, s.INCREMENTAL_LEVEL, s.COMPLETION_TIME,"
                    " (SELECT MIN(p.TAG) FROM V$BACKUP_PIECE p WHERE p.SET_STAMP = s.SET_STAMP"
                    " AND p.SET_COUNT = s.SET_COUNT) AS TAG FROM V$BACKUP_SET s",
    "v$backup_datafile": "SELECT SET_STAMP, SET_COUNT, FILE#, INCREMENTAL_LEVEL, INCREMENTAL_CHANGE#,"
                         " CHECKPOINT_CHANGE#, CHECKPOINT_TIME, ABSOLUTE_FUZZY_CHANGE#, RESETLOGS_CHANGE#"
                         " FROM V$BACKUP_DATAFILE",
    "v$backup_redolog": "SELECT SET_STAMP, SET_COUNT, THREAD#, SEQUENCE#, RESETLOGS_CHANGE#, FIRST_CHANGE#,"
                        " NEXT_CHANGE#, NEXT_TIME FROM V$BACKUP_REDOLOG",
}
"""What `read_views` selects (and what the exported files hold)."""


def chain_from_views(backup_sets: Iterable[Mapping[str, Any]], datafiles: Iterable[Mapping[str, Any]],
                     redologs: Iterable[Mapping[str, Any]] = ()) -> Chain:
    """A Chain from the rows of the three views (column names in any case)."""
    sets = {_set_key(row): dict(row) for row in backup_sets}
    groups: dict[str, list[dict]] = defaultdict(list)
    set_of_group: dict[str, dict] = {}
    for row in datafiles:
        row = dict(row)
        if _int(row, "FILE#") == 0:
            continue  # the control file copy travels with the set; it does not move positions
        backup_set = sets.get(_set_key(row))
        if backup_set is None:
            raise UnreadableInput(f"V$BACKUP_DATAFILE row for file {_int(row, 'FILE#')} names backup set "
                                  f"{_set_key(row)}, which is not in V$BACKUP_SET",
                                  hint="export both views from the same control file or catalog")
        name = _group_name(backup_set)
        groups[name].append(row)
        set_of_group[name] = backup_set
    checkpoints = {name: {_int(r, "FILE#"): _int(r, "CHECKPOINT_CHANGE#") for r in rows}
                   for name, rows in groups.items()}
    levels = {name: _level(set_of_group[name], rows) for name, rows in groups.items()}
    backups = [_data_backup(name, set_of_group[name], rows, _parent(rows, checkpoints, levels))
               for name, rows in groups.items()]
    backups += [_log_backup(dict(row)) for row in redologs]
    return Chain("oracle", sorted(backups, key=lambda b: (b.end, b.kind != Kind.LOG)), format_position=str)


def _parent(rows: list[dict], checkpoints: dict[str, dict[int, int]],
            levels: dict[str, int | None]) -> tuple[str | None, int | None] | None:
    """The backup a level 1 was taken against: RMAN sets each datafile's INCREMENTAL_CHANGE# to
    that file's CHECKPOINT_CHANGE# in the parent (a level 0, or a level 1 for a differential).
    None for a level 0 or full; (None, None) when no backup in the history fits."""
    if not any(_int(r, "INCREMENTAL_CHANGE#", default=0) for r in rows):
        return None
    since = {_int(r, "FILE#"): _int(r, "INCREMENTAL_CHANGE#", default=0) for r in rows}
    parents = [name for name, files in checkpoints.items()
               if levels[name] is not None and all(files.get(f) == scn for f, scn in since.items())]
    if not parents:
        return None, None
    parent = max(parents, key=lambda name: min(checkpoints[name].values()))
    return parent, levels[parent]


def load_views(folder: str | Path) -> Chain:
    """A Chain from exported files `v$backup_set.csv|json`, `v$backup_datafile.*`, `v$backup_redolog.*`."""
    folder = Path(folder)
    tables = {view: _read_rows(folder, view) for view in VIEW_QUERIES}
    if tables["v$backup_set"] is None or tables["v$backup_datafile"] is None:
        raise UnreadableInput(f"{folder}: needs v$backup_set.csv (or .json) and v$backup_datafile.csv "
                              "(or .json)",
                              hint="export the views with the queries in etl.restore.oracle.VIEW_QUERIES")
    try:
        return chain_from_views(tables["v$backup_set"], tables["v$backup_datafile"],
                                tables["v$backup_redolog"] or [])
    except ChainError as error:
        if type(error) is not UnreadableInput:
            raise  # a chain rule (BrokenChain, ...) names the backups
        message = error.message.removeprefix("oracle: ")
        raise UnreadableInput(f"{folder}: {message}", hint=error.hint) from None


def read_views(connection: Any) -> Chain:
    """A Chain from a live database: `connection` is an oracledb connection with SELECT on the views."""
    rows = {}
    with connection.cursor() as cursor:
        for view, query in VIEW_QUERIES.items():
            cursor.execute(query)
            columns = [c[0] for c in cursor.description]
            rows[view] = [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]
    return chain_from_views(rows["v$backup_set"], rows["v$backup_datafile"], rows["v$backup_redolog"])


def _read_rows(folder: Path, view: str) -> list[dict] | None:
    for suffix in (".json", ".csv"):
        path = folder / f"{view}{suffix}"
        if path.exists():
            text = read_text(path, f"{view.upper()} export", error=UnreadableInput)
            if suffix == ".csv":
                return csv_rows(text, path, error=UnreadableInput)
            data = parse_json(text, path, error=UnreadableInput)
            return json_rows(data, path, view.upper(), error=UnreadableInput)
    return None


def _data_backup(name: str, backup_set: dict, rows: list[dict],
                 parent: tuple[str | None, int | None] | None) -> Backup:
    level = _level(backup_set, rows)
    checkpoints = [_int(r, "CHECKPOINT_CHANGE#") for r in rows]
    fuzzy = [_int(r, "ABSOLUTE_FUZZY_CHANGE#", default=0) for r in rows]
    incarnations = {_int(r, "RESETLOGS_CHANGE#") for r in rows}
    if len(incarnations) > 1:
        raise UnreadableInput(f"oracle: backup {name} holds datafiles of incarnations "
                              f"{sorted(incarnations)} (RESETLOGS_CHANGE#)",
                              hint="a backup must come from one incarnation; check the export")
    incarnation = f"incarnation {incarnations.pop()}"
    since = {_int(r, "FILE#"): _int(r, "INCREMENTAL_CHANGE#", default=0) for r in rows}
    details: dict[str, Any] = {"files": sorted(since), "level": level}
    kind, base, missing_base = Kind.FULL, None, None
    if level is None:
        details["why_no_base"] = "a full backup, not incremental level 0"
    elif parent is not None:
        base, parent_level = parent
        cumulative = parent_level == 0
        kind = Kind.DIFFERENTIAL if cumulative else Kind.INCREMENTAL
        details["type"] = "cumulative level 1" if cumulative else "differential level 1"
        if base is None:
            missing_base = "a backup with datafile checkpoints " + \
                ", ".join(f"file {f}: {scn}" for f, scn in sorted(since.items()))
    finished = max((_date(first_present(r, "CHECKPOINT_TIME")) for r in rows), default=None, key=_sortable) \
        or _date(first_present(backup_set, "COMPLETION_TIME"))
    start = min(checkpoints) if kind is Kind.FULL else min(since.values())
    return Backup(name=name, kind=kind, start=start,
                  end=min(checkpoints), consistent=max(max(fuzzy), max(checkpoints)), base=base,
                  missing_base=missing_base, lineage_start=incarnation, can_be_base=level is not None,
                  finished=finished, details=details)


def _log_backup(row: dict) -> Backup:
    thread, sequence = _int(row, "THREAD#", default=1), _int(row, "SEQUENCE#")
    return Backup(name=f"archivelog thread {thread} sequence {sequence}", kind=Kind.LOG,
                  start=_int(row, "FIRST_CHANGE#"), end=_int(row, "NEXT_CHANGE#"),
                  lineage_start=f"incarnation {_int(row, 'RESETLOGS_CHANGE#')}",
                  finished=_date(first_present(row, "NEXT_TIME")),
                  details={"thread": thread, "sequence": sequence})


def _level(backup_set: dict, rows: list[dict]) -> int | None:
    value = first_present(rows[0], "INCREMENTAL_LEVEL")
    if value is None:
        value = first_present(backup_set, "INCREMENTAL_LEVEL")
    if value is None:
        return None
    return whole_number(value, "oracle", "INCREMENTAL_LEVEL", error=UnreadableInput)


def _set_key(row: Mapping[str, Any]) -> tuple[int, int]:
    return _int(dict(row), "SET_STAMP"), _int(dict(row), "SET_COUNT")


def _group_name(backup_set: dict) -> str:
    tag = first_present(backup_set, "TAG")
    return str(tag) if tag else f"backup set {_int(backup_set, 'SET_STAMP')}/{_int(backup_set, 'SET_COUNT')}"


def _int(row: dict, column: str, default: int | None = None) -> int:
    value = first_present(row, column)
    if value is None:
        if default is not None:
            return default
        raise UnreadableInput(f"oracle: a row has no {column}: {sorted(row)}",
                              hint=f"export {column} with the queries in etl.restore.oracle.VIEW_QUERIES")
    return whole_number(value, "oracle", column, error=UnreadableInput)


def _date(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError as error:
        raise UnreadableInput(f"oracle: date {value!r} is not ISO 8601",
                              hint="export dates with TO_CHAR(col, 'YYYY-MM-DD\"T\"HH24:MI:SS')") from error


def _sortable(value: datetime | None) -> datetime:
    return value or datetime.min


class Oracle(RestoreEngine):
    """Oracle RMAN: the V$BACKUP_* views exported to a folder; SCN positions."""

    name = "oracle"
    position_name = "scn"

    def load_history(self, sources: Sequence[Source], *, wal_archive: str | Path | None = None,
                     verify_files: bool = False) -> Chain:
        if len(sources) != 1 or not isinstance(sources[0], str | Path):
            raise self.cannot_read(sources, "one folder of exported views")
        return load_views(sources[0])
