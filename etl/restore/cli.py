"""The restore commands of `python -m etl.run job.yaml`: --restore-plan, --take-manifest, --verify-restore.

They read the job file's `restore` section (etl/job/schema.py `Restore`, docs/restore.md "Command line"):
the backup history to plan from, the restore point, the folder of checksum manifests (one
`<backup name>.json` per backup) and the databases to checksum. Tables are read through the
job's relational source modules, so a manifest taken at backup time and the restored database
are read and encoded alike.

Exit codes follow the command's: 0 done (and, for --verify-restore, exact), 1 the restored
database differs from the manifest (or a backup's files differ from its backup_manifest), 2 a
restore option or section that cannot work, or an input that cannot be read (a backup history,
backup folder, backup_manifest or restore point: UnreadableInput), 3 a chain error (ChainError),
an unreadable checksum manifest or an unreachable database.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from etl.checksum import Manifest, ManifestError, TableManifest, Tolerances
from etl.checksum.results import key_text
from etl.errors import EtlError
from etl.files import make_folder, write_private
from etl.records import Column, TableSpec
from etl.restore.api import load_chain, plan_restore
from etl.restore.arguments import add_arguments as add_arguments
from etl.restore.arguments import command_name
from etl.restore.arguments import requested as requested
from etl.restore.chain import Chain, RestorePlan, Target, UnreadableInput
from etl.restore.engine import RestoreEngine
from etl.restore.engines import get_engine
from etl.restore.verify import (
    RestoreVerification,
    compose_over_bases,
    differential_manifest,
    manifest_at,
    manifest_for_plan,
    verify_restore,
)
from etl.sources.sqltypes import decode_key

if TYPE_CHECKING:
    from etl.audit import AuditTrail
    from etl.job import Job, Restore, RestoreDatabase
    from etl.sources.sql import SqlSource

EXIT_OK, EXIT_DIFFERENCES = 0, 1
FIRST_KEYS = 5
"""Differing and drifted keys printed per table; the result file lists them all (up to
`validation.max_differences`)."""
RELATIONAL_SOURCES = ("postgres", "mssql", "oracle")
_BACKUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_SEGMENT_KEY_TYPES = (str, int)
"""Key values JSON holds exactly and Python orders like every engine's integers and strings."""


class RestoreCommandError(EtlError):
    """A restore option or `restore` section that cannot work as given."""

    exit_code = 2


def run(args: argparse.Namespace, trail: AuditTrail, stream: IO[str]) -> int:
    """Check the options, load the job and run one restore command; its audit record names it."""
    from etl.job import load_job

    trail.record.command = command_name(args)
    trail.record.options = {
        name: getattr(args, name)
        for name in ("point", "sequence", "position", "base", "take_manifest", "json")
        if getattr(args, name)
    }
    _check_options(args)
    job = load_job(args.job)
    trail.job_loaded(job)
    if job.restore is None:
        raise RestoreCommandError(
            f"{args.job}: the job file has no `restore` section",
            hint='see docs/restore.md, "Command line", for its keys',
        )
    _audit_databases(job, trail)
    if args.restore_plan:
        sequence = [n.strip() for n in args.sequence.split(",") if n.strip()] if args.sequence else None
        print_restore_plan(job, args.point, sequence, stream, as_json=args.json)
        return EXIT_OK
    if args.take_manifest:
        take_manifest(job, args.take_manifest, position=args.position, base=args.base, stream=stream)
        return EXIT_OK
    result = verify_restored(job, args.point, stream)
    trail.record.validation = "passed" if result.exact else "differences"
    return EXIT_OK if result.exact else EXIT_DIFFERENCES


def _audit_databases(job: Job, trail: AuditTrail) -> None:
    """Which databases the command reads: a job source or target by name, a DSN by host and database."""
    from etl.audit import describe_endpoint

    for side in ("source", "restored"):
        database = getattr(job.restore, side)
        if database is not None:
            trail.record.options[f"restore_{side}"] = (
                database.source
                or database.target
                or describe_endpoint({"type": "postgres", "dsn": database.dsn})
            )


