"""The run's display in a real terminal: tmux runs the command in a pane of a fixed size, and the
test reads the pane back (`capture-pane`) once the command has ended."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import pytest

from tests.conftest import unique_name
from tests.integration.run_helpers import ROOT, command, environment
from tests.integration.test_mapping_checks import people, people_job

TMUX = shutil.which("tmux")
pytestmark = [pytest.mark.integration, pytest.mark.skipif(
    TMUX is None, reason="tmux is not installed (scripts/setup.sh --tests installs it)")]

WIDTH, HEIGHT = 160, 50


def in_terminal(folder, argv: list[str]) -> tuple[int, list[str]]:
    """Run `argv` in a new tmux pane WIDTH columns wide; its exit code and the pane's lines, wrapped
    lines joined. A tmux server of its own (`-L`), killed afterwards."""
    server, done = unique_name("etl_tty"), unique_name("done")
    env = {k: v for k, v in environment().items() if k.startswith(("ETL_", "AWS_", "PYTHON", "PATH", "HOME"))}
    env.update(COLUMNS=str(WIDTH), LINES=str(HEIGHT))  # the test runner's COLUMNS would win over the pane's
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    shell = (f"cd {shlex.quote(str(ROOT))} && env {assignments} {shlex.join(argv)} > {folder / 'stdout'}; "
             f"echo $? > {folder / 'exit'}; tmux -L {server} wait-for -S {done}; sleep 600")
    tmux = [TMUX, "-L", server]
    subprocess.run([*tmux, "-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(WIDTH),
                    "-y", str(HEIGHT), shell], check=True)
    try:
        subprocess.run([*tmux, "wait-for", done], check=True, timeout=300)
        pane = subprocess.run([*tmux, "capture-pane", "-p", "-J", "-t", "t", "-S", "-500"], check=True,
                              capture_output=True, text=True).stdout
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)
    return int((folder / "exit").read_text()), [line.rstrip() for line in pane.splitlines() if line.strip()]


def test_one_live_display_with_logs_above_it(tmp_path, mongo_db, pg_database):
    """600 documents in batches of 2; a sample of 2 finds no `nick_name` (only the last document has
    it), so planning warns while the display is live: the warning prints above the display, whole."""
    job, mapping = people_job(tmp_path, mongo_db, pg_database, people(600, nick={600}))
    job.write_text(job.read_text().replace("partitions: 1}", "partitions: 1, check_sample: 2}"))
    exit_code, lines = in_terminal(tmp_path, command(job))
    assert exit_code == 0, "\n".join(lines)
    rows = {re.split(r" {2,}|━+", line)[0].strip(): line for line in lines if "━" in line}
    # the load's lines, then validation's in the order its two sides started reading
    assert list(rows)[:2] == ["mongo.people", "total"], "\n".join(lines)
    assert sorted(list(rows)[2:]) == ["validate mongo.people", "validate pg.mc_people"], "\n".join(lines)
    line = r"{} +━{{24}} 600/600 100% +[\d,]+/s +[0-9:]+ {}"
    assert re.fullmatch(line.format(r"mongo\.people", "0 rejected"), rows["mongo.people"])
    assert re.fullmatch(line.format("total       ", "0 rejected"), rows["total"])
    assert re.fullmatch(line.format(r"validate mongo\.people", "source read and mapped"),
                        rows["validate mongo.people"])
    assert re.fullmatch(line.format(r"validate pg\.mc_people", "target read back"),
                        rows["validate pg.mc_people"])
    first_row = min(i for i, line in enumerate(lines) if "━" in line)
    # above the display, not inside it: the log handler wraps it at word boundaries under its level
    logged = " ".join(" ".join(lines[:first_row]).split())
    assert (f"WARNING mongo.people: {mapping}:13:24: mc_people.nickname: path `nick_name` is absent from "
            "all 2 sampled records; did you mean `nickname`?") in logged, "\n".join(lines)
    # every log line is above the display: nothing but display lines from its first to its last
    last_row = max(i for i, line in enumerate(lines) if "━" in line)
    assert all("━" in line for line in lines[first_row:last_row + 1])
