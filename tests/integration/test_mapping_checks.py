"""Mappings checked against their sources: catalogue errors (exit 2), sample warnings, and runs that
fail (exit 3) when a mapped path is absent from every record a table has."""

from __future__ import annotations

import textwrap

import pymongo.monitoring
import pytest

from etl.report.run_report import FAILED, UNPROVEN
from tests.integration.chinook import load_chinook
from tests.integration.mongo_commands import ReadCommands
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
    # what checking the mapping warned about comes first, before the table's partitions and previews
    assert lines[1] == ("warning: chinook.track: source columns no output reads and `source.ignore` does not "
                        "list: album_id, bytes, genre_id, media_type_id, milliseconds; their values reach no "
                        "target")
    assert lines[3] == "chinook.track  (mapping tracks.yaml -> pg.mc_tracks)"
    assert lines[6] == ("  source columns no output uses (catalogue): "
                        "album_id, bytes, genre_id, media_type_id, milliseconds")


PEOPLE_MAPPING = """\
version: 1
source:
  key: [_id]
targets:
  pg: postgres
outputs:
  - target: pg
    table: mc_people
    key: [person_id]
    columns:
      person_id: {from: _id, type: int}
      name: name
      nickname: {from: nick_name}
"""


def people_job(folder, mongo_db, pg_database, documents, *, optional=False, partitions=1, batch_records=2,
               check_sample=None, after_run=True, executor="{type: local}"):
    mongo_db.people.insert_many(documents)
    mapping = folder / "people.yaml"
    text = PEOPLE_MAPPING.replace("{from: nick_name}", "{from: nick_name, optional: true}") if optional \
        else PEOPLE_MAPPING
    mapping.write_text(text)
    job = write_job(folder, name="mc_people_job", database=mongo_db.name, collection="people",
                    mapping=mapping, pg_dsn=pg_database, dynamo=False, partitions=partitions,
                    batch_records=batch_records, after_run=after_run, executor=executor)
    if check_sample is not None:
        table = f"partitions: {partitions}"
        job.write_text(job.read_text().replace(table, f"{table}, check_sample: {check_sample}"))
    return job, mapping


def people(n: int, nick: set[int] = frozenset()) -> list[dict]:
    """Documents 1..n; those in `nick` have `nick_name`, every one has `nickname` (the near miss)."""
    return [{"_id": i, "name": f"p{i}", "nickname": f"n{i}", **({"nick_name": f"k{i}"} if i in nick else {})}
            for i in range(1, n + 1)]


def nicknames(dsn: str) -> list:
    import psycopg

    with psycopg.connect(dsn) as connection:
        return [row[0] for row in connection.execute("SELECT nickname FROM mc_people ORDER BY person_id")]


def test_a_path_no_document_has_fails_the_run_with_the_place_the_path_and_the_table(
        tmp_path, mongo_db, pg_database):
    job, mapping = people_job(tmp_path, mongo_db, pg_database, people(6))
    result = run_cli(job)
    assert result.returncode == 3, result.stdout + result.stderr
    report = saved_report(result.stdout)
    assert report["status"] == "failed"
    assert report["message"] == (
        "mapped paths absent from every record of mongo.people; the rows written hold NULL or the default "
        f"there:\n{mapping}:13:24: outputs[0].columns.nickname.from: path `nick_name` is absent from all 6 "
        "records of mongo.people")
    assert report["hint"] == (
        f"fix the paths in the mapping and run `python -m etl.run {job} --full-refresh`, or mark a column "
        "`optional: true` if the source may lack it")
    warning = (f"sample: {mapping}:13:24: mc_people.nickname: path `nick_name` is absent from all 6 sampled "
               "records; did you mean `nickname`?")
    assert report["tables"][0]["warnings"] == {warning: 1}
    assert report["validation"] is None  # not validated: the run did not succeed
    again = run_cli(job)  # nothing left to move, but the verdict is not proven: judged again
    assert (again.returncode, saved_report(again.stdout)["message"]) == (3, report["message"])


