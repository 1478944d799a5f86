"""`--check` of a PostgreSQL target: the server's version, the schema and what this login may do
in it, and each table the job writes: there (with the privileges a run needs) or created by the run."""

from __future__ import annotations

from collections.abc import Sequence

from etl.records import TableSpec
from etl.sinks.postgres import PostgresSink

NEEDED = ("SELECT", "INSERT", "UPDATE", "DELETE")
"""What a run does to a target table: upserts, child rows replaced, validation reads back."""


def probe(sink: PostgresSink, tables: Sequence[TableSpec]) -> list[tuple[str, bool]]:
    """Lines of what was found, each with whether it lets a run proceed; raises ConnectionFailed
    when the server cannot be reached."""
    schema, create = sink.config.db_schema, sink.config.create
    connection = sink._acquire()
    try:
        conn = connection.conn
        found: list[tuple[str, bool]] = []
        # SHOW and a SELECT without FROM's filters return exactly one row
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        exists, may_create = conn.execute(  # type: ignore[misc]
            "SELECT n.oid IS NOT NULL, has_schema_privilege(n.oid, 'CREATE') FROM (SELECT %s::name AS name) s"
            " LEFT JOIN pg_namespace n ON n.nspname = s.name", [schema]).fetchone()
        if not exists:
            found.append((f"PostgreSQL {version}; schema {schema}: missing", False))
        else:
            found.append((f"PostgreSQL {version}; schema {schema}: exists, "
                          + ("CREATE granted" if may_create else "no CREATE privilege"),
                          bool(may_create) or create == "never"))
        for spec in tables:
            row = conn.execute(
                "SELECT " + ", ".join(f"has_table_privilege(c.oid, '{p}')" for p in NEEDED)
                + " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname = %s", [schema, spec.table]).fetchone()
            if row is None:
                creates = create == "if_missing" and exists and may_create
                found.append((f"table {spec.table}: missing; "
                              + ("the run creates it (create: if_missing)" if creates
                                 else f"the run cannot create it (create: {create})"), bool(creates)))
                continue
            missing = [p for p, granted in zip(NEEDED, row, strict=True) if not granted]
            found.append((f"table {spec.table}: exists, "
                          + (f"missing privileges {', '.join(missing)}" if missing
                             else f"{', '.join(NEEDED)} granted"), not missing))
        conn.rollback()
        return found
    finally:
        sink._release(connection)
