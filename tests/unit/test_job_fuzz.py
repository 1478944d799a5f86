"""Fuzzing the job loader: whatever the bytes, the answer is a Job or a JobFileError, never a traceback."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.errors import JobFileError
from etl.job import Job, load_job

KEYS = [
    "version",
    "name",
    "sources",
    "targets",
    "batch",
    "records",
    "bytes",
    "parallelism",
    "executor",
    "type",
    "scheduler",
    "state",
    "path",
    "dead_letter",
    "max_rejects",
    "validation",
    "buckets",
    "tolerances",
    "report",
    "mongo",
    "dynamodb",
    "postgres",
    "uri",
    "dsn",
    "tables",
    "mapping",
    "partitions",
    "paralelism",
    "<<",
    "x-a",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True),
    st.sampled_from(
        ["1%", "8MB", "mongo", "${env:X}", "${secret:a#b}", "${", "$${x}", "sqlite", "m.yaml", "1"]
    ),
    st.text(max_size=20),
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=6)
    ),
    max_leaves=40,
)
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(content: bytes) -> Job | JobFileError:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "job.yaml"
        path.write_bytes(content)
        (Path(folder) / "m.yaml").write_text("{}\n")
        try:
            return load_job(path, environ={"X": "1"}, secrets={"a": '{"b": "c"}'})
        except JobFileError as error:
            assert str(error).startswith(str(path))
            return error


@SETTINGS
@given(DOCUMENTS)
def test_any_structure_loads_or_fails_cleanly(document):
    text = yaml.safe_dump(document, allow_unicode=True)
    assert isinstance(outcome(text.encode()), Job | JobFileError)


@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_load_or_fail_cleanly(content):
    assert isinstance(outcome(content), Job | JobFileError)


@SETTINGS
@given(st.text(alphabet="{}[]:,-&*!|>'\"#%@` \n\tab1", max_size=200))
def test_yaml_punctuation_soup_fails_cleanly(text):
    assert isinstance(outcome(text.encode()), Job | JobFileError)
