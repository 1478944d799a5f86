"""Job files: a valid file gives the documented values; every kind of mistake gives its exact message."""

from __future__ import annotations

import hashlib
import logging
import pickle
import subprocess
import sys
import textwrap
import typing
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import BaseModel

from etl import sinks, sources, state
from etl.errors import JobFileError
from etl.job import Job, JobFile, JobFileProblems, MaxRejects, _parse_bytes, load_job
from etl.settings_types import refuse_boolean
from etl.sources.base import MAX_PARTITIONS, BatchLimits
from etl.yaml_limits import MAX_BYTES

GOOD = """\
version: 1
name: chinook-demo
sources:
  mongo:
    type: mongo
    uri: ${env:ETL_MONGO_URI}
    database: chinook
    tables:
      customers: {mapping: mappings/customers.yaml, partitions: 2}
targets:
  dynamo: {type: dynamodb, endpoint_url: "http://127.0.0.1:8001", region: us-east-1, create: if_missing}
  pg: {type: postgres, dsn: "${env:ETL_PG_DSN}", schema: public, create: if_missing}
"""
ENV = {"ETL_MONGO_URI": "mongodb://127.0.0.1:27017/?directConnection=true", "ETL_PG_DSN": "host=127.0.0.1"}
KNOWN_SOURCES = ", ".join(sorted(sources.SOURCE_TYPES))


def write(folder: Path, text: str, name: str = "job.yaml") -> Path:
    (folder / "mappings").mkdir(exist_ok=True)
    (folder / "mappings" / "customers.yaml").write_text("{}\n")
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(folder: Path, text: str, environ: dict | None = None, secrets: dict | None = None) -> str:
    path = write(folder, text)
    with pytest.raises(JobFileError) as caught:
        load_job(path, environ=ENV if environ is None else environ, secrets=secrets or {})
    return str(caught.value).replace(str(path), "job.yaml")


def test_a_valid_job_has_its_values_and_the_documented_defaults(tmp_path):
    path = write(tmp_path, GOOD)
    job = load_job(path, environ=ENV, secrets={})
    assert isinstance(job, Job)
    assert job.name == "chinook-demo"
    assert job.path == path.absolute()
    mongo = job.sources["mongo"]
    assert type(mongo).__module__ == "etl.sources.mongo"
    assert mongo.uri == ENV["ETL_MONGO_URI"]
    assert mongo.tables["customers"].mapping == "mappings/customers.yaml"
    assert mongo.tables["customers"].partitions == 2
    assert type(job.targets["dynamo"]).__module__ == "etl.sinks.dynamodb"
    assert job.targets["pg"].dsn == "host=127.0.0.1"
    assert job.batch.limits() == BatchLimits(records=5000, bytes=16 * 1024 * 1024)
    assert job.parallelism == 2
    assert (job.executor.type, job.executor.scheduler) == ("local", None)
    assert (job.state.type, job.state.path) == ("sqlite", ".etl/state.sqlite")
    assert job.dead_letter.path == ".etl/dead_letter.jsonl"
    assert job.report.dir == ".etl/reports"
    assert str(job.max_rejects) == "0"
    assert job.max_rejects.exceeded(1, 1000) is True
    assert job.max_rejects.exceeded(0, 1000) is False
    v = job.validation
    assert (v.after_run, v.buckets, v.segments, v.consistent_reads, v.max_differences) == (
        True,
        256,
        4,
        False,
        100,
    )
    assert v.tolerances.active() == {}
    assert job.resolve_path("mappings/customers.yaml") == tmp_path.absolute() / "mappings/customers.yaml"
    assert job.resolve_path(job.state.path) == tmp_path.absolute() / ".etl/state.sqlite"
    assert job.file_hash() == hashlib.sha256(path.read_bytes()).hexdigest()
    assert job.warnings == ()
    assert job.interpolate("${env:ETL_PG_DSN} x") == "host=127.0.0.1 x"


