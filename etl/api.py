"""The job as analysts use it in a notebook: plan, preview, run, validate and report, as DataFrames.

`open_job(path)` (exported as `etl.load_job`) wraps a job file around the engine's own functions
(`plan_job`, `run_job`, `validate_job`), so a notebook sees exactly what `python -m etl.run` does;
`job.config` is the validated job those functions take, for scripts that call them directly.
Nothing here shows a secret: the job's repr names sources and targets by name and type only
(never a DSN or URI), previews show source records after the mapping's `pii:` transforms, and
every text that could quote a connection string passes through `etl.redact`.
"""

from __future__ import annotations

import html
import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl.checksum import JobValidation
from etl.engine.accounting import Counts
from etl.engine.resources import JobResources
from etl.errors import EtlError, JobFileError
from etl.job import Job, load_job
from etl.redact import redact
from etl.report.run_report import RunReport, TableCheck, TableReport

if TYPE_CHECKING:
    import pandas as pd

    from etl.interpolate import SecretSource

PLAN_COLUMNS = ["table", "partition", "partitions", "from", "to", "lower", "upper", "id"]
TARGET_TABLE_COLUMNS = ["source_table", "target", "table", "key", "parent", "columns"]
PROGRESS_COLUMNS = ["seconds", "table", "extracted", "loaded", "rejected", "filtered"]
SOURCE_KEY = "source_key"
"""Column that ties a previewed source record to the rows made from it."""


@dataclass
class MappingPreview:
    """Source records (PII transformed) beside the rows the mapping makes of them."""

    table: str
    """`source.table` previewed."""
    source: pd.DataFrame
    """One row per source record: `source_key`, then its top-level fields."""
    rows: dict[str, pd.DataFrame] = field(default_factory=dict)
    """`target.table` -> the mapped rows, each with the `source_key` of its record."""
    rejects: pd.DataFrame | None = None
    """`source_key`, `reason`, `field_path` of records the mapping would reject."""

    def __getitem__(self, target_table: str) -> pd.DataFrame:
        return self.rows[target_table]

    def _repr_html_(self) -> str:
        parts = [f"<h4>{html.escape(self.table)}: {len(self.source)} source records (PII transformed)</h4>",
                 self.source.to_html(index=False)]
        for name, frame in self.rows.items():
            parts += [f"<h4>&rarr; {html.escape(name)}: {len(frame)} rows</h4>", frame.to_html(index=False)]
        if self.rejects is not None and len(self.rejects):
            parts += [f"<h4>rejected: {len(self.rejects)}</h4>", self.rejects.to_html(index=False)]
        return redact("".join(parts))


