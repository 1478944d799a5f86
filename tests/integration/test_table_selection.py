"""Tables picked by include/exclude patterns in the job file, each mapped with one mapping template
(`$(schema)`, `$(table)`), run for real on Chinook in PostgreSQL into DynamoDB Local."""

from __future__ import annotations

import json

import pytest

from tests.conftest import DYNAMODB_ENDPOINT, MONGO_URI
from tests.integration.chinook import CHINOOK_COUNTS, load_chinook
from tests.integration.run_helpers import dynamo_count, pg_scalar, run_cli, saved_report
from tests.jobfiles import write_job_file

pytestmark = pytest.mark.integration

TEMPLATE = """\
# one mapping for every selected table: its key column is <table>_id in Chinook
version: 1
targets:
  out: dynamodb
outputs:
  - target: out
    table: {prefix}_chinook
    key: [pk]
    columns:
      pk: {{template: "$(schema).$(table)#{{$(table)_id}}"}}
      kind: {{const: $(table)}}
      doc: {{rest: true}}
"""


def job_file(folder, name: str, source: dict, target: dict) -> object:
    """A job with one source `src` and one target `out` (sections given as dicts: flow YAML)."""
    sections = {"version": 1, "name": name, "sources": {"src": source}, "targets": {"out": target},
                "state": {"type": "sqlite", "path": ".etl/state.sqlite"}, "report": {"dir": ".etl/reports"},
                "dead_letter": {"path": ".etl/dead_letter.jsonl"},
                "validation": {"after_run": True, "consistent_reads": True}}
    return write_job_file(folder, json.dumps(sections, indent=1))  # JSON is YAML


def write_job(folder, dsn: str, prefix: str, include: list[str], exclude: list[str]) -> object:
    (folder / "any_table.yaml").write_text(TEMPLATE.format(prefix=prefix))
    selection = {"include": include, "exclude": exclude, "mapping": "any_table.yaml"}
    return job_file(folder, f"select_{prefix}", {"type": "postgres", "dsn": dsn, "select": [selection]},
                    {"type": "dynamodb", "endpoint_url": DYNAMODB_ENDPOINT, "region": "us-east-1",
                     "create": "if_missing"})


def test_patterns_pick_tables_and_one_template_maps_each(
    pg_database, dynamodb_client, dynamodb_table_prefix, tmp_path
):
    load_chinook(pg_database)
    prefix = dynamodb_table_prefix
    job = write_job(
        tmp_path, pg_database, prefix, ["public.a*", "public.genre", "public.media_?ype"], ["public.album"]
    )

    result = run_cli(job)

    assert result.returncode == 0, result.stdout + result.stderr
    table = f"{prefix}_chinook"
    assert dynamo_count(dynamodb_client, table) == (
        CHINOOK_COUNTS["artist"] + CHINOOK_COUNTS["genre"] + CHINOOK_COUNTS["media_type"]
    )
    item = dynamodb_client.get_item(
        TableName=table, Key={"pk": {"S": "public.artist#1"}}, ConsistentRead=True
    )
    assert item["Item"] == {
        "pk": {"S": "public.artist#1"},
        "kind": {"S": "artist"},
        "doc": {"M": {"name": {"S": "AC/DC"}}},
    }
    again = run_cli(job)
    assert (again.returncode, saved_report(again.stdout)["status"]) == (0, "nothing to do")
    planned = run_cli(job, "--plan")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert [line.split("  (")[0] for line in planned.stdout.splitlines() if line.startswith("src.")] == [
        "src.public.artist",
        "src.public.genre",
        "src.public.media_type",
    ]


@pytest.mark.parametrize(
    ("include", "exclude", "where", "pattern"),
    [
        (["public.artists"], [], "include", "public.artists"),
        (["public.a*"], ["public.albums"], "exclude", "public.albums"),
    ],
)
def test_a_pattern_that_matches_no_table_is_an_error(pg_database, tmp_path, include, exclude, where, pattern):
    load_chinook(pg_database)
    job = write_job(tmp_path, pg_database, "unused", include, exclude)

    result = run_cli(job)

    assert result.returncode == 2, result.stdout + result.stderr
    tables = ", ".join(f"public.{name}" for name in sorted(CHINOOK_COUNTS))
    assert result.stderr == (
        f"error: {job}: sources.src.select[0].{where}: pattern {pattern!r} matches no table of source "
        f"'src'\n  hint: patterns match `schema.table` exactly as the source spells them; "
        f"tables: {tables}\n"
    )


COLLECTION_TEMPLATE = """\
version: 1
source: {key: [_id]}
targets: {out: postgres}
outputs:
  - {target: out, table: sel_$(table), key: [id], columns: {id: {from: _id, type: int}, name: name}}
"""


def test_mongodb_collections_are_picked_by_name_patterns(mongo_db, pg_database, tmp_path):
    for collection in ("patients_2024", "patients_2025", "patients_tmp", "audit"):
        mongo_db[collection].insert_many([{"_id": n, "name": f"{collection}-{n}"} for n in range(3)])
    (tmp_path / "collection.yaml").write_text(COLLECTION_TEMPLATE)
    selection = {"include": ["patients_*"], "exclude": ["*_tmp"], "mapping": "collection.yaml"}
    job = job_file(tmp_path, "select_mongo",
                   {"type": "mongo", "uri": MONGO_URI, "database": mongo_db.name, "select": [selection]},
                   {"type": "postgres", "dsn": pg_database, "schema": "public", "create": "if_missing"})

    result = run_cli(job)

    assert result.returncode == 0, result.stdout + result.stderr
    assert [(t["table"], t["extracted"], t["loaded"]) for t in saved_report(result.stdout)["tables"]] == [
        ("src.patients_2024", 3, 3), ("src.patients_2025", 3, 3)]
    assert pg_scalar(pg_database, "SELECT string_agg(name, ',' ORDER BY name) FROM sel_patients_2025") == (
        "patients_2025-0,patients_2025-1,patients_2025-2")
    exists = ("SELECT count(*) FROM information_schema.tables"
              " WHERE table_name IN ('sel_patients_tmp', 'sel_audit')")
    assert pg_scalar(pg_database, exists) == 0