def test_every_section_can_be_set(tmp_path):
    text = GOOD + textwrap.dedent("""\
        batch: {records: 1000, bytes: 512KB}
        parallelism: 4
        executor: {type: dask, scheduler: "tcp://scheduler:8786"}
        state: {type: sqlite, path: run/state.db}
        dead_letter: {path: out/rejects.jsonl}
        max_rejects: "1.5%"
        validation: {after_run: false, buckets: 64, segments: 2, consistent_reads: true, max_differences: 5,
                     tolerances: {timestamp_precision: 3}}
        report: {dir: out/reports}
        """)
    job = load_job(write(tmp_path, text), environ=ENV, secrets={})
    assert job.batch.limits() == BatchLimits(records=1000, bytes=512 * 1024)
    assert job.parallelism == 4
    assert job.executor.scheduler == "tcp://scheduler:8786"
    assert job.state.path == "run/state.db"
    assert job.dead_letter.path == "out/rejects.jsonl"
    assert job.max_rejects.percent == Decimal("1.5")
    assert job.max_rejects.exceeded(15, 1000) is False
    assert job.max_rejects.exceeded(16, 1000) is True
    assert job.validation.tolerances.timestamp_precision == 3
    assert job.validation.buckets == 64
    assert job.report.dir == "out/reports"


@pytest.mark.parametrize(
    ("text", "value"),
    [("8MB", 8 * 1024**2), ("512KB", 524288), ("1GiB", 1024**3), (4096, 4096), ("2048", 2048)],
)
def test_batch_bytes_accepts_units(tmp_path, text, value):
    job = load_job(write(tmp_path, GOOD + f"batch: {{bytes: {text}}}\n"), environ=ENV, secrets={})
    assert job.batch.bytes == value


def test_yaml_merge_keys_x_anchors_and_env_defaults_work(tmp_path):
    text = GOOD.replace("targets:\n", "x-pg: &pg_base {type: postgres, create: if_missing}\ntargets:\n")
    text = text.replace(
        '  pg: {type: postgres, dsn: "${env:ETL_PG_DSN}", schema: public, create: if_missing}',
        '  pg: {<<: *pg_base, dsn: "${env:NOT_SET:-host=db}"}',
    )
    job = load_job(write(tmp_path, text), environ=ENV, secrets={})
    assert (job.targets["pg"].dsn, job.targets["pg"].create) == ("host=db", "if_missing")


def test_max_rejects_semantics():
    assert MaxRejects.model_validate(100).exceeded(100, 10) is False
    assert MaxRejects.model_validate(100).exceeded(101, 10) is True
    assert MaxRejects.model_validate("1%").exceeded(1, 100) is False
    assert MaxRejects.model_validate("1%").exceeded(2, 100) is True
    assert MaxRejects.model_validate("0%").exceeded(1, 10**9) is True
    assert MaxRejects.model_validate("100%").exceeded(5, 5) is False
    assert str(MaxRejects.model_validate("2.5%")) == "2.5%"


# --------------------------------------------------------------------------- error messages


def test_syntax_error_names_line_and_column(tmp_path):
    text = GOOD.replace("    database: chinook", "    database: [chinook")
    assert problems(tmp_path, text) == (
        "job.yaml:8:11: invalid YAML: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence started at line 7)"
    )


def test_unknown_keys_suggest_the_nearest_valid_key(tmp_path):
    text = GOOD.replace("partitions: 2", "partitons: 2").replace("region: us-east-1", "regoin: us-east-1")
    text += "paralelism: 3\nbatch: {record: 5}\n"
    assert problems(tmp_path, text) == (
        "job.yaml has 4 problems:\n"
        "job.yaml:9:53: sources.mongo.tables.customers.partitons: unknown key 'partitons'; "
        "did you mean 'partitions'?\n"
        "job.yaml:11:67: targets.dynamo.regoin: unknown key 'regoin'; did you mean 'region'?\n"
        "job.yaml:13:1: paralelism: unknown key 'paralelism'; did you mean 'parallelism'?\n"
        "job.yaml:14:9: batch.record: unknown key 'record'; did you mean 'records'?"
    )


