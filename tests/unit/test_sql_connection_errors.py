"""The real drivers (python-oracledb thin, pyodbc + FreeTDS) against a closed port give a clear error.

Nothing listens on the port, so these need no server; the secret must not appear in the message.
"""

from __future__ import annotations

import socket

import pytest

from etl.errors import ConnectionFailed
from etl.sources import mssql, oracle
from etl.sources.base import BatchLimits

SECRET = "Pa55;w}rd-do-not-print"


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago and has no listener."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_oracle_thin_closed_port(closed_port):
    config = oracle.Config(
        type="oracle",
        dsn=f"127.0.0.1:{closed_port}/FREEPDB1",
        user="chinook",
        password=SECRET,
        connect_timeout=5,
        tables={},
    )
    with pytest.raises(ConnectionFailed) as failure:
        oracle.open_source("clinic", config, BatchLimits()).connect()
    message = str(failure.value)
    assert message.startswith(
        f"cannot connect to Oracle source 'clinic' at 127.0.0.1:{closed_port}/FREEPDB1 as chinook:"
        " DPY-6005: cannot connect to database"
    )
    assert "Connection refused" in message
    assert message.endswith(
        "hint: check that the server is running and reachable, and the user name and password"
    )
    assert SECRET not in message and failure.value.exit_code == 3


def test_sql_server_freetds_closed_port(closed_port):
    config = mssql.Config(
        type="mssql",
        driver="FreeTDS",
        server="127.0.0.1",
        port=closed_port,
        database="Chinook",
        user="sa",
        password=SECRET,
        login_timeout=5,
        tables={},
    )
    with pytest.raises(ConnectionFailed) as failure:
        mssql.open_source("clinic", config, BatchLimits()).connect()
    assert str(failure.value) == (
        f"cannot connect to SQL Server source 'clinic' at 127.0.0.1:{closed_port}: "
        "[08S01] [FreeTDS][SQL Server]"
        "Unable to connect: Adaptive Server is unavailable or does not exist (20009) (SQLDriverConnect)\n"
        "  hint: check that the server is running and reachable, and the user name and password"
    )


def test_sql_server_connection_string_password_never_shown(closed_port):
    dsn = (
        f"DRIVER={{FreeTDS}};SERVER=127.0.0.1;PORT={closed_port};UID=sa;PWD={{{SECRET.replace('}', '}}')}}};"
    )
    config = mssql.Config(type="mssql", dsn=dsn, login_timeout=5, tables={})
    with pytest.raises(ConnectionFailed) as failure:
        mssql.open_source("clinic", config, BatchLimits()).connect()
    message = str(failure.value)
    assert message.startswith("cannot connect to SQL Server source 'clinic' at 127.0.0.1: [08S01]")
    assert SECRET not in message and "PWD" not in message
    assert SECRET not in repr(config)
