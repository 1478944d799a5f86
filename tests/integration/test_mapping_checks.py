"""Mappings checked against their sources: catalogue errors (exit 2), sample warnings, and runs that
fail (exit 3) when a mapped path is absent from every record a table has."""

from __future__ import annotations

import textwrap

import pytest

from tests.integration.chinook import load_chinook
from tests.integration.run_helpers import pg_scalar, run_cli, saved_report, write_job

pytestmark = pytest.mark.integration

TRACK_MAPPING = """\
version: 1
source:
  key: [track_id]
targets:
  pg: postgres
outputs:
  - target: pg
    table: mc_tracks
    key: [track_id]
    columns:
      track_id: {from: track_id, type: int}
      name: name
      composer: {from: composr}
      price: {from: unit_price, type: "decimal(10,2)"}
"""


def chinook_job(folder, dsn: str, mapping_text: str) -> tuple:
    (folder / "tracks.yaml").write_text(mapping_text)
    job = folder / "tracks_job.yaml"
    job.write_text(textwrap.dedent(f"""\
        version: 1
        name: mc_tracks_job
        sources:
          chinook:
            type: postgres
            dsn: "{dsn}"
            tables:
              track: {{mapping: tracks.yaml, partitions: 2}}
        targets:
          pg: {{type: postgres, dsn: "{dsn}", schema: public, create: if_missing}}
        state: {{type: sqlite, path: .etl/state.sqlite}}
        dead_letter: {{path: .etl/dead_letter.jsonl}}
        report: {{dir: .etl/reports}}
        """))
    return job, folder / "tracks.yaml"


@pytest.fixture
def chinook(pg_database):
    load_chinook(pg_database)
    return pg_database


COLUMNS = "track_id, name, album_id, media_type_id, genre_id, composer, milliseconds, bytes, unit_price"


@pytest.mark.parametrize("mode", [(), ("--plan",), ("--validate-only",)])
def test_a_misspelt_column_is_a_bad_file_before_anything_moves(tmp_path, chinook, mode):
    job, mapping = chinook_job(tmp_path, chinook, TRACK_MAPPING)
    result = run_cli(job, *mode)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == (
        f"error: {mapping}:13:24: outputs[0].columns.composer.from: column 'composr' is not in PostgreSQL "
        "table public.track of source 'chinook'; did you mean 'composer'?\n"
        f"  hint: columns are matched exactly as the catalogue spells them: {COLUMNS}; mark a column "
        "`optional: true` only if this source may lack it\n")
    assert result.stdout == ""
    exists = "SELECT count(*) FROM information_schema.tables WHERE table_name = 'mc_tracks'"
    assert pg_scalar(chinook, exists) == 0


def test_plan_lists_the_columns_no_output_uses(tmp_path, chinook):
    job, _ = chinook_job(tmp_path, chinook, TRACK_MAPPING.replace("composr", "composer"))
    result = run_cli(job, "--plan")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[2] == "chinook.track  (mapping tracks.yaml -> pg.mc_tracks)"
    assert lines[5] == ("  source columns no output uses (catalogue): album_id, bytes, genre_id, media_type_id, "
                        "milliseconds")
