"""Job files for tests: the one helper that writes a job file (and the mapping files it names), and
the sections most test jobs share, so a change to the job-file format is made here once.

A test whose assertions name a file:line:column inside its job keeps its own job text (written with
`write_job_file`), so the positions it asserts stay where they are.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import DYNAMODB_ENDPOINT

SQLITE_STATE = "{type: sqlite, path: .etl/state.sqlite}"
"""The default state store of a test job, relative to the job file's folder."""
DEAD_LETTER = "dead_letter: {path: .etl/dead_letter.jsonl}\n"
REPORT = "report: {dir: .etl/reports}\n"
RUN_FILES = f"state: {SQLITE_STATE}\n{DEAD_LETTER}"
"""Where a test job keeps its state and dead letters: inside the test's own folder."""


def postgres_target(dsn: str, *, schema: str | None = None, create: str | None = None) -> str:
    """A PostgreSQL target as a flow mapping: `{type: postgres, dsn: "...", schema: s, create: c}`."""
    options = "".join(f", {name}: {value}" for name, value in (("schema", schema), ("create", create))
                      if value is not None)
    return f'{{type: postgres, dsn: "{dsn}"{options}}}'


def dynamodb_target(create: str = "if_missing") -> str:
    """A DynamoDB Local target as a flow mapping."""
    return f'{{type: dynamodb, endpoint_url: "{DYNAMODB_ENDPOINT}", region: us-east-1, create: {create}}}'


def write_job_file(folder: Path, text: str, *, name: str = "job.yaml",
                   mappings: dict[str, str] | None = None) -> Path:
    """Write `text` as `folder/name`, and each of `mappings` (file name -> text) beside it; the job's path."""
    for file_name, mapping in (mappings or {}).items():
        (folder / file_name).write_text(mapping)
    path = folder / name
    path.write_text(text)
    return path
