"""The public restore API: load a history per engine, plan with targets in the engine's notation."""

from pathlib import Path

import pytest
from bson.timestamp import Timestamp

from etl.errors import EtlError
from etl.restore import WrongOrder, load_chain, plan_restore, to_position

FIXTURES = Path(__file__).parents[1] / "fixtures" / "restore"


def test_sqlserver_history_file_and_rows():
    chain = load_chain("sqlserver", FIXTURES / "sqlserver" / "chain.json")
    assert plan_restore(chain, "37000000038000001").names == ["full-sun", "diff-tue", "log-0400"]
    rows = [{"name": "f", "type": "D", "first_lsn": 10, "last_lsn": 20, "checkpoint_lsn": 15}]
    assert plan_restore(load_chain("sqlserver", rows)).names == ["f"]


def test_oracle_views_folder_with_a_sequence_to_check():
    chain = load_chain("oracle", FIXTURES / "oracle" / "cumulative")
    plan = plan_restore(chain, 7100, sequence=["LVL0_SUN", "CUM_TUE", "archivelog thread 1 sequence 52"])
    assert plan.reaches == 7500
    with pytest.raises(WrongOrder):
        plan_restore(chain, sequence=["CUM_TUE", "LVL0_SUN"])


def test_targets_in_engine_notation():
    assert to_position("postgresql", "0/3000028") == 0x3000028
    assert to_position("mongodb", Timestamp(1_764_000_000, 7)) == (1_764_000_000 << 32) | 7
    assert to_position("sqlserver", "37000000038000001") == 37000000038000001
    with pytest.raises(EtlError, match="restore target 'yesterday' is not a position"):
        to_position("oracle", "yesterday")


def test_unknown_engine():
    with pytest.raises(EtlError, match="unknown backup engine 'db2'"):
        load_chain("db2", FIXTURES)


def test_engine_names_and_the_old_names_as_aliases():
    from etl.restore.engines import ENGINES, get_engine

    assert list(ENGINES) == ["mssql", "oracle", "postgres", "mongo"]
    for old, new in [("sqlserver", "mssql"), ("postgresql", "postgres"), ("mongodb", "mongo")]:
        assert get_engine(old) is get_engine(new)
    assert load_chain("sqlserver", FIXTURES / "sqlserver" / "chain.json").engine == "mssql"
    assert plan_restore(load_chain("mssql", FIXTURES / "sqlserver" / "chain.json")).names == [
        "full-sun", "diff-tue", "log-0400", "log-0500"]
