"""Tables a job picks by pattern (`select:`) or by an AWS DMS table-mapping document (`dms:`).

When a job starts, each relational source with `select:` or `dms:` is asked for its tables
(`table_names()`); the matched ones become ordinary entries of the source's `tables`, named
`schema.table`, each with its mapping text kept in `JobResources.mapping_texts` (the template with
`$(schema)` and `$(table)` replaced, or the DMS document with the table's catalogue). From then on
they plan, run, resume and validate like tables written out by hand. A table the job also lists
under `tables:` keeps that entry (for a DMS document, an entry whose `mapping` is the document
itself only gives the table's options, such as `key:` or `where:`, and the document maps it). A
pattern or selection rule that matches nothing is an error:
a misspelt pattern must not quietly migrate fewer tables.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any

from etl.errors import JobFileError
from etl.mapping.dms_document import DmsDocument, TableColumns
from etl.sources.base import TableName

if TYPE_CHECKING:
    from etl.engine.resources import JobResources


def expand_tables(resources: JobResources) -> None:
    """Add every table picked by `select:` or `dms:` to its source's `tables` (once per job)."""
    for name, config in resources.job.sources.items():
        if not getattr(config, "select", None) and getattr(config, "dms", None) is None:
            continue
        source = resources.open_source(name)
        try:
            available = source.table_names()  # type: ignore[attr-defined]  # sources with select: have it
            for index, selection in enumerate(config.select):
                _select(resources, name, config, index, selection, available)
            if getattr(config, "dms", None) is not None:
                _dms(resources, name, config, source, available)
        finally:
            source.close()


def _described(names: list[str]) -> str:
    shown = ", ".join(names[:30])
    return shown + (f" and {len(names) - 30} more" if len(names) > 30 else "") if names else "none"


def _select(resources: JobResources, name: str, config: Any, index: int, selection: Any,
            available: list[TableName]) -> None:
    from etl.engine.resources import MappingText

    names = [entry.full for entry in available]
    where = f"sources.{name}.select[{index}]"
    matched_by = "`schema.table`" if any(entry.schema for entry in available) else "collection names"
    for kind, patterns in (("include", selection.include), ("exclude", selection.exclude)):
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(full, pattern) for full in names):
                raise JobFileError(
                    f"{resources.job.path}: {where}.{kind}: pattern {pattern!r} matches no table of source"
                    f" {name!r}",
                    hint=f"patterns match {matched_by} exactly as the source spells them; tables: "
                    f"{_described(names)}",
                )
    path = resources.job.resolve_path(selection.mapping)
    template = path.read_text(encoding="utf-8")
    for entry in available:
        full = entry.full
        picked = any(fnmatch.fnmatchcase(full, pattern) for pattern in selection.include)
        if not picked or any(fnmatch.fnmatchcase(full, pattern) for pattern in selection.exclude):
            continue
        if full in config.tables:
            continue
        config.add_table(full, selection.mapping, selection.partitions)
        text = template.replace("$(schema)", entry.schema).replace("$(table)", entry.table)
        resources.mapping_texts[f"{name}.{full}"] = MappingText(f"{path} ({full})", text, {})


def _dms(resources: JobResources, name: str, config: Any, source: Any, available: list[TableName]) -> None:
    from etl.engine.resources import DmsTable, MappingText

    settings = config.dms
    target = resources.job.targets.get(settings.target)
    if target is None or target.type != "dynamodb":
        raise JobFileError(
            f"{resources.job.path}: sources.{name}.dms.target: {settings.target!r} is not a DynamoDB target"
            " of the job",
            hint="DMS object-mapping rules write DynamoDB items; DynamoDB targets: "
            + (", ".join(t for t, c in resources.job.targets.items() if c.type == "dynamodb") or "none"),
        )
    path = resources.job.resolve_path(settings.mapping)
    text = path.read_text(encoding="utf-8")
    document = DmsDocument(text, str(path))
    for schema, table in document.select(available):
        full = f"{schema}.{table}"
        entry = config.tables.get(full)
        if entry is not None and entry.mapping != settings.mapping:
            continue  # a mapping of its own
        if entry is None:
            entry = config.add_table(full, settings.mapping, settings.partitions)
        if entry.key is None:  # a job-file `key:` for the table, else the document's define-primary-key
            entry.key = document.primary_key(schema, table)
        catalogue = source.catalogue(full)
        columns = TableColumns(schema, table, tuple((column, column in catalogue.numbers)
                                                    for column in catalogue.names), catalogue.key)
        resources.mapping_texts[f"{name}.{full}"] = MappingText(str(path), text, {},
                                                                DmsTable(columns, settings.target))
