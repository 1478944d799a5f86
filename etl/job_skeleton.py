"""`python -m etl.run NEW.yaml --scaffold-job SOURCE_TYPE`: a job file to start from, for a new source.

Each source module gives its own section (`JOB_SKELETON`); the rest is the shared settings with their
defaults written out. Connection settings read `${env:...}` variables, so the skeleton loads as soon as
they are set; tables are added with `--scaffold SOURCE.TABLE` (docs/mapping.md, Scaffold).
"""

from __future__ import annotations

from pathlib import Path

from etl import sources as source_registry
from etl.errors import JobFileError

_JOB = """\
# A new job: set the variables below (or write ${{secret:...}} references instead), then propose a
# mapping for each table with `python -m etl.run {name} --scaffold source.TABLE --output TABLE.yaml`,
# list it under `tables:`, and check it with `--plan` and `--profile` before the first run.
version: 1
name: {stem}

sources:
  source:
{source}    tables: {{}}                          # TABLE: {{mapping: TABLE.yaml, partitions: 4}}

targets:
  dynamo: {{type: dynamodb, region: "${{env:ETL_AWS_REGION}}", create: if_missing}}
  pg: {{type: postgres, dsn: "${{env:ETL_TARGET_DSN}}", schema: public, create: if_missing}}

batch: {{records: 1000, bytes: 8MB}}
parallelism: 2
state: {{type: sqlite, path: .etl/state.sqlite}}
dead_letter: {{path: .etl/dead_letter.jsonl}}
max_rejects: 0
validation: {{after_run: true}}
report: {{dir: .etl/reports}}
"""


def job_skeleton(path: Path, source_type: str) -> str:
    """The text of a new job file named `path` reading a source of `source_type`."""
    if source_type not in source_registry.SOURCE_TYPES:
        raise JobFileError(f"--scaffold-job {source_type}: not a source type",
                           hint="source types: " + ", ".join(source_registry.SOURCE_TYPES))
    section = source_registry.module_for(source_type).JOB_SKELETON
    return _JOB.format(name=path.name, stem=path.stem, source=section)


def write_job_skeleton(path: str, source_type: str) -> int:
    """Write the skeleton to `path`, which must not exist yet."""
    target = Path(path)
    text = job_skeleton(target, source_type)
    try:
        with target.open("x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        raise JobFileError(f"{path}: the file exists; --scaffold-job never overwrites a file",
                           hint="name the new job file") from None
    print(f"job skeleton written to {path}")
    return 0