def _check_options(args: argparse.Namespace) -> None:
    engine_options = [
        f"--{name.replace('_', '-')}"
        for name in ("only", "limit", "shard", "resume", "full_refresh")
        if getattr(args, name)
    ]
    if engine_options:
        raise RestoreCommandError(
            f"{', '.join(engine_options)} cannot be combined with --{command_name(args)}",
            hint="restore commands move no data",
        )
    misplaced = [
        option
        for option, allowed, given in (
            ("--sequence", args.restore_plan, args.sequence),
            ("--json", args.restore_plan, args.json),
            ("--position", args.take_manifest, args.position),
            ("--base", args.take_manifest, args.base),
            ("--point", not args.take_manifest, args.point),
        )
        if given and not allowed
    ]
    if misplaced:
        raise RestoreCommandError(
            f"{', '.join(misplaced)} does not apply to --{command_name(args)}",
            hint="--sequence and --json go with --restore-plan; --position and --base with "
            "--take-manifest; --point with --restore-plan and --verify-restore",
        )


# --------------------------------------------------------------------------- --restore-plan


def restore_section(job: Job) -> Restore:
    """The job's `restore` section, which run() has checked is there."""
    if job.restore is None:
        raise RestoreCommandError(
            f"{job.path}: the job file has no `restore` section",
            hint='see docs/restore.md, "Command line", for its keys',
        )
    return job.restore


def restore_point(job: Job, point_text: str | None) -> Target:
    """`--point`, else `restore.point`, on the engine's number line."""
    given = point_text if point_text is not None else restore_section(job).point
    return get_engine(restore_section(job).engine).parse_point(given)


def load_history(job: Job) -> Chain:
    section = restore_section(job)
    if not section.history:
        raise RestoreCommandError(
            "restore.history is empty: there is no backup history to plan from",
            hint="list the backup metadata exports, backup folders or mongodump folders",
        )
    wal = job.resolve_path(section.wal_archive) if section.wal_archive else None
    return load_chain(
        section.engine,
        *[job.resolve_path(p) for p in section.history],
        wal_archive=wal,
        verify_files=section.verify_files,
    )


def print_restore_plan(
    job: Job, point_text: str | None, sequence: list[str] | None, stream: IO[str], *, as_json: bool = False
) -> list[RestorePlan]:
    """Print the restore sequence, one per database when the history holds several (or raise the
    ChainError naming the backups that break it)."""
    section, engine = restore_section(job), get_engine(restore_section(job).engine)
    point = restore_point(job, point_text)
    chain = load_history(job)
    chains = [chain] if sequence else chain.clusters()
    plans = [plan_restore(one, point, sequence=sequence) for one in chains]
    if as_json:
        shown = [plan.to_json() | {"checked": sequence is not None} for plan in plans]
        print(json.dumps(shown[0] if len(shown) == 1 else {"plans": shown}, indent=2), file=stream)
        return plans
    verb = "checked sequence" if sequence else "restore plan"
    for plan in plans:
        database = f" database {plan.steps[0].system}" if len(plans) > 1 else ""
        print(
            f"{verb} for {section.engine}{database} to {engine.format_point(point)}: "
            f"{len(plan.steps)} backups, reaching {chain.format_position(plan.reaches)}",
            file=stream,
        )
        for line in plan.describe().splitlines():
            print(f"  {line}", file=stream)
    return plans


# --------------------------------------------------------------------------- reading tables


def open_reader(job: Job, side: str, tables: Mapping[str, Mapping[str, Any]]) -> SqlSource:
    """A relational source reading `tables` (name -> {key, schema}) from `restore.<side>`."""
    from etl import sources
    from etl.sources.sql import SqlTable

    database = getattr(job.restore, side)
    where = f"restore.{side}"
    if database is None:
        raise RestoreCommandError(
            f"{where} is not set: no database to read",
            hint=f"set {where} to a job source, {{target: name}} or {{dsn: ...}}",
        )
    options = {
        name: SqlTable.model_validate(
            {"mapping": job.path.name, **{k: v for k, v in t.items() if v is not None}}
        )
        for name, t in tables.items()
    }
    if database.source is not None:
        config = job.sources.get(database.source)
        if config is None or config.type not in RELATIONAL_SOURCES:
            raise RestoreCommandError(
                f"{where}.source: {database.source!r} is not a relational source of the job",
                hint=f"relational sources: {_names(job.sources, RELATIONAL_SOURCES)}",
            )
        config = config.model_copy(update={"tables": options, "consistent": True})
        module, name = sources.module_for(config.type), database.source
    else:
        from psycopg.conninfo import make_conninfo

        from etl.sources.postgres import Config

        dsn = database.dsn
        if database.target is not None:
            target = job.targets.get(database.target)
            if target is None or target.type != "postgres":
                raise RestoreCommandError(
                    f"{where}.target: {database.target!r} is not a postgres target of the job",
                    hint=f"postgres targets: {_names(job.targets, ('postgres',))}",
                )
            if target.iam_auth:
                raise RestoreCommandError(
                    f"{where}.target: target {database.target!r} authenticates with IAM "
                    "tokens, which restore commands do not use",
                    hint=f"give {where} a dsn with the password from ${{secret:..}}",
                )
            settings = {
                k: v for k, v in (("sslmode", target.sslmode), ("sslrootcert", target.sslrootcert)) if v
            }
            dsn = make_conninfo(target.dsn, **settings)
            options = {
                n: t.model_copy(update={"schema_": t.schema_ or target.db_schema}) for n, t in options.items()
            }
        tables = {n: t.model_dump(by_alias=True, exclude_none=True) for n, t in options.items()}
        # the postgres module's own table model
        config = Config.model_validate({"type": "postgres", "dsn": dsn, "tables": tables})
        module, name = sources.module_for("postgres"), f"restore-{side}"
    return module.open_source(name, config, job.batch.limits())


