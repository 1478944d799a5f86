"""Run one job in this process and print its figures as one JSON line: a bench's engine side.

    .venv/bin/python bench/engine_child.py job.yaml

Prints `seconds` (the run, job loaded), `ok` (the records moved and add up: `unproven`, since a
bench turns validation off), `status`, `message`, `loaded` (the first table's records), `cores_busy`
(the whole machine, while it ran) and `peak_rss_mib` (the largest of this process and its worker
processes). A bench runs it as a child so that each run's peak is its own, and as a script of its
own because worker processes started with `spawn` import the parent's main script again: this one
imports no more than `python -m etl.run` does, where a bench's script imports its baselines too
(pymongo, ...), which would lengthen every worker's start.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's etl, not an installed one
sys.path.insert(0, str(Path(__file__).resolve().parent))

from busy_cores import BusyCores  # noqa: E402


def run_in_child(job: Path) -> dict:
    """Run `job` with this script in a child process; its figures. Exits the bench when it fails."""
    return run_in_children([job])[0]


def run_in_children(jobs: list[Path]) -> list[dict]:
    """Run every job at once, each in a child process of its own; their figures, in order. Exits the
    bench when one fails."""
    children = [subprocess.Popen([sys.executable, __file__, str(job)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for job in jobs]
    outputs = [child.communicate() for child in children]  # every child ended before any failure is told
    for child, (_out, err) in zip(children, outputs, strict=True):
        if child.returncode != 0:
            raise SystemExit(f"engine child failed ({child.returncode}): {err[-2000:]}")
    return [json.loads(out.strip().splitlines()[-1]) for out, _err in outputs]


def main(job_path: str) -> int:
    from etl.engine.runner import run_job
    from etl.job import load_job
    from etl.report.run_report import UNPROVEN

    job = load_job(Path(job_path))
    started, busy = time.perf_counter(), BusyCores()
    report = run_job(job)
    seconds, cores = time.perf_counter() - started, busy.cores()
    print(json.dumps({"seconds": seconds, "ok": report.status == UNPROVEN, "status": str(report.status),
                      "message": report.message, "loaded": report.tables[0].loaded, "cores_busy": cores,
                      "peak_rss_mib": max(resource.getrusage(who).ru_maxrss for who in (
                          resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024}))  # KiB on Linux
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
