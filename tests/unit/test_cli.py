"""`python -m etl.run`: exit codes, errors without tracebacks, and no password in any output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.jobfiles import write_job_file

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Sup3r-S3cret-pw"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    environment = dict(os.environ)
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "etl.run", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=environment)


def job_file(folder: Path, *, state: str, extra: str = "") -> Path:
    return write_job_file(folder, f"""\
version: 1
name: cli-test
sources:
  mongo:
    type: mongo
    uri: mongodb://127.0.0.1:1/?directConnection=true
    database: x
    tables:
      things: {{mapping: m.yaml}}
targets:
  pg: {{type: postgres, dsn: "host=127.0.0.1 port=1 user=etl dbname=x"}}
state: {state}
{extra}""", mappings={"m.yaml": "version: 1\n"})


def test_help_lists_every_option_and_the_exit_codes():
    result = run("--help")
    assert result.returncode == 0
    for option in ("--plan", "--validate-only", "--resume", "--full-refresh", "--only TABLE", "--limit N",
                   "--shard K/N", "--lease-ttl SECONDS", "--debug"):
        assert option in result.stdout
    assert ("exit codes: 0 success (every record moved or rejected with a reason, and the targets proven "
            "equal), 1 validation found differences, 2 bad job or mapping file, 3 runtime failure, "
            "4 unproven (a --limit try, or a run without validation)") in " ".join(result.stdout.split())


def test_a_bad_job_file_exits_2_with_its_position_and_no_traceback(tmp_path):
    path = job_file(tmp_path, state="{type: sqlite}", extra="paralelism: 4\n")
    result = run(str(path))
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        f"error: {path}:13:1: paralelism: unknown key 'paralelism'; did you mean 'parallelism'?")
    assert "Traceback" not in result.stderr


def test_postgres_column_names_cut_to_one_name_exit_2_before_connecting(tmp_path):
    path = job_file(tmp_path, state="{type: sqlite}")
    long = "c" * 63
    (tmp_path / "m.yaml").write_text(
        "targets: {pg: postgres}\noutputs:\n  - target: pg\n    table: t\n    key: [id]\n    columns:\n"
        f"      id: {{from: _id, type: string}}\n      {long}_a: a\n      {long}_b: b\n")
    result = run(str(path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-2:] == [
        f"error: {tmp_path / 'm.yaml'}:9:74: outputs[0].columns.{long}_b: columns `{long}_a` (line 8) and "
        f"`{long}_b` are one column in PostgreSQL: it keeps only the first 63 bytes of a name "
        f"(NAMEDATALEN-1), and both begin `{long}`",
        "  hint: shorten one of the names so their first 63 bytes differ",
    ]


@pytest.mark.parametrize("args, message", [
    (["--shard", "3/3"], "error: --shard '3/3': K must be between 0 and N-1 and N at least 1"),
    (["--limit", "5", "--shard", "0/2"],
     "error: --limit is a quick try of the whole job; it cannot be combined with --shard or --validate-only"),
    (["--profile-sample", "3", "--incremental"],
     "error: --profile-sample profiles the job; it cannot be combined with --incremental"),
    (["--profile-sample", "3", "--plan"],
     "error: --profile-sample profiles the job; it cannot be combined with --plan"),
])
def test_bad_options_exit_2(tmp_path, args, message):
    result = run(str(job_file(tmp_path, state="{type: sqlite}")), *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-2 if "hint" in result.stderr else -1] == message


def test_conflicting_options_are_refused_by_the_parser(tmp_path):
    result = run(str(job_file(tmp_path, state="{type: sqlite}")), "--resume", "--full-refresh")
    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr


@pytest.mark.parametrize("debug", [False, True])
def test_a_password_in_a_wrong_dsn_never_appears(tmp_path, debug):
    """The state store's DSN holds a password and points nowhere: exit 3, the password masked."""
    path = job_file(tmp_path, state='{type: postgres, dsn: "${env:ETL_TEST_STATE_DSN}"}')
    dsn = f"host=127.0.0.1 port=1 user=etl password={PASSWORD} dbname=state connect_timeout=2"
    result = run(str(path), *(["--debug"] if debug else []), env={"ETL_TEST_STATE_DSN": dsn})
    assert result.returncode == 3
    output = result.stdout + result.stderr
    assert PASSWORD not in output
    assert "error: " in result.stderr
    assert ("Traceback" in output) is debug


def test_version_prints_the_installed_version():
    from importlib.metadata import version

    result = run("--version")
    assert (result.returncode, result.stdout) == (0, f"python -m etl.run {version('etl')}\n")


def test_ctrl_c_before_the_run_took_over_hints_the_same_selection(monkeypatch, capsys):
    """KeyboardInterrupt outside the run's own signal handling (loading, planning): the hint keeps
    --only and --shard, quoted for the shell."""
    from etl import run as cli

    class Trail:
        def failed(self, error):
            self.error = error

    def interrupted(args, trail):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_main", interrupted)
    args = cli.parser().parse_args(["my jobs/job.yaml", "--only", "customers,orders", "--shard", "1/4"])
    assert cli._reported(args, Trail()) == 3
    assert capsys.readouterr().err == (
        "error: interrupted; run `python -m etl.run 'my jobs/job.yaml' --only customers --only orders "
        "--shard 1/4 --resume` to continue from the last checkpoints\n")