def _names(configs: Mapping[str, Any], types: tuple[str, ...]) -> str:
    return ", ".join(name for name, config in configs.items() if config.type in types) or "none"


def configured_tables(job: Job) -> dict[str, dict[str, Any]]:
    """`restore.tables`, else the tables `restore.source` is configured with as a job source."""
    section = restore_section(job)
    if section.tables:
        return {
            name: {"key": t.key, "schema": t.schema_ or _schema(section.source)}
            for name, t in section.tables.items()
        }
    source = section.source
    if source is not None and source.source is not None and source.source in job.sources:
        return {
            name: {"key": t.key, "schema": t.schema_}
            for name, t in (getattr(job.sources[source.source], "tables", None) or {}).items()
        }
    raise RestoreCommandError(
        "restore.tables is empty and restore.source is not a job source with tables",
        hint="list the tables: restore.tables: {patients: {key: [patient_id]}}",
    )


def _schema(database: RestoreDatabase | None) -> str | None:
    return None if database is None else database.schema_


def table_spec(reader: SqlSource, table: str) -> TableSpec:
    """The table's columns with the types its reader reads them as (`mapping_type`), else the engine's
    own type names (`etl.coltypes.engine_type` reads them): the checksums hash a column as floats
    exactly when the reader returns floats. Engines' names alone mislead: Oracle's FLOAT is a
    decimal NUMBER (hashed as floats, two decimals rounding to one double would compare equal),
    its BINARY_DOUBLE an IEEE double."""
    meta = reader.describe(table)
    return TableSpec("restore", table, tuple(meta.key), tuple(
        Column(c.name, reader.mapping_type(c) or c.type.lower()) for c in meta.columns))


def row_source(reader: SqlSource, table: str, partitions: list) -> Callable[[], Iterator[dict]]:
    """Every row of the table (rows with a value that has no exact canonical form are an error)."""

    def rows() -> Iterator[dict]:
        for partition in partitions:
            for batch in reader.read(partition):
                if batch.rejects:
                    reject = batch.rejects[0]
                    raise EtlError(
                        f"table {table}: row {reject.source_key} cannot be checksummed: {reject.reason}",
                        hint="a manifest must hold every row; see docs/types.md",
                    )
                yield from batch.records

    return rows


def segment_boundaries(reader: SqlSource, table: str, segments: int, stream: IO[str]) -> list[list]:
    """Boundaries at the source's own partition cuts of the first key column (int or text keys)."""
    cuts = [decode_key(p.upper)[0] for p in reader.plan(table, segments)[:-1] if p.upper is not None]
    if any(not isinstance(c, _SEGMENT_KEY_TYPES) or isinstance(c, bool) for c in cuts):
        print(
            f"  {table}: the first key column is neither whole numbers nor text; one segment "
            "(give restore.tables.<table>.boundaries to split it)",
            file=stream,
        )
        return []
    return [[c] for c in sorted(set(cuts))]


# --------------------------------------------------------------------------- --take-manifest


def manifest_folder(job: Job) -> Path:
    return job.resolve_path(restore_section(job).manifests)