def test_plan_prints_the_sample_warning_and_the_fields_no_output_uses(tmp_path, mongo_db, pg_database):
    job, mapping = people_job(tmp_path, mongo_db, pg_database, people(6))
    result = run_cli(job, "--plan")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    # the warning comes first, before any table's partitions and previews
    assert lines[1:6] == [
        f"warning: mongo.people: {mapping}:13:24: mc_people.nickname: path `nick_name` is absent from all 6 "
        "sampled records; did you mean `nickname`?",
        "",
        "mongo.people  (mapping people.yaml -> pg.mc_people)",
        "  partition 0/1: from (unbounded) to (unbounded)",
        "  source fields no output uses (sample of 6 records): nickname",
    ]


def test_an_optional_path_no_document_has_passes(tmp_path, mongo_db, pg_database):
    job, _ = people_job(tmp_path, mongo_db, pg_database, people(6), optional=True)
    result = run_cli(job)
    assert result.returncode == 0, result.stdout + result.stderr
    report = saved_report(result.stdout)
    assert (report["status"], report["tables"][0]["warnings"]) == ("succeeded", {})
    assert nicknames(pg_database) == [None] * 6


def test_a_path_only_some_documents_have_passes(tmp_path, mongo_db, pg_database):
    job, _ = people_job(tmp_path, mongo_db, pg_database, people(6, nick={5}))
    result = run_cli(job)
    assert result.returncode == 0, result.stdout + result.stderr
    assert saved_report(result.stdout)["tables"][0]["warnings"] == {}
    assert nicknames(pg_database) == [None, None, None, None, "k5", None]


def after_the_first_batch() -> list[dict]:
    """The conditions of a read after `_id` 5: numbers above it, then every later type class."""
    from etl.sources.mongo_ranges import range_filters

    return range_filters(5, False, None, has_start=True, has_end=False)


def run_watching_finds(job, database: str):
    """The run's report (in this process) and the `find` commands it sent to `database`."""
    from etl.engine.runner import run_job
    from etl.job import load_job

    commands = ReadCommands(database)
    pymongo.monitoring.register(commands)  # applies to the clients the run creates
    return run_job(load_job(job)), commands


def test_a_run_checks_the_mapping_against_its_first_batch_without_a_sample_query(
        tmp_path, mongo_db, pg_database):
    """The first batch (5 records) holds the 4 the check asks for, the records `sample` would give:
    the only `find` is the read's, and the mapping fits."""
    documents = [{"_id": i, "name": f"p{i}", "nick_name": f"k{i}"} for i in range(1, 7)]
    job, _ = people_job(tmp_path, mongo_db, pg_database, documents, batch_records=5, check_sample=4,
                        after_run=False)
    report, commands = run_watching_finds(job, mongo_db.name)
    assert (report.status, report.tables[0].loaded, report.tables[0].warnings) == (UNPROVEN, 6, {})
    assert commands.finds == [({}, None)]
    assert nicknames(pg_database) == ["k1", "k2", "k3", "k4", "k5", "k6"]


def test_a_first_batch_the_mapping_does_not_fit_is_checked_again_against_the_sample(
        tmp_path, mongo_db, pg_database, caplog):
    """A read's records hold only the fields the mapping reads, so the `did you mean` comes from
    the sample, read once the first batch shows a path missing; the warning is the planning check's,
    logged before the batch is written (the fault stops the run after that batch is read)."""
    job, mapping = people_job(tmp_path, mongo_db, pg_database, people(6), batch_records=5, check_sample=4,
                              after_run=False)
    warning = (f"{mapping}:13:24: mc_people.nickname: path `nick_name` is absent from all 4 sampled records; "
               "did you mean `nickname`?")
    crashed = run_cli(job, fault="crash:read:1")
    assert crashed.returncode == 3, crashed.stdout + crashed.stderr
    assert f"mongo.people: {warning}" in crashed.stderr
    assert pg_scalar(pg_database, "SELECT count(*) FROM mc_people") == 0
    report, commands = run_watching_finds(job, mongo_db.name)
    assert (report.status, report.tables[0].warnings) == (FAILED, {f"sample: {warning}": 1})
    assert report.message.endswith("path `nick_name` is absent from all 6 records of mongo.people")
    # the read (then read again with the projection, as `nickname` is read by no output) and the sample
    projected = {"name": 1, "nick_name": 1, "_id": 1}
    finds = [({}, None), ({}, None), *((condition, projected) for condition in after_the_first_batch())]
    assert sorted(commands.finds, key=str) == sorted(finds, key=str)


