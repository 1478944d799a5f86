"""The restore commands on malformed inputs, run as real subprocesses of `python -m etl.run`: every
run ends with an exit code and an `error:` line, never a traceback nor an "unexpected" defect; an
input that cannot be read (history, export, backup folder, manifest, restore point) exits 2.
Also: the plan never depends on the order the history lists its backups in."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import bson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.errors import EtlError
from etl.restore import load_chain
from etl.restore.chain import UnreadableInput
from etl.restore.mongo import chain_from_dumps
from etl.restore.oracle import chain_from_views
from etl.restore.postgres import chain_from_folders
from etl.restore.sqlserver import chain_from_rows
from tests.unit.test_fuzz_restore_inputs import damage, edit_json
from tests.unit.test_restore_cli import job_file
from tests.unit.test_restore_mongo import full_dump, oplog_slice
from tests.unit.test_restore_postgres import combined_history, self_contained

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "restore"
SQLSERVER = FIXTURES / "sqlserver"
SUBPROCESS = settings(max_examples=15, deadline=None, derandomize=True,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def job(folder: Path, engine: str, history: list[Path] | Path | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    listed = [history] if isinstance(history, Path) else history or []
    return job_file(folder, f"  engine: {engine}\n  history: {json.dumps([str(p) for p in listed])}\n"
                            f"  manifests: {folder / 'manifests'}\n"
                            '  restored: {dsn: "host=127.0.0.1 port=1 dbname=none connect_timeout=1"}\n')


def run(job_path: Path, *args: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=str(ROOT))  # this checkout's etl, not an installed one
    result = subprocess.run([sys.executable, "-m", "etl.run", str(job_path), *args], capture_output=True,
                            text=True, timeout=120, cwd=ROOT, env=environment)
    assert "Traceback" not in result.stderr, result.stderr
    assert "unexpected" not in result.stderr, result.stderr
    if result.returncode != 0:
        assert result.stderr.startswith("error: "), result.stderr
    return result


# -- pinned malformed inputs: exit 2 and the error naming what is wrong ---------------------------------

def utf16_truncated(folder: Path) -> Path:
    path = folder / "history.json"
    path.write_bytes((SQLSERVER / "dbatools.json").read_bytes()[:101])
    return path


def edited_history(row: int, column: str, value: str):
    """A maker of chain.json with one cell replaced."""
    def make(folder: Path) -> Path:
        rows = json.loads((SQLSERVER / "chain.json").read_text())
        rows[row][column] = value
        path = folder / "history.json"
        path.write_text(json.dumps(rows))
        return path
    return make


def not_json(folder: Path) -> Path:
    path = folder / "history.json"
    path.write_text('[{"name": ')
    return path


def unknown_manifest_field(folder: Path) -> Path:
    backup = self_contained(folder / "full", "0/2000028", "0/2000100")
    manifest = backup / "backup_manifest"
    body = manifest.read_text().split('"Manifest-Checksum"')[0].replace('"Files"', '"Mode": 1,\n"Files"', 1)
    import hashlib
    manifest.write_text(body + f'"Manifest-Checksum": "{hashlib.sha256(body.encode()).hexdigest()}"}}\n')
    return backup


def no_backup_label(folder: Path) -> Path:
    backup = self_contained(folder / "full", "0/2000028", "0/2000100")
    (backup / "backup_label").unlink()
    return backup


def dump_without_oplog(folder: Path) -> Path:
    (folder / "dump" / "clinic").mkdir(parents=True)
    (folder / "dump" / "clinic" / "patients.bson").write_bytes(bson.encode({"_id": 1}))
    return folder / "dump"


def oracle_without_views(folder: Path) -> Path:
    (folder / "views").mkdir()
    return folder / "views"


@pytest.mark.parametrize(("engine", "make", "message"), [
    ("sqlserver", utf16_truncated, "{path}: byte offset 100: not UTF-16 text"),
    ("sqlserver", edited_history(2, "last_lsn", "37000000026000001.5"),
     "{path}: backup diff-mon: last_lsn is '37000000026000001.5', not a whole number"),
    ("sqlserver", edited_history(0, "backup_finish_date", "yesterday"),
     "{path}: backup full-sun: backup_finish_date 'yesterday' is not a date"),
    ("sqlserver", not_json, "{path}:1:11: invalid JSON: Expecting value"),
    ("sqlserver", lambda folder: folder / "missing.json",
     "cannot read SQL Server backup history {path}: No such file or directory"),
    ("postgresql", unknown_manifest_field,
     "{path}/backup_manifest: top level: unrecognized top-level field 'Mode'"),
    ("postgresql", no_backup_label,
     "cannot read backup_label {path}/backup_label: No such file or directory"),
    ("mongodb", dump_without_oplog, "{path}: no oplog.bson or local/oplog.rs.bson"),
    ("oracle", oracle_without_views, "{path}: needs v$backup_set.csv (or .json) and v$backup_datafile.csv"),
], ids=["UTF-16 cut mid-character", "fractional LSN", "date", "not JSON", "missing file",
        "manifest field", "no backup_label", "dump without oplog", "no views"])
@pytest.mark.parametrize("command", ["--restore-plan", "--verify-restore"])
def test_unreadable_history_exits_2_naming_it(tmp_path, engine, make, message, command):
    path = make(tmp_path)
    result = run(job(tmp_path / "job", engine, path), command)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"error: {message.format(path=path)}"), result.stderr


@pytest.mark.parametrize(("engine", "point", "message"), [
    ("postgresql", "0/ZZ", "error: '0/ZZ' is not a PostgreSQL LSN"),
    ("sqlserver", "next tuesday",
     "error: mssql: restore point 'next tuesday' is neither a position nor a time"),
    ("mongodb", "1700000000", "error: mongo: restore point 1700000000 is not an oplog timestamp"),
], ids=["LSN", "time", "oplog"])
def test_unreadable_restore_point_exits_2(tmp_path, engine, point, message):
    result = run(job(tmp_path, engine, SQLSERVER / "chain.json"), "--restore-plan", "--point", point)
    assert result.returncode == 2
    assert result.stderr.startswith(message), result.stderr


def test_unreadable_checksum_manifest_exits_2(tmp_path):
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "full-sun.json").write_text("{not json")
    result = run(job(tmp_path, "sqlserver", SQLSERVER / "chain.json"), "--verify-restore")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {tmp_path / 'manifests' / 'full-sun.json'}: not a readable "
                                    "manifest"), result.stderr


# -- random damage: the command's exit code is the reader's, never a defect -------------------------------

@SUBPROCESS
@given(data=st.one_of(damage((SQLSERVER / "dbatools.json").read_bytes()),
                      edit_json(json.loads((SQLSERVER / "chain.json").read_text())),
                      edit_json(json.loads((SQLSERVER / "forks.json").read_text()))),
       command=st.sampled_from(["--restore-plan", "--verify-restore"]))
def test_damaged_sqlserver_history_through_the_command(tmp_path_factory, data, command):
    folder = tmp_path_factory.mktemp("cli")
    path = folder / "history.json"
    path.write_bytes(data)
    try:
        load_chain("sqlserver", path)
        unreadable = False
    except UnreadableInput:
        unreadable = True
    except EtlError:  # a chain rule met while loading: the command reports it with its own code
        unreadable = False
    result = run(job(folder / "job", "sqlserver", path), command)
    if unreadable:
        assert result.returncode == 2, result.stderr
    else:
        assert result.returncode in (0, 1, 2, 3), result.stderr


# -- the plan does not depend on listing order -----------------------------------------------------------

def plan_facts(chain, target):
    plan = chain.plan(target)
    return plan.names, plan.reaches, plan.unused, plan.warnings, plan.notes


HISTORIES = [("chain.json", None), ("chain.json", datetime(2026, 11, 2, 12)), ("forks.json", None),
             ("forks.json", datetime(2026, 11, 3, 12)), ("forks.json", datetime(2026, 11, 6)),
             ("new_base.json", None), ("copy_only.json", None), ("empty_log.json", datetime(2026, 11, 2, 3))]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(case=st.sampled_from(HISTORIES), seed=st.integers(0, 2**32 - 1))
def test_shuffled_sqlserver_history_plans_the_same(case, seed):
    name, target = case
    rows = json.loads((SQLSERVER / name).read_text())
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    assert plan_facts(chain_from_rows(shuffled), target) == plan_facts(chain_from_rows(rows), target)


def test_shuffled_dbatools_history_plans_the_same():
    rows = json.loads((SQLSERVER / "dbatools.json").read_bytes().decode("utf-16"))
    expected = plan_facts(chain_from_rows(rows), None)
    for seed in range(10):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        assert plan_facts(chain_from_rows(shuffled), None) == expected


def test_shuffled_postgres_folders_plan_the_same(tmp_path):
    folders = combined_history(tmp_path)
    expected = plan_facts(chain_from_folders(folders), None)
    assert expected[0] == ["combined", "inc3"]
    for seed in range(10):
        shuffled = folders[:]
        random.Random(seed).shuffle(shuffled)
        assert plan_facts(chain_from_folders(shuffled), None) == expected


def test_shuffled_oracle_views_plan_the_same():
    views = {name: json.loads((FIXTURES / "oracle" / "cumulative" / f"{name}.json").read_text())
             for name in ("v$backup_set", "v$backup_datafile", "v$backup_redolog")}
    expected = plan_facts(chain_from_views(*views.values()), 7100)
    assert expected[0] == ["LVL0_SUN", "CUM_TUE", "archivelog thread 1 sequence 52"]
    for seed in range(10):
        shuffled = [random.Random(seed).sample(rows, len(rows)) for rows in views.values()]
        assert plan_facts(chain_from_views(*shuffled), 7100) == expected


def test_shuffled_mongodump_folders_plan_the_same(tmp_path):
    folders = [full_dump(tmp_path, "dump-sun", [(0, 1), (10, 1)]),
               oplog_slice(tmp_path, "oplog-1", [(10, 1), (50, 1), (100, 1)]),
               oplog_slice(tmp_path, "oplog-2", [(100, 1), (150, 1), (200, 1)])]
    expected = plan_facts(chain_from_dumps(folders), None)
    assert expected[0] == ["dump-sun", "oplog-1", "oplog-2"]
    for seed in range(6):
        assert plan_facts(chain_from_dumps(random.Random(seed).sample(folders, 3)), None) == expected


@pytest.mark.parametrize("name", ["chain.json", "forks.json", "empty_log.json", "new_base.json",
                                  "copy_only.json", "dbatools.json", "msdb_text.csv", "headeronly.csv",
                                  "missing_base.json"])
def test_every_plan_passes_the_check_of_its_own_sequence(name):
    """Whatever the planner returns, the engine's rules (Chain.check) accept, with the same warnings."""
    chain = load_chain("mssql", SQLSERVER / name)
    targets = [None, *(37000000000000000 + k * 100000 + 1 for k in range(80, 520, 7)),
               *(datetime(2026, 10, 31) + timedelta(hours=h) for h in range(0, 24 * 7, 5))]
    planned = 0
    for target in targets:
        try:
            plan = chain.plan(target)
        except EtlError:
            continue
        planned += 1
        checked = chain.check(plan.names, target)
        assert (checked.reaches, checked.warnings) == (plan.reaches, plan.warnings), (name, target)
    assert planned > 0


@pytest.mark.parametrize("case", ["cumulative", "staggered", "incarnation", "full_not_level0"])
def test_every_oracle_plan_passes_the_check_of_its_own_sequence(case):
    chain = load_chain("oracle", FIXTURES / "oracle" / case)
    for target in [None, *range(4000, 10000, 97)]:
        try:
            plan = chain.plan(target)
        except EtlError:
            continue
        assert chain.check(plan.names, target).reaches == plan.reaches, (case, target)
