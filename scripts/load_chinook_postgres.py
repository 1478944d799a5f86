"""Load the Chinook sample database into an existing PostgreSQL database (tests and benchmarks).

`python scripts/load_chinook_postgres.py "host=127.0.0.1 user=postgres dbname=mydb"`

The upstream script drops and creates a database named `chinook` and switches to it with psql's
`\\c`; those statements are skipped so the tables land in the database the DSN names.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import psycopg

# The shared test data lives beside the project (../shared/data) unless ETL_SHARED_DATA says otherwise.
SHARED_DATA = Path(os.environ.get("ETL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CHINOOK_DIR = SHARED_DATA / "chinook"
CHINOOK_SQL = CHINOOK_DIR / "Chinook_PostgreSql.sql"
SKIPPED_PREFIXES = ("DROP DATABASE", "CREATE DATABASE", "\\C")


def chinook_script(path: Path = CHINOOK_SQL) -> str:
    """The script without the statements that would leave the target database."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if not line.lstrip().upper().startswith(SKIPPED_PREFIXES))


def load_chinook(dsn: str, path: Path = CHINOOK_SQL) -> None:
    """Create and fill the 11 Chinook tables in the database `dsn` names, in one transaction."""
    with psycopg.connect(dsn) as connection:
        connection.execute(chinook_script(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dsn", help="libpq connection string of an existing, empty database")
    parser.add_argument("--sql", type=Path, default=CHINOOK_SQL, help="path of Chinook_PostgreSql.sql")
    args = parser.parse_args()
    load_chinook(args.dsn, args.sql)


if __name__ == "__main__":
    main()