def test_a_worker_process_sends_back_what_the_check_of_its_first_batch_found(
        tmp_path, mongo_db, pg_database):
    """On worker processes the check runs where the partition is read; the report still holds it."""
    job, mapping = people_job(tmp_path, mongo_db, pg_database, people(6), batch_records=5, check_sample=4,
                              executor="{type: local, processes: true}")
    result = run_cli(job)
    assert result.returncode == 3, result.stdout + result.stderr
    report = saved_report(result.stdout)
    assert report["tables"][0]["warnings"] == {
        f"sample: {mapping}:13:24: mc_people.nickname: path `nick_name` is absent from all 4 sampled "
        "records; did you mean `nickname`?": 1}
    assert report["tables"][0]["loaded"] == 6


def test_a_resumed_first_partition_is_checked_against_a_sample_before_it_reads(
        tmp_path, mongo_db, pg_database):
    """Its first batch is no longer the table's first records: the sample is read before the
    partition continues after its checkpoint."""
    documents = [{"_id": i, "name": f"p{i}", "nick_name": f"k{i}"} for i in range(1, 7)]
    job, _ = people_job(tmp_path, mongo_db, pg_database, documents, batch_records=5, check_sample=4,
                        after_run=False)
    crashed = run_cli(job, fault="crash:batch:1")
    assert crashed.returncode == 3, crashed.stdout + crashed.stderr
    assert pg_scalar(pg_database, "SELECT count(*) FROM mc_people") == 5
    report, commands = run_watching_finds(job, mongo_db.name)
    assert (report.status, report.tables[0].loaded, report.tables[0].warnings) == (UNPROVEN, 6, {})
    assert commands.finds == [({}, None), *((condition, None) for condition in after_the_first_batch())]
    assert nicknames(pg_database) == ["k1", "k2", "k3", "k4", "k5", "k6"]


NICK = "outputs[0].columns.nickname.from=nick_name"


def present_by_partition(folder) -> dict[str, list[str]]:
    from etl.state.sqlite import Config, open_store

    store = open_store(Config(), base_dir=folder)
    try:
        return {pid: c.extra["present"] for pid, c in sorted(store.checkpoints("mc_people_job").items())}
    finally:
        store.close()