def test_wrong_types_say_what_was_expected(tmp_path):
    text = GOOD + "parallelism: two\nbatch: {bytes: 8 potatoes}\nexecutor: {type: dask}\n"
    text += "validation: {after_run: maybe}\n"
    assert problems(tmp_path, text) == (
        "job.yaml has 4 problems:\n"
        "job.yaml:13:14: parallelism: expected an integer, got 'two'\n"
        "job.yaml:14:16: batch.bytes: expected a size like 8MB, 512KB or a number of bytes, "
        "got '8 potatoes'\n"
        "job.yaml:15:11: executor: executor type 'dask' needs 'scheduler' (e.g. tcp://host:8786)\n"
        "job.yaml:16:25: validation.after_run: expected true or false, got 'maybe'"
    )


def test_a_tagged_value_that_does_not_read_as_its_tag_is_a_problem(tmp_path):
    text = GOOD + "parallelism: !!int two\nincremental: !!bool maybe\n"
    assert problems(tmp_path, text) == (
        "job.yaml has 2 problems:\n"
        "job.yaml:13:14: parallelism: invalid value: 'two' does not read as !!int\n"
        "job.yaml:14:14: incremental: invalid value: 'maybe' does not read as !!bool"
    )


def test_yaml_booleans_and_huge_numbers_are_explained(tmp_path):
    text = (
        GOOD.replace("create: if_missing}\n  pg", "create: yes}\n  pg") + "parallelism: " + "9" * 5000 + "\n"
    )
    assert problems(tmp_path, text) == (
        "job.yaml:13:14: parallelism: invalid value: a number with more than 4300 digits"
    )
    text = GOOD.replace("create: if_missing}\n  pg", "create: yes}\n  pg")
    assert problems(tmp_path, text) == (
        "job.yaml:11:94: targets.dynamo.create: expected 'never' or 'if_missing', "
        "got yes (YAML reads it as true)"
    )


def test_partitions_are_bounded_per_table(tmp_path):
    """A huge count is refused before anything is planned: planning memory never follows it."""
    assert problems(tmp_path, GOOD.replace("partitions: 2", "partitions: 100000000")) == (
        "job.yaml:9:65: sources.mongo.tables.customers.partitions: expected a number <= 10000, got 100000000"
    )
    assert problems(tmp_path, GOOD.replace("partitions: 2", "partitions: -3")) == (
        "job.yaml:9:65: sources.mongo.tables.customers.partitions: expected a number >= 1, got -3"
    )
    job = load_job(write(tmp_path, GOOD.replace("partitions: 2", f"partitions: {MAX_PARTITIONS}")),
                   environ=ENV, secrets={})
    assert job.sources["mongo"].tables["customers"].partitions == MAX_PARTITIONS == 10_000


def test_booleans_never_pass_as_numbers(tmp_path):
    text = GOOD.replace("partitions: 2", "partitions: yes") + "parallelism: true\nbatch: {records: on}\n"
    text += "validation: {buckets: true, tolerances: {float_ulps: false}}\n"
    assert problems(tmp_path, text) == (
        "job.yaml has 5 problems:\n"
        "job.yaml:9:65: sources.mongo.tables.customers.partitions: expected an integer, "
        "got yes (YAML reads it as true)\n"
        "job.yaml:13:14: parallelism: expected an integer, got true\n"
        "job.yaml:14:18: batch.records: expected an integer, got on (YAML reads it as true)\n"
        "job.yaml:15:23: validation.buckets: expected an integer, got true\n"
        "job.yaml:15:54: validation.tolerances.float_ulps: expected an integer, got false"
    )
    # a number from a reference is still read as one
    job = load_job(write(tmp_path, GOOD + "parallelism: ${env:P}\n"), environ={**ENV, "P": "8"}, secrets={})
    assert job.parallelism == 8