def load_manifests(job: Job) -> dict[str, Manifest]:
    """Every manifest of the folder, by backup name (the file's stem)."""
    folder = manifest_folder(job)
    found = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            found[path.stem] = Manifest.load(path)
        except ManifestError as error:  # an input that cannot be read, like a bad job file
            raise UnreadableInput(error.message, hint=error.hint) from None
    if not found:
        raise ManifestError(
            f"no checksum manifests in {folder}",
            hint="take one with each backup: python -m etl.run JOB --take-manifest BACKUP",
        )
    return found


def take_manifest(
    job: Job, name: str, *, position: str | None = None, base: str | None = None, stream: IO[str]
) -> Manifest:
    """Checksum `restore.source` now and save `<manifests>/<name>.json` (differential against `base`)."""
    section = restore_section(job)
    if not _BACKUP_NAME.fullmatch(name):
        raise RestoreCommandError(
            f"--take-manifest {name!r}: a manifest is named like its backup, with letters, "
            "digits, '_', '.' and '-'",
            hint="use the backup's name as the history shows it",
        )
    path = manifest_folder(job) / f"{name}.json"
    if path.exists():
        raise RestoreCommandError(
            f"manifest {path} already exists",
            hint="each backup has one manifest; remove the file first to take it again",
        )
    base_manifest = None
    if base is not None:
        manifests = load_manifests(job)
        if base not in manifests:
            raise ManifestError(
                f"--base {base}: no manifest {base}.json in {manifest_folder(job)}",
                hint=f"manifests there: {', '.join(manifests)}",
            )
        base_manifest = compose_over_bases(manifests[base], manifests.values())
    tables = configured_tables(job)
    taken_at = datetime.now(UTC).isoformat()
    reader = open_reader(job, "source", tables)
    try:
        engine = get_engine(section.engine)
        at = _position(engine, position, reader)
        manifest = Manifest(position=engine.manifest_position(at), taken_at=taken_at)
        for table in tables:
            manifest.add(_table_manifest(job, reader, table, base_manifest, stream))
    finally:
        reader.close()
    if base_manifest is not None:
        manifest = differential_manifest(base_manifest, manifest)
    make_folder(path.parent)
    partial = path.with_name(f".{path.name}.partial")  # not *.json: never read as a manifest
    manifest.save(partial)
    partial.replace(path)
    _print_taken(name, manifest, base, path, stream)
    return manifest


def _position(engine: RestoreEngine, given: str | None, reader: SqlSource) -> int:
    if given is not None:
        point = engine.parse_point(given)
        if not isinstance(point, int):
            raise RestoreCommandError(
                f"--position {given!r} is a time; a manifest records a position",
                hint="give the backup's LSN, SCN or oplog SECONDS:INCREMENT",
            )
        return point
    current = engine.current_position(reader)
    if current is None:
        raise RestoreCommandError(
            f"--take-manifest needs --position for {engine.name} backups",
            hint="give the backup's position (e.g. its last LSN or checkpoint SCN)",
        )
    return current


def _table_manifest(
    job: Job, reader: SqlSource, table: str, base: Manifest | None, stream: IO[str]
) -> TableManifest:
    spec = table_spec(reader, table)
    before = base.tables.get(table) if base is not None else None
    partitions = reader.plan(table, 1)
    if before is not None:
        boundaries, buckets, tolerances = (
            before.boundaries,
            before.buckets,
            Tolerances.model_validate(before.tolerances),
        )
    else:
        options = restore_section(job).tables.get(table)
        if options is not None and options.boundaries is not None:
            boundaries = sorted(options.boundaries)
        else:
            boundaries = segment_boundaries(reader, table, options.segments if options else 8, stream)
        buckets, tolerances = restore_section(job).buckets, Tolerances()
    try:
        return TableManifest.build(
            spec,
            row_source(reader, table, partitions)(),
            buckets=buckets,
            tolerances=tolerances,
            boundaries=boundaries,
        )
    except TypeError as error:
        raise ManifestError(
            f"table {table}: a key cannot be placed among the segment boundaries ({error})",
            hint="give boundaries of the first key column's type",
        ) from None


def _print_taken(name: str, manifest: Manifest, base: str | None, path: Path, stream: IO[str]) -> None:
    kind = f"differential against {base}" if base else "full"
    position = ", ".join(f"{k} {v}" for k, v in manifest.position.items())
    print(f"manifest {name} ({kind}) at {position}, taken at {manifest.taken_at}", file=stream)
    for table in manifest.tables.values():
        segments = len(table.boundaries) + 1
        if base:
            changed = sorted(table.segments)
            print(f"  {table.table}: {len(changed)} of {segments} segments changed {changed}", file=stream)
        else:
            print(f"  {table.table}: {table.rows:,} rows in {segments} segments", file=stream)
    print(f"manifest saved to {path}", file=stream)