def test_paths_an_earlier_run_found_count_when_the_table_is_judged(tmp_path, mongo_db, pg_database):
    """Shard 0 runs the first partition, where the only document with `nick_name` (_id 1) is, and
    its checkpoint keeps that finding; shard 1 then runs the second partition, none of whose
    documents has the path: the table passes only because the first run's finding was kept."""
    job, _ = people_job(tmp_path, mongo_db, pg_database, people(6, nick={1}), partitions=2)
    first = run_cli(job, "--shard", "0/2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert NICK in present_by_partition(tmp_path)["mongo.people#0/2"]
    second = run_cli(job, "--shard", "1/2")
    assert second.returncode == 0, second.stdout + second.stderr
    present = present_by_partition(tmp_path)
    assert NICK in present["mongo.people#0/2"] and NICK not in present["mongo.people#1/2"]
    assert present["mongo.people#1/2"] == [
        "outputs[0].columns.name=name", "outputs[0].columns.person_id.from=_id", "source.key[0]=_id"]
    assert nicknames(pg_database) == ["k1", None, None, None, None, None]


def test_a_table_is_judged_once_every_partition_is_done_over_all_of_them(tmp_path, mongo_db, pg_database):
    job, mapping = people_job(tmp_path, mongo_db, pg_database, people(6), partitions=2)
    first = run_cli(job, "--shard", "0/2")
    assert first.returncode == 0, first.stdout + first.stderr  # half the table: nothing to judge yet
    second = run_cli(job, "--shard", "1/2")
    assert second.returncode == 3, second.stdout + second.stderr
    assert saved_report(second.stdout)["message"].endswith(
        f"\n{mapping}:13:24: outputs[0].columns.nickname.from: path `nick_name` is absent from all 6 records "
        "of mongo.people")


def upper_case_catalogue(source):
    """The Oracle source of test_dialect_sql with the catalogue Chinook_Oracle.sql makes: its
    unquoted names stored in upper case (the harness otherwise lists PostgreSQL's lower-case ones)."""
    from etl.sources.sql import SqlColumn

    base = type(source)

    class Upper(base):
        def columns(self, connection, schema, table):
            return [SqlColumn(c.name.upper(), c.type, c.precision, c.scale, c.length, c.nullable)
                    for c in base.columns(self, connection, schema, table)]

        def primary_key(self, connection, schema, table):
            return [name.upper() for name in base.primary_key(self, connection, schema, table)]

    source.__class__ = Upper
    return source


@pytest.mark.parametrize(("dialect", "written", "upper", "message"), [
    ("oracle", "composr", True, "column 'composr' is not in Oracle table public.track of source "
     "'chinook_oracle'; did you mean 'COMPOSER'?"),
    ("oracle", "composer", True, "column 'composer' is not in Oracle table public.track of source "
     "'chinook_oracle'; did you mean 'COMPOSER'?"),
    ("oracle", "COMPOSER", False, "column 'COMPOSER' is not in Oracle table public.track of source "
     "'chinook_oracle'; did you mean 'composer'?"),
    ("tsql", "COMPOSER", False, "column 'COMPOSER' is not in SQL Server table public.track of source "
     "'chinook_mssql'; did you mean 'composer'?"),
])
def test_oracle_and_sql_server_catalogues_follow_their_identifier_rules(chinook, dialect, written, upper,
                                                                        message):
    """The Oracle and SQL Server sources of test_dialect_sql (their SQL run transpiled on Chinook in
    PostgreSQL). Records carry the catalogue's spelling, so only an exact name passes, whatever the
    engine would take the written name for in SQL (Oracle: `composer` for `COMPOSER`; SQL Server:
    any case); the suggestion names the column as the catalogue spells it."""
    from etl.engine.mapcheck import against_catalogue
    from etl.errors import MappingError
    from etl.mapping import compile_mapping, parse_mapping
    from tests.integration.test_dialect_sql import SOURCES

    source = SOURCES[dialect](chinook, [], {"track": {"mapping": "tracks.yaml"}})
    if upper:
        upper_case_catalogue(source)
    text = TRACK_MAPPING.replace("composr", written)
    if upper:
        text = text.replace("from: track_id", "from: TRACK_ID").replace("name: name", "name: NAME")
        text = text.replace("source:\n  key: [track_id]", "source:\n  key: [TRACK_ID]")
        text = text.replace("from: unit_price", "from: UNIT_PRICE")
    mapping = compile_mapping(parse_mapping(text, "tracks.yaml"))
    with pytest.raises(MappingError) as caught:
        against_catalogue(mapping, source.catalogue("track"), f"{source.name}.track")
    assert caught.value.message == f"tracks.yaml:13:24: outputs[0].columns.composer.from: {message}"
    fixed = compile_mapping(parse_mapping(text.replace(written, "COMPOSER" if upper else "composer"),
                                          "tracks.yaml"))
    fit = against_catalogue(fixed, source.catalogue("track"), f"{source.name}.track")
    unused = ("album_id", "bytes", "genre_id", "media_type_id", "milliseconds")
    assert fit.unused == tuple(name.upper() for name in unused) if upper else unused