def _bare_ints(annotation, where: str, seen: set) -> list[str]:
    """Places under `annotation` where a plain `int` (which reads `true` as 1) is accepted."""
    if annotation is int:
        return [where]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return []
        seen.add(annotation)
        return [bare for name, field in annotation.model_fields.items()
                for bare in _bare_ints(_with_metadata(field), f"{annotation.__name__}.{name}", seen)]
    if typing.get_origin(annotation) is typing.Annotated:
        inner, *metadata = typing.get_args(annotation)
        guarded = any(getattr(m, "func", None) in (refuse_boolean, _parse_bytes) for m in metadata)
        return [] if guarded and inner is int else _bare_ints(inner, where, seen)
    return [bare for arg in typing.get_args(annotation) for bare in _bare_ints(arg, where, seen)]


def _with_metadata(field):
    return typing.Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation


def test_every_integer_setting_refuses_booleans():
    models = [JobFile] + [
        module_for(kind).Config
        for registry, module_for in ((sources.SOURCE_TYPES, sources.module_for),
                                     (sinks.SINK_TYPES, sinks.module_for),
                                     (state.STATE_TYPES, state.module_for))
        for kind in registry
    ]
    seen: set = set()
    assert [bare for model in models for bare in _bare_ints(model, model.__name__, seen)] == []


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("99999999999999999999999GB", "expected a size from 1KB to 1GB (1024 to 1073741824 bytes), "
                                      "got '99999999999999999999999GB'"),
        ("2GB", "expected a size from 1KB to 1GB (1024 to 1073741824 bytes), got '2GB'"),
        ("1.0e+30", "expected a size from 1KB to 1GB (1024 to 1073741824 bytes), got 1e+30"),
        ("512", "expected a size from 1KB to 1GB (1024 to 1073741824 bytes), got 512"),
        ("true", "expected an integer, got true"),
    ],
)
def test_batch_bytes_is_bounded(tmp_path, written, message):
    text = GOOD + f"batch: {{bytes: {written}}}\n"
    assert problems(tmp_path, text) == f"job.yaml:13:16: batch.bytes: {message}"


def test_missing_required_keys(tmp_path):
    text = GOOD.replace("name: chinook-demo\n", "").replace("    database: chinook\n", "")
    assert problems(tmp_path, text) == (
        "job.yaml has 2 problems:\n"
        "job.yaml:1:1: missing required key 'name'\n"
        "job.yaml:4:5: sources.mongo: missing required key 'database'"
    )


def test_unknown_source_type_lists_the_known_ones(tmp_path):
    text = GOOD.replace("type: mongo", "type: mongoo")
    assert problems(tmp_path, text) == (
        f"job.yaml:5:11: sources.mongo.type: unknown source type 'mongoo'; did you mean 'mongo'? "
        f"(known types: {KNOWN_SOURCES})"
    )


def test_unknown_target_and_state_types(tmp_path):
    text = GOOD.replace("type: dynamodb", "type: dynamo") + "state: {type: redis}\n"
    assert problems(tmp_path, text) == (
        "job.yaml has 2 problems:\n"
        "job.yaml:11:18: targets.dynamo.type: unknown target type 'dynamo'; did you mean 'dynamodb'? "
        "(known types: dynamodb, postgres)\n"
        "job.yaml:13:15: state.type: unknown state type 'redis' (known types: dynamodb, postgres, sqlite)"
    )


def test_a_source_module_that_cannot_be_imported_fails_only_its_own_section(tmp_path, monkeypatch):
    monkeypatch.setitem(sources.SOURCE_TYPES, "ghost", "etl.sources.ghost_not_written")
    text = GOOD.replace("targets:", "  old:\n    type: ghost\ntargets:")
    assert problems(tmp_path, text) == (
        "job.yaml:11:5: sources.old.type: source type 'ghost' is not available "
        "(ModuleNotFoundError: No module named 'etl.sources.ghost_not_written')"
    )