# --------------------------------------------------------------------------- --verify-restore


class _Instant:
    """The manifest's time as the restore point of a change-tracking column: compares with aware
    values as UTC and with naive values as UTC wall time (the session reads in UTC)."""

    def __init__(self, at: datetime, column: str) -> None:
        self.at, self.column = at, column

    def _as(self, other: object) -> datetime:
        if not isinstance(other, datetime):
            raise RestoreCommandError(
                f"restore.change_column {self.column!r} holds {type(other).__name__} values",
                hint="name a timestamp column that every change sets",
            )
        return self.at if other.tzinfo is not None else self.at.astimezone(UTC).replace(tzinfo=None)

    def __lt__(self, other: object) -> bool:
        return self._as(other) < other  # type: ignore[operator]

    def __gt__(self, other: object) -> bool:
        return self._as(other) > other  # type: ignore[operator]

    def __repr__(self) -> str:
        return self.at.isoformat()


def composed_manifest(job: Job, point_text: str | None) -> tuple[Manifest, str]:
    """The manifest of the restore point and what it was composed from: over the restore plan's
    data backups when there is a history, else the manifest taken at the point (or the latest)."""
    section, engine = restore_section(job), get_engine(restore_section(job).engine)
    point = restore_point(job, point_text)
    history = load_history(job) if section.history else None  # an unreadable history before the manifests
    manifests = load_manifests(job)
    if history is not None:
        plan = plan_restore(history, point)
        names = [step.name for step in plan.steps if step.is_data]
        return manifest_for_plan(plan, manifests), f"manifests of {', '.join(names)}"
    if point is None:
        name = max(manifests, key=lambda n: manifests[n].taken_at)
        return compose_over_bases(manifests[name], manifests.values()), f"latest manifest {name}"
    if isinstance(point, datetime):
        raise RestoreCommandError(
            "without restore.history the restore point must be a position, not a time",
            hint="give the LSN/SCN/oplog position the manifest was taken at",
        )
    return manifest_at(manifests.values(), engine.manifest_position(point)), \
        f"manifest at {engine.format_point(point)}"


def verify_restored(job: Job, point_text: str | None, stream: IO[str]) -> RestoreVerification:
    """Verify `restore.restored` against the composed manifest; print and save the result."""
    section = restore_section(job)
    manifest, composed_from = composed_manifest(job, point_text)
    source_is_job_source = section.source is not None and section.source.source is not None
    configured = configured_tables(job) if section.tables or source_is_job_source else {}
    tables = {
        name: {
            "key": t.key,
            "schema": _schema(section.restored) or (configured.get(name) or {}).get("schema"),
        }
        for name, t in manifest.tables.items()
    }
    restored = open_reader(job, "restored", tables)
    reference = open_reader(job, "source", tables) if section.drill_down else None
    try:
        present = [name for name in tables if _exists(restored, name)]
        specs = {
            name: table_spec(restored, name)
            if name in present
            else TableSpec("restore", name, tuple(manifest.tables[name].key), ())
            for name in tables
        }
        restored_rows = {name: row_source(restored, name, restored.plan(name, 1)) for name in present}
        reference_rows = (
            None
            if reference is None
            else {name: row_source(reference, name, reference.plan(name, 1)) for name in tables}
        )
        change: dict[str, Any] = {}
        if section.change_column:
            at = datetime.fromisoformat(manifest.taken_at)
            change = {"change_column": section.change_column, "point": _Instant(at, section.change_column)}
        result = verify_restore(
            restored_rows,
            manifest,
            specs,
            reference=reference_rows,
            max_differences=job.validation.max_differences,
            **change,
        )
    finally:
        restored.close()
        if reference is not None:
            reference.close()
    print_verification(result, composed_from, manifest, stream, drill_down=section.drill_down)
    path = save_verification(job, result, composed_from, manifest)
    print(f"result saved to {path}", file=stream)
    return result


