"""The command a hint tells the user to run next, with the options that chose what the run covered.

A run of `--only customers` or `--shard 2/8` that stops must be continued by the same selection:
a hint that dropped them would send the user off to run the whole job (or every shard's share) instead.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any


def rerun_command(job: str, options: Mapping[str, Any]) -> str:
    """`python -m etl.run JOB` plus the selecting options of `options` (a report's `options`:
    `only`, `shard`, `incremental`), quoted for a POSIX shell."""
    words = ["python", "-m", "etl.run", job]
    for table in options.get("only") or ():
        words += ["--only", str(table)]
    if options.get("shard"):
        words += ["--shard", str(options["shard"])]
    if options.get("incremental") and not options.get("follow"):
        words.append("--incremental")
    return shlex.join(words)
