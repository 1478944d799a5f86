"""`--check` asks a PostgreSQL source whether it may read each table: a `query:` table has no schema
or catalog name of its own to ask about."""

from etl.sources.postgres import PostgresSource
from etl.sources.sql import TableMeta


def test_a_query_table_is_readable_without_a_privilege_lookup() -> None:
    source = PostgresSource.__new__(PostgresSource)  # no connection: the answer needs none
    source.describe = lambda table: TableMeta(table, None, table, (), ("id",), "SELECT 1 AS id")

    assert source.can_read("recent_orders") is True