def test_missing_environment_variable_names_it(tmp_path):
    assert problems(tmp_path, GOOD, environ={"ETL_PG_DSN": "host=x"}) == (
        "job.yaml:6:10: sources.mongo.uri: environment variable 'ETL_MONGO_URI' is not set; "
        "set ETL_MONGO_URI, or give a default with ${env:ETL_MONGO_URI:-default}"
    )


def test_missing_secret_and_missing_secret_key(tmp_path):
    text = GOOD.replace("${env:ETL_MONGO_URI}", "${secret:prod/mongo}").replace(
        "${env:ETL_PG_DSN}", "${secret:prod/pg#dsn}"
    )
    assert problems(tmp_path, text, secrets={"prod/pg": '{"user": "app"}'}) == (
        "job.yaml has 2 problems:\n"
        "job.yaml:6:10: sources.mongo.uri: secret 'prod/mongo' does not exist\n"
        "job.yaml:12:29: targets.pg.dsn: secret 'prod/pg' has no key 'dsn'"
    )


@pytest.mark.parametrize("value", ["1.5x", "-3", "150%", "true", "[1]"])
def test_bad_max_rejects(tmp_path, value):
    message = problems(tmp_path, GOOD + f"max_rejects: {value}\n")
    expected = {
        "1.5x": "expected a number of records like 100 or a percentage like \"1%\", got '1.5x'",
        "-3": 'expected a number of records like 100 or a percentage like "1%", got -3',
        "150%": "expected a percentage between 0% and 100%, got '150%'",
        "true": 'expected a number of records like 100 or a percentage like "1%", got true',
        "[1]": 'expected a number of records like 100 or a percentage like "1%", got a list',
    }[value]
    assert message == f"job.yaml:13:14: max_rejects: {expected}"


def test_billion_laughs_is_refused(tmp_path):
    lines = ["version: 1", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    assert problems(tmp_path, "\n".join(lines) + "\n") == (
        "job.yaml:7:4: job file rejected: expands to more than 100000 values (nested aliases?)"
    )


def test_deep_nesting_and_recursive_aliases_are_refused(tmp_path):
    assert problems(tmp_path, "a: " + "[" * 5000 + "]" * 5000 + "\n") == (
        "job.yaml:1:67: job file rejected: nested more than 64 levels deep"
    )
    assert problems(tmp_path, "a: &a [*a]\n") == (
        "job.yaml:1:4: job file rejected: nested more than 64 levels deep (recursive alias?)"
    )


def test_huge_file_is_refused_before_parsing(tmp_path):
    assert problems(tmp_path, "# " + "x" * MAX_BYTES + "\n") == (
        f"job.yaml:1:1: job file rejected: larger than {MAX_BYTES} bytes"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "job.yaml:1:1: the job file is empty"),
        ("- 1\n- 2\n", "job.yaml:1:1: expected a mapping of job settings at the top level"),
        ("a: 1\na: 2\n", "job.yaml:2:1: a: duplicate key 'a' (first at line 1)"),
        (
            "a: !!python/object:os.system x\n",
            "job.yaml:1:4: a: unsupported YAML tag 'tag:yaml.org,2002:python/object:os.system'",
        ),
        (
            "a: 1\n---\nb: 2\n",
            "job.yaml:2:1: invalid YAML: a job file holds one document, but a second one starts here",
        ),
        ("a: \x00\n", "job.yaml:1:4: invalid YAML: special characters are not allowed #x0000"),
    ],
)
def test_malformed_documents(tmp_path, text, expected):
    assert problems(tmp_path, text) == expected