class MigrationJob:
    """One job file, opened for a notebook. Methods return DataFrames or result objects that
    render as tables in Jupyter; `run` and `validate` do what the command does."""

    def __init__(self, job: Job) -> None:
        self._job = job
        """The validated job the engine functions take (public as `config`)."""
        self._resources = JobResources(job)
        self._last_report: RunReport | None = None
        self._progress: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._job.name

    @property
    def path(self) -> Path:
        return self._job.path

    @property
    def config(self) -> Job:
        """The validated job file (`etl.job.Job`) that `etl.run_job`, `etl.validate_job` and
        `etl.plan_job` take, for scripts that drive the engine directly. Its repr, and every
        section's, hides passwords and connection strings' secrets (etl.redact)."""
        return self._job

    def __repr__(self) -> str:
        sources = ", ".join(f"{name} ({config.type}: {', '.join(config.tables)})"
                            for name, config in self._job.sources.items())
        targets = ", ".join(f"{name} ({config.type})" for name, config in self._job.targets.items())
        return redact(f"<MigrationJob {self.name!r} from {self.path}; sources: {sources}; "
                      f"targets: {targets}>")

    # -- what the job moves ------------------------------------------------------------------
    def target_tables(self) -> pd.DataFrame:
        """Every target table the job writes: which source table feeds it, its key and columns."""
        import pandas as pd

        rows = []
        for source, table in self._resources.source_tables():
            for spec in self._resources.mapping(source, table).tables:
                rows.append({"source_table": f"{source}.{table}", "target": spec.target, "table": spec.table,
                             "key": list(spec.key), "parent": spec.parent,
                             "columns": [c.name for c in spec.columns]})
        return pd.DataFrame(rows, columns=TARGET_TABLE_COLUMNS)

    def plan(self, only: Sequence[str] | None = None) -> pd.DataFrame:
        """Tables x partitions as a run would plan them now (the state store is not touched):
        one row per partition with its key range (`from` inclusive, `to` exclusive, as keys are
        shown: `_id=17`) and its bounds as the source encodes them (`lower`, `upper`); None: unbounded."""
        import pandas as pd

        from etl.engine.plan import key_range
        from etl.engine.planning import plan_job

        plan = plan_job(self._job, only=tuple(only or ()))
        rows = []
        for table in plan.tables:
            source = self._resources.open_source(table.source)
            try:
                for p in table.partitions:
                    lower, upper = key_range(source, p)
                    rows.append({"table": table.key, "partition": p.index, "partitions": p.count,
                                 "from": _bound(lower), "to": _bound(upper), "lower": _bound(p.lower),
                                 "upper": _bound(p.upper), "id": p.id})
            finally:
                source.close()
        return pd.DataFrame(rows, columns=PLAN_COLUMNS)

    def preview(self, table: str, n: int = 5) -> MappingPreview:
        """The first `n` records of a source table (`table` or `source.table`) beside their
        mapped rows. Source records are shown as the mapping's `pii:` rules leave them."""
        import pandas as pd

        available = self._resources.source_tables()
        pairs = [(s, t) for s, t in available if table in (t, f"{s}.{t}")]
        if len(pairs) != 1:
            problem = "no such source table in the job" if not pairs else "more than one source has it"
            raise JobFileError(f"preview {table!r}: {problem}",
                               hint="the job's tables are " + ", ".join(f"{s}.{t}" for s, t in available))
        [(source_name, table_name)] = pairs
        mapping = self._resources.mapping(source_name, table_name)
        source = self._resources.open_source(source_name)
        try:
            records = source.sample(table_name, n)
            keys = [source.key_text(table_name, record) for record in records]
            previews = mapping.preview(records, lambda record: source.key_text(table_name, record))
        finally:
            source.close()
        shown = [{SOURCE_KEY: key, **p.record} for key, p in zip(keys, previews, strict=True)]
        mapped: dict[str, list[dict]] = {f"{s.target}.{s.table}": [] for s in mapping.tables}
        rejects = []
        for key, p in zip(keys, previews, strict=True):
            for (target, name), rows in p.rows.items():
                mapped[f"{target}.{name}"] += [{SOURCE_KEY: key, **row} for row in rows]
            rejects += [{SOURCE_KEY: key, "reason": r.reason, "field_path": r.field_path} for r in p.rejects]
        return MappingPreview(
            table=f"{source_name}.{table_name}",
            source=pd.DataFrame(shown),
            rows={name: pd.DataFrame(rows) for name, rows in mapped.items()},
            rejects=pd.DataFrame(rejects, columns=[SOURCE_KEY, "reason", "field_path"]),
        )

    # -- running -----------------------------------------------------------------------------
    def run(self, **options: Any) -> RunReport:
        """Run the job (`etl.engine.runner.RunOptions` fields as keywords: full_refresh, resume,
        only, limit, validate, ...). Returns the report; `report.raise_for_status()` raises when
        the run did not succeed. Each committed batch is timed for `progress()`."""
        from etl.engine.runner import RunOptions, run_job

        known = [f.name for f in fields(RunOptions)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise EtlError(f"run(): unknown option(s) {', '.join(unknown)}",
                           hint="the options are " + ", ".join(known))
        if "only" in options:
            options["only"] = tuple(options["only"] or ())
        run_options = RunOptions(**options)
        started = time.monotonic()
        chained = run_options.on_progress
        with self._lock:
            self._progress = []

        def record(table: str, delta: Counts) -> None:
            with self._lock:
                self._progress.append({"seconds": time.monotonic() - started, "table": table,
                                       "extracted": delta.extracted, "loaded": delta.loaded,
                                       "rejected": delta.rejected, "filtered": delta.filtered})
            if chained is not None:
                chained(table, delta)

        report = run_job(self._job, replace(run_options, on_progress=record))
        self._last_report = report
        return report

    def progress(self) -> pd.DataFrame:
        """The batches the last `run()` committed: seconds since it started, table and counts."""
        import pandas as pd

        with self._lock:
            return pd.DataFrame(list(self._progress), columns=PROGRESS_COLUMNS)

    def validate(self, only: Sequence[str] | None = None) -> JobValidation:
        """Compare every target table (or those fed by the source tables in `only`) with the
        source, read and mapped again; moves nothing."""
        from etl.engine.validation import validate_job

        return validate_job(self._job, list(only) if only else None, resources=self._resources)

    def report(self) -> RunReport:
        """The report of the last `run()` of this object, else the newest run report saved in
        the job's report folder (by this object or by the command)."""
        if self._last_report is not None:
            return self._last_report
        folder = self._job.resolve_path(self._job.report.dir)
        saved = sorted(folder.glob(f"{self._job.name}-run-*.json")) if folder.is_dir() else []
        if not saved:
            raise EtlError(f"job {self._job.name} has no run report in {folder}",
                           hint="run the job first: job.run() or python -m etl.run")
        return report_from_json(saved[-1].read_text(encoding="utf-8"))


def open_job(path: str | Path, *, environ: Mapping[str, str] | None = None,
             secrets: SecretSource | Mapping[str, str] | None = None) -> MigrationJob:
    """Load and validate a job file for a notebook (`environ`/`secrets` replace the process
    environment and AWS Secrets Manager for `${env:..}`/`${secret:..}`, as in etl.job.load_job)."""
    return MigrationJob(load_job(path, environ=environ, secrets=secrets))


def report_from_json(text: str) -> RunReport:
    """A RunReport read back from the JSON `RunReport.save` wrote."""
    data = json.loads(text)
    tables = [TableReport(**{**_known(TableReport, t),
                             "top_reasons": [(r["reason"], r["count"]) for r in t["top_reasons"]]})
              for t in data.get("tables") or []]
    validation = data.get("validation")
    checks = [TableCheck(**_known(TableCheck, c)) for c in validation] if validation is not None else None
    return RunReport(**{**_known(RunReport, data), "tables": tables, "validation": checks})


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The entries of `data` that are fields of the dataclass `cls` (derived figures such as
    `exit_code` and `rows_per_second` are recomputed, not stored)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _bound(value: Any) -> Any:
    """A partition bound as the source encoded it, redacted when it is text."""
    return redact(value) if isinstance(value, str) else value
