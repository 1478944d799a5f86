"""Job files: load, interpolate ${env:..}/${secret:..}, validate, report every problem.

- `schema`: the sections a job file holds, `JobFile` (the document as written) and `Job` (validated);
- `problems`: `Problem`, `JobFileProblems` and the messages, each at file:line:column;
- `load`: `load_job`, which puts them together.
"""

from etl.job.load import load_job
from etl.job.problems import JobFileProblems, Problem, dotted, nearest, problems_text
from etl.job.schema import (
    MAX_BATCH_BYTES,
    MIN_BATCH_BYTES,
    Batch,
    DeadLetter,
    Executor,
    Job,
    JobFile,
    MaxRejects,
    Metrics,
    Progress,
    Report,
    Restore,
    RestoreDatabase,
    RestoreTable,
    Validation,
    _parse_bytes,
)

__all__ = [
    "MAX_BATCH_BYTES",
    "MIN_BATCH_BYTES",
    "Batch",
    "DeadLetter",
    "Executor",
    "Job",
    "JobFile",
    "JobFileProblems",
    "MaxRejects",
    "Metrics",
    "Progress",
    "Problem",
    "Report",
    "Restore",
    "RestoreDatabase",
    "RestoreTable",
    "Validation",
    "_parse_bytes",
    "dotted",
    "load_job",
    "nearest",
    "problems_text",
]