def test_not_utf8(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_bytes(b"version: 1\nname: caf\xe9\n")
    with pytest.raises(JobFileProblems) as caught:
        load_job(path, environ={}, secrets={})
    assert str(caught.value) == f"{path}:2:10: the job file is not UTF-8 text"


def test_missing_mapping_file(tmp_path):
    text = GOOD.replace("mappings/customers.yaml", "mappings/nope.yaml")
    assert problems(tmp_path, text) == (
        "job.yaml:9:28: sources.mongo.tables.customers.mapping: "
        "mapping file 'mappings/nope.yaml' does not exist"
    )


def test_a_mapping_path_that_is_a_directory_says_so(tmp_path):
    text = GOOD.replace("mappings/customers.yaml", "mappings")
    assert problems(tmp_path, text) == (
        "job.yaml:9:28: sources.mongo.tables.customers.mapping: "
        "mapping path 'mappings' is a directory, not a mapping file"
    )


def test_a_failed_reference_is_reported_once(tmp_path):
    text = GOOD + "parallelism: ${env:PARALLELISM}\n"
    assert (
        problems(tmp_path, text)
        == "job.yaml:13:14: parallelism: environment variable 'PARALLELISM' is not set; "
        "set PARALLELISM, or give a default with ${env:PARALLELISM:-default}"
    )
    job = load_job(write(tmp_path, text), environ={**ENV, "PARALLELISM": "3"}, secrets={})
    assert job.parallelism == 3


def test_literal_password_is_a_warning_naming_the_line(tmp_path, caplog):
    text = GOOD.replace('dsn: "${env:ETL_PG_DSN}"', 'dsn: "postgresql://app:Hunter2pw@db/x"')
    text = text.replace("    database: chinook", "    database: chinook\n    password: plain-text-pw")
    with caplog.at_level(logging.WARNING, logger="etl.job"):
        path = write(tmp_path, text)
        with pytest.raises(JobFileError) as caught:
            load_job(path, environ=ENV, secrets={})
    # `password` is not a key of the mongo source: the error names the key, never the value
    assert str(
        caught.value
    ) == f"{path}:8:5: sources.mongo.password: unknown key 'password'; valid keys: " + (
        "type, uri, database, tables, select, server_selection_timeout_ms, tls, tls_ca_file, "
        "tls_certificate_key_file, tls_allow_invalid_hostnames"
    )
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        f"{path}:8:15: sources.mongo.password: a password is written in the job file; "
        "use ${env:NAME} or ${secret:NAME} instead",
        f"{path}:13:29: targets.pg.dsn: a connection string with an inline password is written in the job "
        "file; use ${env:NAME} or ${secret:NAME} instead",
    ]

    text = text.replace("    password: plain-text-pw\n", "")
    job = load_job(write(tmp_path, text), environ=ENV, secrets={})
    assert job.warnings == (
        f"{path}:12:29: targets.pg.dsn: a connection string with an inline password is written in the job "
        "file; use ${env:NAME} or ${secret:NAME} instead",
    )
    assert job.targets["pg"].dsn == "postgresql://app:Hunter2pw@db/x"


def test_password_from_a_reference_is_not_a_warning(tmp_path, caplog):
    text = GOOD.replace("${env:ETL_PG_DSN}", "postgresql://app:${secret:pg#password}@db/x")
    with caplog.at_level(logging.WARNING, logger="etl.job"):
        job = load_job(write(tmp_path, text), environ=ENV, secrets={"pg": '{"password": "from-the-vault"}'})
    assert caplog.records == []
    assert job.warnings == ()
    assert job.targets["pg"].dsn == "postgresql://app:from-the-vault@db/x"


def test_unreadable_file(tmp_path):
    with pytest.raises(JobFileError) as caught:
        load_job(tmp_path / "absent.yaml")
    assert (
        str(caught.value)
        == f"{tmp_path / 'absent.yaml'}: cannot read the job file: No such file or directory"
    )


