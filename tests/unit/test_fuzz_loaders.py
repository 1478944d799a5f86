"""Hostile job and mapping files: always a clear EtlError with a position, never a traceback or a hang.

Each Hypothesis example has a deadline (bounded time) and the hand-made attacks are measured with
tracemalloc (bounded memory).
"""

from __future__ import annotations

import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.errors import EtlError, JobFileError, MappingError
from etl.job import Job, load_job
from etl.mapping import load_mapping

MAPPING_KEYS = ["version", "source", "key", "targets", "pg", "dynamo", "outputs", "target", "table",
                "columns", "from", "type", "explode", "parent", "where", "pii", "hmac", "mask", "template",
                "const",
                "default", "required", "cast", "description", "<<"]
JOB_KEYS = ["version", "name", "sources", "targets", "type", "uri", "dsn", "tables", "mapping", "partitions",
            "state", "audit", "path", "postgres", "allow_insecure", "batch", "max_rejects", "<<"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40), st.floats(),
    st.sampled_from(["postgres", "dynamodb", "mongo", "int", "text", "decimal(10,2)", "_id", "a.b[]",
                     "${env:X}", "1e400", "m.yaml", "x\"; DROP TABLE y; --"]),
    st.text(max_size=12),
)


def documents(keys: list[str]):
    return st.recursive(SCALARS, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(keys), inner, max_size=6)),
        max_leaves=30)


EXAMPLES = settings(max_examples=60, deadline=timedelta(seconds=5),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def load_job_bytes(folder: Path, content: bytes) -> Job | EtlError:
    path = folder / "job.yaml"
    path.write_bytes(content)
    (folder / "m.yaml").write_text("{}\n")
    try:
        return load_job(path, environ={"X": "1"}, secrets={})
    except JobFileError as error:
        assert str(error).startswith(str(path)), str(error)
        return error


def load_mapping_bytes(folder: Path, content: bytes) -> object:
    path = folder / "m.yaml"
    path.write_bytes(content)
    try:
        return load_mapping(path, resolve=lambda text, where=None: text)
    except MappingError as error:
        assert str(error).startswith(str(path)), str(error)
        return error


@EXAMPLES
@given(document=documents(MAPPING_KEYS))
def test_any_mapping_structure_loads_or_fails_with_a_mapping_error(tmp_path, document):
    load_mapping_bytes(tmp_path, yaml.safe_dump(document, allow_unicode=True).encode())


@EXAMPLES
@given(content=st.binary(max_size=400))
def test_any_mapping_bytes_fail_with_a_mapping_error(tmp_path, content):
    load_mapping_bytes(tmp_path, content)


@EXAMPLES
@given(text=st.text(alphabet="{}[]:,-&*!|>'\"#%@` \n\tab1<", max_size=300))
def test_mapping_punctuation_soup_fails_with_a_mapping_error(tmp_path, text):
    load_mapping_bytes(tmp_path, text.encode())


@EXAMPLES
@given(document=documents(JOB_KEYS))
def test_any_job_structure_loads_or_fails_with_a_job_file_error(tmp_path, document):
    load_job_bytes(tmp_path, yaml.safe_dump(document, allow_unicode=True).encode())


def laughs(levels: int = 9) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


ATTACKS = {
    "billion laughs": ("version: 1\n" + laughs(), "expands to more than 100000 values (nested aliases?)"),
    "recursive alias": ("version: 1\nx: &a [1, *a]\n", "recursive"),
    "deep flow lists": ("version: 1\nx: " + "[" * 50_000 + "]" * 50_000 + "\n",
                        "nested more than 64 levels deep"),
    "deep flow maps": ("version: 1\nx: " + "{a: " * 50_000 + "1" + "}" * 50_000 + "\n",
                       "nested more than 64 levels deep"),
    "deep block maps": ("version: 1\n" + "".join(" " * i + "a:\n" for i in range(200)) + " " * 200 + "b\n",
                        "nested more than 64 levels deep"),
    "huge integer": ("version: 1\nname: x\nx: " + "9" * 100_000 + "\n",
                     "a number with more than 4300 digits"),
    "python tag": ("version: 1\nx: !!python/object/apply:os.system ['true']\n", "unsupported YAML tag"),
    "oversized": ("version: 1\n" + "#" * (1024 * 1024) + "\n", "larger than 1048576 bytes"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("loader", ["job", "mapping"])
def test_attacks_are_refused_in_bounded_memory(tmp_path, attack, loader):
    text, reason = ATTACKS[attack]
    load = load_job_bytes if loader == "job" else load_mapping_bytes
    tracemalloc.start()
    try:
        outcome = load(tmp_path, text.encode())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(outcome, EtlError)
    assert reason in str(outcome), str(outcome)
    assert peak < 64 * 1024 * 1024, f"{peak} bytes"


@pytest.mark.parametrize(("text", "expected"), [
    ("version: 1\ntargets: 7\noutputs: []\n", "m.yaml:2:10: targets: "),
    ("version: 1\ntargets: {pg: postgres}\noutputs: {a: 1}\n", "m.yaml:3:10: outputs: "),
    ("version: 1\ntargets: {pg: postgres}\noutputs: [{target: pg, table: [1], key: [a], columns: {a: a}}]\n",
     "m.yaml:3:"),
    ("version: 1e400\n", "m.yaml:1:10: version: only `version: 1` exists"),
])
def test_wrong_types_in_a_mapping_name_the_place(tmp_path, text, expected):
    outcome = load_mapping_bytes(tmp_path, text.encode())
    assert isinstance(outcome, MappingError)
    assert str(outcome).startswith(f"{tmp_path}/{expected}"), str(outcome)