def print_verification(
    result: RestoreVerification, composed_from: str, manifest: Manifest, stream: IO[str], *, drill_down: bool
) -> None:
    verdict = "exact" if result.exact else "drift only" if result.ok else "DIFFERENCES"
    position = ", ".join(f"{k} {v}" for k, v in result.position.items())
    print(
        f"restore verified against the manifest at {position} ({composed_from}, taken at "
        f"{manifest.taken_at}): {verdict}",
        file=stream,
    )
    for check in result.tables:
        if check.missing_table:
            print(
                f"  {check.table}: missing from the restored database "
                f"({check.expected_rows:,} rows expected)",
                file=stream,
            )
            continue
        mismatched, drifted = check.mismatched_segments, check.drift_segments
        state = f"mismatched segments {mismatched}" if mismatched else "equal"
        drift = f", drift in segments {drifted}" if drifted else ""
        print(
            f"  {check.table}: {check.restored_rows:,} rows restored, {check.expected_rows:,} expected; "
            f"{len(check.segments)} segments, {state}{drift}",
            file=stream,
        )
        for segment in check.segments:
            if segment.status != "ok":
                print(
                    f"    segment {segment.segment} [{_bound(segment.lower)} .. {_bound(segment.upper)}): "
                    f"{segment.status}, {segment.restored_rows:,} rows restored, {segment.expected_rows:,} "
                    f"expected, buckets differing: {len(segment.mismatched_buckets)}",
                    file=stream,
                )
        real = check.real_differences
        if real:
            shown = "; ".join(
                f"{d.kind}: {key_text(d.key)}"
                + (f" ({', '.join(f.field for f in d.fields)})" if d.fields else "")
                for d in real[:FIRST_KEYS]
            )
            print(f"    first differences: {shown}", file=stream)
        elif mismatched and not drill_down:
            print(
                "    (set restore.drill_down: true to name the rows, while the source is at the "
                "restore point)",
                file=stream,
            )
        if check.drift:
            more = len(check.drift) - FIRST_KEYS
            drifted_keys = "; ".join(key_text(k) for k in check.drift[:FIRST_KEYS])
            tail = f" and {more} more" if more > 0 else ""
            print(f"    drift (changed after the manifest): {drifted_keys}{tail}", file=stream)
    for name in result.unexpected_tables:
        print(f"  {name}: restored but not in the manifest", file=stream)


def _exists(reader: SqlSource, table: str) -> bool:
    """Whether the restored database has the table (a missing one is a difference, not an error)."""
    try:
        reader.describe(table)
    except EtlError as error:
        if "does not exist" in error.message and "column" not in error.message:
            return False
        raise
    return True


def _bound(value: list | None) -> str:
    return "-" if value is None else json.dumps(value)


def verification_json(result: RestoreVerification, composed_from: str, manifest: Manifest) -> dict[str, Any]:
    """The whole result: keys and field names of differences, never field values."""
    from etl.checksum.results import json_value

    def key(k: Mapping[str, Any]) -> dict[str, Any]:
        return {name: json_value(value) for name, value in k.items()}

    return {
        "verdict": "exact" if result.exact else "drift" if result.ok else "differences",
        "position": result.position,
        "composed_from": composed_from,
        "manifest_taken_at": manifest.taken_at,
        "tables": [
            {
                "table": t.table,
                "expected_rows": t.expected_rows,
                "restored_rows": t.restored_rows,
                "missing_table": t.missing_table,
                "mismatched_segments": t.mismatched_segments,
                "drift_segments": t.drift_segments,
                "segments": [
                    {
                        "segment": s.segment,
                        "lower": s.lower,
                        "upper": s.upper,
                        "status": s.status,
                        "expected_rows": s.expected_rows,
                        "restored_rows": s.restored_rows,
                        "mismatched_buckets": list(s.mismatched_buckets),
                        "drift_buckets": list(s.drift_buckets),
                    }
                    for s in t.segments
                ],
                "differences": [
                    {"kind": d.kind, "key": key(d.key), "fields": [f.field for f in d.fields]}
                    for d in t.real_differences
                ],
                "drift": [key(k) for k in t.drift],
            }
            for t in result.tables
        ],
        "unexpected_tables": result.unexpected_tables,
    }


def save_verification(job: Job, result: RestoreVerification, composed_from: str, manifest: Manifest) -> Path:
    folder = job.resolve_path(job.report.dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    path = folder / f"restore-verification-{job.name}-{stamp}.json"
    write_private(path, json.dumps(verification_json(result, composed_from, manifest), indent=1, default=str))
    return path
