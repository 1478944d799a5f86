"""The SQLite state store: leases, checkpoints, values; safe across threads, processes and SIGKILL."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import UTC

import pytest

from etl.errors import RuntimeFailure
from etl.state import module_for
from etl.state.base import Checkpoint
from etl.state.sqlite import Config, open_store


@pytest.fixture
def store(tmp_path):
    opened = open_store(Config(), base_dir=tmp_path)
    yield opened
    opened.close()


def test_the_default_file_is_beside_the_job(tmp_path):
    config = module_for("sqlite").Config.model_validate({"type": "sqlite"})
    store = open_store(config, base_dir=tmp_path)
    store.close()
    assert (tmp_path / ".etl" / "state.sqlite").is_file()
    with sqlite3.connect(tmp_path / ".etl" / "state.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_second_holder_is_refused_naming_holder_and_expiry(store):
    lease = store.acquire_lease("demo", "host-a:pid1", 60)
    with pytest.raises(RuntimeFailure) as caught:
        store.acquire_lease("demo", "host-b:pid2", 60)
    until = lease.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert str(caught.value) == (
        f"job 'demo' is already running: its lease is held by 'host-a:pid1' until {until}\n"
        "  hint: wait for that run to finish, or for the lease to expire if that run died"
    )
    assert caught.value.exit_code == 3
    other = store.acquire_lease("another-job", "host-b:pid2", 60)
    assert other.holder == "host-b:pid2"


def test_an_expired_lease_is_taken_over_and_the_old_holder_learns_it(store):
    old = store.acquire_lease("demo", "dead-run", 0)
    new = store.acquire_lease("demo", "new-run", 60)
    assert (new.holder, new.token != old.token) == ("new-run", True)
    with pytest.raises(RuntimeFailure) as caught:
        store.renew_lease(old, 60)
    assert (
        caught.value.message
        == "job 'demo' lost its lease: 'dead-run' let it expire and another run took it over"
    )
    store.release_lease(old)  # not ours any more: must not remove the new holder's lease
    with pytest.raises(RuntimeFailure):
        store.acquire_lease("demo", "third-run", 60)
    renewed = store.renew_lease(new, 120)
    assert renewed.token == new.token and renewed.expires_at > new.expires_at
    store.release_lease(renewed)
    assert store.acquire_lease("demo", "third-run", 60).holder == "third-run"


def test_checkpoints_round_trip_exactly_and_replace(store):
    first = Checkpoint("mongo.customers#0/2", {"_id": {"$oid": "65a0"}}, False, {"extracted": 5000}, {})
    second = Checkpoint(
        "mongo.customers#1/2",
        resume_after=[2**127 + 1, "é€", 0.1],
        done=True,
        counts={"extracted": 59, "loaded": 58, "rejected": 1, "filtered": 0, "rows:pg.customers": 58},
        extra={"buckets": {"7": [3, 2**128 - 1]}},
    )
    store.save_checkpoint("demo", first)
    store.save_checkpoint("demo", second)
    assert store.checkpoints("demo") == {first.partition: first, second.partition: second}
    moved = Checkpoint(first.partition, {"_id": 10_000}, False, {"extracted": 10_000})
    store.save_checkpoint("demo", moved)
    assert store.checkpoints("demo")[first.partition] == moved
    assert store.checkpoints("other") == {}


def test_clear_forgets_checkpoints_and_values_but_keeps_the_lease(store):
    lease = store.acquire_lease("demo", "me", 60)
    store.save_checkpoint("demo", Checkpoint("p#0/1", done=True))
    store.set_value("demo", "resume_token", {"_data": "8263"})
    store.save_checkpoint("keep", Checkpoint("p#0/1"))
    store.clear("demo")
    assert store.checkpoints("demo") == {}
    assert store.get_value("demo", "resume_token") is None
    assert list(store.checkpoints("keep")) == ["p#0/1"]
    assert store.renew_lease(lease, 60).token == lease.token


def test_values(store):
    assert store.get_value("demo", "missing") is None
    store.set_value("demo", "token", {"_data": "82", "n": [1, 2]})
    store.set_value("demo", "token", {"_data": "83"})
    assert store.get_value("demo", "token") == {"_data": "83"}


def test_threads_save_at_once_without_losing_a_checkpoint(store):
    def work(thread: int) -> None:
        for n in range(50):
            store.save_checkpoint(
                "demo", Checkpoint(f"t{thread}#{n}", resume_after=n, counts={"extracted": n})
            )

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = store.checkpoints("demo")
    assert len(found) == 400
    assert found["t7#49"].resume_after == 49


HELPER = textwrap.dedent("""\
    import sys
    from pathlib import Path
    from etl.errors import RuntimeFailure
    from etl.state.base import Checkpoint
    from etl.state.sqlite import Config, open_store

    store = open_store(Config(path=sys.argv[1]), base_dir=Path("."))
    if sys.argv[2] == "lease":
        try:
            store.acquire_lease("race", sys.argv[3], 60)
            print("won", flush=True)
        except RuntimeFailure:
            print("lost", flush=True)
    else:
        n = 0
        while True:
            store.save_checkpoint("crash", Checkpoint("p#0/1", resume_after=n, counts={"extracted": n}))
            print(n, flush=True)
            n += 1
""")


def test_processes_racing_for_a_lease_leave_exactly_one_winner(tmp_path):
    db = str(tmp_path / "state.sqlite")
    open_store(Config(path=db), base_dir=tmp_path).close()
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", HELPER, db, "lease", f"run{i}"], stdout=subprocess.PIPE, text=True
        )
        for i in range(4)
    ]
    outcomes = sorted(run.communicate(timeout=60)[0].strip() for run in runs)
    assert outcomes == ["lost", "lost", "lost", "won"]


def test_a_checkpoint_saved_before_sigkill_survives(tmp_path):
    db = str(tmp_path / "state.sqlite")
    writer = subprocess.Popen([sys.executable, "-c", HELPER, db, "save"], stdout=subprocess.PIPE, text=True)
    acknowledged = -1
    while acknowledged < 200:
        acknowledged = int(writer.stdout.readline())
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    store = open_store(Config(path=db), base_dir=tmp_path)
    try:
        saved = store.checkpoints("crash")["p#0/1"]
        # every save the writer acknowledged is durable; at most the one in flight may also have landed
        assert saved.resume_after >= acknowledged
        assert saved.counts == {"extracted": saved.resume_after}
    finally:
        store.close()
    with sqlite3.connect(db) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_an_unwritable_location_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RuntimeFailure) as caught:
        open_store(Config(path="file/state.sqlite"), base_dir=tmp_path)
    assert caught.value.message == f"cannot create the state store folder {tmp_path / 'file'}: File exists"
