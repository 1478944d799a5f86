"""The PostgreSQL and DynamoDB state stores against the real local servers: same contract as SQLite."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from datetime import UTC

import psycopg
import pytest

from etl.errors import RuntimeFailure
from etl.state import module_for
from etl.state.base import Checkpoint
from etl.state.liveness import holder_identity
from tests.conftest import DYNAMODB_ENDPOINT

pytestmark = pytest.mark.integration


@pytest.fixture
def aws_env(monkeypatch):
    """The standard AWS variables the store's boto3 session reads (DynamoDB Local accepts any key)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def open_backend(request, backend: str, tmp_path):
    """A state store of the `backend` kind on the local servers (its table or database dropped after)."""
    if backend == "sqlite":
        section = {"type": "sqlite"}
    elif backend == "postgres":
        dsn = request.getfixturevalue("pg_database")
        section = {"type": "postgres", "dsn": dsn, "schema": "etl_state_test", "table": "state"}
    else:
        request.getfixturevalue("aws_env")
        prefix = request.getfixturevalue("dynamodb_table_prefix")
        section = {"type": "dynamodb", "table": f"{prefix}_state", "endpoint_url": DYNAMODB_ENDPOINT}
    module = module_for(backend)
    return module.open_store(module.Config.model_validate(section), base_dir=tmp_path)


@pytest.fixture(params=["postgres", "dynamodb"])
def store(request, tmp_path):
    opened = open_backend(request, request.param, tmp_path)
    yield opened
    opened.close()


def test_lease_conflict_names_holder_and_expiry(store):
    lease = store.acquire_lease("demo", "host-a:pid1", 60)
    with pytest.raises(RuntimeFailure) as caught:
        store.acquire_lease("demo", "host-b:pid2", 60)
    until = lease.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert str(caught.value) == (
        f"job 'demo' is already running: its lease is held by 'host-a:pid1' until {until}\n"
        "  hint: wait for that run to finish, or for the lease to expire if that run died"
    )
    assert store.acquire_lease("other-job", "host-b:pid2", 60).holder == "host-b:pid2"


def test_takeover_after_expiry(store):
    old = store.acquire_lease("demo", "dead-run", 0)
    new = store.acquire_lease("demo", "new-run", 60)
    assert new.holder == "new-run" and new.token != old.token
    with pytest.raises(RuntimeFailure) as caught:
        store.renew_lease(old, 60)
    assert (
        caught.value.message
        == "job 'demo' lost its lease: 'dead-run' let it expire and another run took it over"
    )
    store.release_lease(old)
    with pytest.raises(RuntimeFailure):
        store.acquire_lease("demo", "third-run", 60)
    store.release_lease(store.renew_lease(new, 60))
    assert store.acquire_lease("demo", "third-run", 60).holder == "third-run"


