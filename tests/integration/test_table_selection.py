"""Tables picked by include/exclude patterns in the job file, each mapped with one mapping template
(`$(schema)`, `$(table)`), run for real on Chinook in PostgreSQL into DynamoDB Local."""

from __future__ import annotations

import textwrap

import pytest

from tests.conftest import DYNAMODB_ENDPOINT
from tests.integration.chinook import CHINOOK_COUNTS, load_chinook
from tests.integration.run_helpers import dynamo_count, run_cli, saved_report

pytestmark = pytest.mark.integration

TEMPLATE = """\
# one mapping for every selected table: its key column is <table>_id in Chinook
version: 1
targets:
  dynamo: dynamodb
outputs:
  - target: dynamo
    table: {prefix}_chinook
    key: [pk]
    columns:
      pk: {{template: "$(schema).$(table)#{{$(table)_id}}"}}
      kind: {{const: $(table)}}
      doc: {{rest: true}}
"""


def write_job(folder, dsn: str, prefix: str, include: list[str], exclude: list[str]) -> object:
    (folder / "any_table.yaml").write_text(TEMPLATE.format(prefix=prefix))
    job = folder / "job.yaml"
    job.write_text(
        textwrap.dedent(f"""\
        version: 1
        name: select_{prefix}
        sources:
          chinook:
            type: postgres
            dsn: "{dsn}"
            select:
              - {{include: {include}, exclude: {exclude}, mapping: any_table.yaml}}
        targets:
          dynamo: {{type: dynamodb, endpoint_url: "{DYNAMODB_ENDPOINT}", region: us-east-1,
                   create: if_missing}}
        state: {{type: sqlite, path: .etl/state.sqlite}}
        dead_letter: {{path: .etl/dead_letter.jsonl}}
        validation: {{after_run: true, consistent_reads: true}}
        report: {{dir: .etl/reports}}
        """)
    )
    return job


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
    assert [line.split("  (")[0] for line in planned.stdout.splitlines() if line.startswith("chinook.")] == [
        "chinook.public.artist",
        "chinook.public.genre",
        "chinook.public.media_type",
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
        f"error: {job}: sources.chinook.select[0].{where}: pattern {pattern!r} matches no table of source "
        f"'chinook'\n  hint: patterns match `schema.table` exactly as the catalogue spells it; "
        f"tables: {tables}\n"
    )