def test_a_job_pickles_for_dask_and_its_secrets_stay_masked_in_the_receiving_process(tmp_path):
    text = GOOD.replace("${env:ETL_PG_DSN}", "postgresql://app:${secret:pg#password}@db/x")
    job = load_job(write(tmp_path, text), environ=ENV, secrets={"pg": '{"password": "Pickled-Pw-6060"}'})
    copy = pickle.loads(pickle.dumps(job))
    assert copy.model_dump() == job.model_dump() and copy.file_hash() == job.file_hash()
    assert copy.interpolate("${secret:pg#password}") == "Pickled-Pw-6060"
    receiver = (
        "import pickle, sys; from etl.redact import redact; "
        "pickle.load(sys.stdin.buffer); print(redact('pw Pickled-Pw-6060'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", receiver], input=pickle.dumps(job), capture_output=True, timeout=60
    )
    assert result.stdout.decode().strip() == "pw ***", result.stderr.decode()


RELATIONAL = """\
version: 1
name: erp
sources:
  erp:
    type: postgres
    dsn: "host=127.0.0.1 dbname=erp"
{tables}targets:
  dynamo: {type: dynamodb, endpoint_url: "http://127.0.0.1:8001", region: us-east-1}
"""


def test_a_relational_source_names_its_tables_by_list_pattern_or_dms_document(tmp_path):
    assert problems(tmp_path, RELATIONAL.replace("{tables}", "")) == (
        "job.yaml:5:5: sources.erp: name the tables to read: `tables`, `select` (patterns) or `dms` "
        "(a DMS document)")
    picked = ("    select: [{include: ['public.*'], exclude: [public.tmp_*],\n"
              "              mapping: mappings/customers.yaml}]\n"
              "    dms: {mapping: mappings/customers.yaml, target: dynamo}\n")
    job = load_job(write(tmp_path, RELATIONAL.replace("{tables}", picked)), environ=ENV, secrets={})
    config = job.sources["erp"]
    assert (config.tables, config.select[0].include, config.select[0].exclude, config.select[0].partitions,
            config.dms.target) == ({}, ["public.*"], ["public.tmp_*"], 1, "dynamo")


def test_select_and_dms_mapping_files_must_exist(tmp_path):
    picked = ("    select: [{include: ['public.*'], mapping: mappings/nope.yaml}]\n"
              "    dms: {mapping: mappings/rules.json, target: dynamo}\n")
    assert problems(tmp_path, RELATIONAL.replace("{tables}", picked)) == (
        "job.yaml has 2 problems:\n"
        "job.yaml:7:47: sources.erp.select[0].mapping: mapping file 'mappings/nope.yaml' does not exist\n"
        "job.yaml:8:20: sources.erp.dms.mapping: mapping file 'mappings/rules.json' does not exist")


def test_worker_processes_are_an_option_of_the_local_executor_only(tmp_path):
    text = GOOD + "executor: {type: local, processes: true}\n"
    job = load_job(write(tmp_path, text), environ=ENV, secrets={})
    assert (job.executor.type, job.executor.processes) == ("local", True)
    assert load_job(write(tmp_path, GOOD), environ=ENV, secrets={}).executor.processes is False
    text = GOOD + 'executor: {type: dask, scheduler: "tcp://s:8786", processes: true}\n'
    assert problems(tmp_path, text) == (
        "job.yaml:13:11: executor: 'processes' applies only to executor type 'local' (Dask workers are "
        "processes already: start them with `dask worker --nworkers N --nthreads 1`)")


def test_an_error_from_another_process_keeps_its_class_message_and_hint():
    from etl.errors import RuntimeFailure
    from etl.sources.mongodump import CorruptFile

    errors = (RuntimeFailure("the sink gave up", hint="run again"),
              CorruptFile(Path("bad.bson"), 120, "a truncated document"))
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert (type(copy), copy.message, copy.hint, str(copy)) == (type(error), error.message, error.hint,
                                                                   str(error))
        assert copy.__dict__ == error.__dict__
