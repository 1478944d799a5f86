"""The registry of restore engines: the API and the command find an engine here by name."""

from __future__ import annotations

from etl.errors import EtlError
from etl.restore.engine import RestoreEngine
from etl.restore.mongo import Mongo
from etl.restore.oracle import Oracle
from etl.restore.postgres import Postgres
from etl.restore.sqlserver import SqlServer

ENGINES: dict[str, RestoreEngine] = {
    engine.name: engine for engine in (SqlServer(), Oracle(), Postgres(), Mongo())}
"""Each engine by its name."""
_BY_NAME = ENGINES | {alias: engine for engine in ENGINES.values() for alias in engine.aliases}
NAMES = tuple(_BY_NAME)
"""Every name an engine is known by (names, then aliases)."""


def get_engine(name: str) -> RestoreEngine:
    """The engine called `name` (or one of its aliases)."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise EtlError(f"unknown backup engine {name!r}", hint=f"use one of {', '.join(ENGINES)}") from None
