"""The lease holder's identity and the one rule that says its process is dead (etl/state/liveness.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from etl.errors import RuntimeFailure
from etl.state.liveness import holder_identity, holder_is_dead
from etl.state.sqlite import Config, open_store

HOST = socket.gethostname()
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def start_ticks(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rfind(")") + 2:].split()[19]


@pytest.fixture
def live():
    process = subprocess.Popen(SLEEPER)
    yield process.pid, start_ticks(process.pid)
    process.kill()
    process.wait()


@pytest.fixture
def dead():
    process = subprocess.Popen(SLEEPER)
    pid, started = process.pid, start_ticks(process.pid)
    process.kill()
    process.wait()
    return pid, started


def test_holder_identity_is_host_pid_and_start_time():
    assert holder_identity() == f"{HOST}:{os.getpid()}:{start_ticks(os.getpid())}"
    assert holder_is_dead(holder_identity()) is False


def test_a_live_process_on_this_host_is_alive(live):
    pid, started = live
    assert holder_is_dead(f"{HOST}:{pid}:{started}") is False


def test_a_reaped_process_on_this_host_is_dead(dead):
    pid, started = dead
    assert holder_is_dead(f"{HOST}:{pid}:{started}") is True


def test_a_killed_but_unreaped_process_is_dead():
    process = subprocess.Popen(SLEEPER)
    holder = f"{HOST}:{process.pid}:{start_ticks(process.pid)}"
    process.kill()
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)  # a zombie until reaped below
    try:
        assert holder_is_dead(holder) is True
    finally:
        process.wait()


def test_a_pid_now_used_by_a_process_started_at_another_time_is_dead(live):
    pid, started = live
    assert holder_is_dead(f"{HOST}:{pid}:{int(started) - 1}") is True


def test_holders_on_other_hosts_or_in_other_formats_are_never_judged_dead(dead):
    pid, started = dead
    assert holder_is_dead(f"other-host:{pid}:{started}") is False
    assert holder_is_dead(f"{HOST}:pid{pid}") is False
    assert holder_is_dead(f"{HOST}:{pid}:unknown") is False
    assert holder_is_dead("") is False


def test_sqlite_store_takes_over_a_dead_holders_lease_and_logs_it(tmp_path, dead, live, caplog):
    store = open_store(Config(), base_dir=tmp_path)
    dead_holder = f"{HOST}:{dead[0]}:{dead[1]}"
    old = store.acquire_lease("job", dead_holder, 300)
    with caplog.at_level("WARNING", logger="etl.state.liveness"):
        new = store.acquire_lease("job", holder_identity(), 300)
    assert new.token != old.token and new.holder == holder_identity()
    assert caplog.messages == [
        f"job job: took over the lease of '{dead_holder}', whose process on this host is dead"]

    live_holder = f"{HOST}:{live[0]}:{live[1]}"
    store.release_lease(new)
    held = store.acquire_lease("job", live_holder, 300)
    with pytest.raises(RuntimeFailure) as caught:
        store.acquire_lease("job", holder_identity(), 300)
    until = held.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert str(caught.value).splitlines()[0] == (
        f"job 'job' is already running: its lease is held by '{live_holder}' until {until}")
    store.close()