def test_only_one_of_many_threads_wins_the_lease(store):
    outcomes: list[str] = []

    def race(n: int) -> None:
        try:
            store.acquire_lease("race", f"run{n}", 60)
            outcomes.append("won")
        except RuntimeFailure:
            outcomes.append("lost")

    threads = [threading.Thread(target=race, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["lost"] * 5 + ["won"]


def test_checkpoint_round_trip_and_clear(store):
    lease = store.acquire_lease("demo", "me", 60)
    first = Checkpoint("mongo.customers#0/2", {"_id": 29}, False, {"extracted": 29, "loaded": 29})
    second = Checkpoint(
        "mongo.customers#1/2",
        resume_after=[2**127 + 1, "é€", 0.1],
        done=True,
        counts={"extracted": 30, "loaded": 29, "rejected": 1, "filtered": 0, "rows:pg.customers": 29},
        extra={"buckets": {"7": [3, 2**128 - 1]}},
    )
    store.save_checkpoint("demo", first)
    store.save_checkpoint("demo", second)
    store.save_checkpoint("neighbour", first)
    assert store.checkpoints("demo") == {first.partition: first, second.partition: second}
    moved = Checkpoint(first.partition, {"_id": 59}, True, {"extracted": 59})
    store.save_checkpoint("demo", moved)
    assert store.checkpoints("demo")[first.partition] == moved

    store.set_value("demo", "resume_token", {"_data": "8263A0"})
    assert store.get_value("demo", "resume_token") == {"_data": "8263A0"}
    assert store.get_value("demo", "absent") is None

    store.clear("demo")
    assert store.checkpoints("demo") == {}
    assert store.get_value("demo", "resume_token") is None
    assert store.checkpoints("neighbour") == {first.partition: first}
    assert store.renew_lease(lease, 60).token == lease.token  # clear kept the running job's lease


def test_postgres_store_quotes_hostile_names(pg_database, tmp_path):
    """Schema and table names are identifiers, quoted: a name that tries SQL injection is just a name."""
    schema, table = 'x"; DROP TABLE victim; --', "state; DELETE FROM victim"
    with psycopg.connect(pg_database, autocommit=True) as db:
        db.execute("CREATE TABLE victim (id int)")
        db.execute("INSERT INTO victim VALUES (1), (2)")
    module = module_for("postgres")
    config = module.Config.model_validate(
        {"type": "postgres", "dsn": pg_database, "schema": schema, "table": table}
    )
    store = module.open_store(config, base_dir=tmp_path)
    store.save_checkpoint("demo", Checkpoint("p#0/1", 5))
    store.clear("demo")
    store.close()
    with psycopg.connect(pg_database) as db:
        assert db.execute("SELECT count(*) FROM victim").fetchone() == (2,)
        tables = db.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema NOT IN "
            "('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()
    assert tables == [("public", "victim"), (schema, table)]


def test_postgres_store_unreachable_server_is_a_connection_error(tmp_path):
    module = module_for("postgres")
    config = module.Config.model_validate(
        {
            "type": "postgres",
            "dsn": "host=127.0.0.1 port=1 user=app password=UnreachablePw-55 connect_timeout=2",
        }
    )
    with pytest.raises(Exception) as caught:
        module.open_store(config, base_dir=tmp_path)
    assert type(caught.value).__name__ == "ConnectionFailed"
    assert caught.value.message.startswith("state store (PostgreSQL table etl.etl_state): connection failed:")
    assert "UnreachablePw-55" not in str(caught.value)


def test_dynamodb_store_creates_an_on_demand_table(aws_env, dynamodb_client, dynamodb_table_prefix, tmp_path):
    module = module_for("dynamodb")
    name = f"{dynamodb_table_prefix}_created"
    config = module.Config.model_validate(
        {"type": "dynamodb", "table": name, "endpoint_url": DYNAMODB_ENDPOINT}
    )
    module.open_store(config, base_dir=tmp_path).close()
    module.open_store(config, base_dir=tmp_path).close()  # a second open finds the table
    table = dynamodb_client.describe_table(TableName=name)["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]] == [
        ("pk", "HASH"),
        ("sk", "RANGE"),
    ]


def test_a_dead_holder_on_this_host_is_taken_over_a_live_one_blocks(store, caplog):
    """A SIGKILLed run's unexpired lease is taken over at once; a live holder still blocks."""

    def started(pid: int) -> str:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
        return text[text.rfind(")") + 2:].split()[19]

    host = socket.gethostname()
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead_holder = f"{host}:{killed.pid}:{started(killed.pid)}"
    killed.kill()
    killed.wait()
    old = store.acquire_lease("demo", dead_holder, 300)
    with caplog.at_level("WARNING", logger="etl.state.liveness"):
        new = store.acquire_lease("demo", holder_identity(), 300)
    assert new.holder == holder_identity() and new.token != old.token
    assert caplog.messages == [
        f"job demo: took over the lease of '{dead_holder}', whose process on this host is dead"]
    with pytest.raises(RuntimeFailure):
        store.renew_lease(old, 300)

    # this process is alive: its lease blocks a run of the same host
    with pytest.raises(RuntimeFailure) as caught:
        store.acquire_lease("demo", f"{host}:1:1", 300)
    until = new.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert caught.value.message == (
        f"job 'demo' is already running: its lease is held by '{holder_identity()}' until {until}")
    # a dead-looking holder on another host blocks too
    store.release_lease(new)
    elsewhere = store.acquire_lease("demo", f"other-host:{killed.pid}:1", 300)
    with pytest.raises(RuntimeFailure):
        store.acquire_lease("demo", holder_identity(), 300)
    store.release_lease(elsewhere)


@pytest.fixture(params=["sqlite", "postgres", "dynamodb"])
def any_store(request, tmp_path):
    opened = open_backend(request, request.param, tmp_path)
    yield opened
    opened.close()


def test_ledger_put_get_page_and_clear(any_store):
    """The ledger contract on every backend: entries replaced and removed in one call, looked up by
    key text (long and non-ASCII texts included), paged completely in pages, and forgotten by
    `ledger_clear` (one table) and `clear` (the job), never a neighbour's."""
    store = any_store
    long_key = "code=" + "é" * 800  # beyond DynamoDB's 1,024-byte sort key: kept as a digest
    entries = {f"_id={n}": {"k": n, "r": {"dynamo.t": [[f"PATIENT#{n}", "PROFILE"]]}} for n in range(230)}
    entries[long_key] = {"k": "x", "r": {}}
    store.ledger_put("demo", "mongo.patients", entries)
    store.ledger_put("demo", "mongo.visits", {"_id=1": {"k": 1, "r": {}}})
    store.ledger_put("neighbour", "mongo.patients", {"_id=1": {"k": 1, "r": {}}})
    store.ledger_put("demo", "mongo.patients", {"_id=3": None, "_id=4": {"k": 4, "r": {"pg.p": [[4]]}}})
    assert store.ledger_get("demo", "mongo.patients", ["_id=3", "_id=4", long_key, "_id=999", "_id=4"]) == {
        "_id=4": {"k": 4, "r": {"pg.p": [[4]]}}, long_key: {"k": "x", "r": {}}}
    seen, after, pages = {}, None, 0
    while True:
        page, after = store.ledger_page("demo", "mongo.patients", after, 100)
        pages += 1
        seen.update(page)
        if after is None:
            break
    assert len(seen) == 230 and "_id=3" not in seen and seen["_id=229"]["k"] == 229
    assert pages in (3, 4)  # 230 entries in pages of 100 (a last, empty page where a backend needs one)
    store.ledger_clear("demo", "mongo.patients")
    assert store.ledger_page("demo", "mongo.patients", None, 10) == ([], None)
    assert store.ledger_get("demo", "mongo.visits", ["_id=1"]) == {"_id=1": {"k": 1, "r": {}}}
    store.clear("demo")
    assert store.ledger_get("demo", "mongo.visits", ["_id=1"]) == {}
    assert store.ledger_get("neighbour", "mongo.patients", ["_id=1"]) == {"_id=1": {"k": 1, "r": {}}}
