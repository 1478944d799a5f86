"""MongoDB URI options: a value pymongo would only warn about is a job-file error, and the URI's
`serverSelectionTimeoutMS` is honoured (written `server_selection_timeout_ms:` > URI > 10 s)."""

from __future__ import annotations

import textwrap
import warnings

import pytest

from etl.errors import JobFileError
from etl.job import load_job
from etl.sources.base import BatchLimits
from etl.sources.mongo import Config, open_source

URI = "mongodb://127.0.0.1:27017/?directConnection=true"


def job_text(uri: str, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        version: 1
        name: uri-options
        sources:
          mongo:
            type: mongo
            uri: "{uri}"
            database: chinook
            tables:
              customers: {{mapping: m.yaml}}
        {extra}targets:
          pg: {{type: postgres, dsn: "host=127.0.0.1", schema: public}}
        """)


def problems(tmp_path, text: str) -> str:
    (tmp_path / "m.yaml").write_text("{}\n")
    path = tmp_path / "job.yaml"
    path.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw pymongo warning on the way
        with pytest.raises(JobFileError) as caught:
            load_job(path, environ={}, secrets={})
    return str(caught.value).replace(str(path), "job.yaml")


@pytest.mark.parametrize(("options", "message"), [
    ("tls=maybe", "MongoDB URI option 'tls': the value of tls must be 'true' or 'false'"),
    ("serverSelectionTimeoutMS=soon",
     "MongoDB URI option 'serverSelectionTimeoutMS': serverselectiontimeoutms must be an integer or float"),
    ("tlss=true", "unknown MongoDB URI option 'tlss'"),
])
def test_a_uri_option_pymongo_would_warn_about_is_a_job_file_error(tmp_path, options, message):
    assert problems(tmp_path, job_text(f"{URI}&{options}")) == f"job.yaml:6:10: sources.mongo.uri: {message}"


def config(uri: str, **settings) -> Config:
    return Config(type="mongo", uri=uri, database="x", tables={"t": {"mapping": "m.yaml"}}, **settings)


@pytest.mark.parametrize(("uri", "settings", "timeout_ms"), [
    (URI, {}, 10_000),
    (f"{URI}&serverSelectionTimeoutMS=1500", {}, 1500),
    (f"{URI}&serverSelectionTimeoutMS=1500", {"server_selection_timeout_ms": 2500}, 2500),
    (URI, {"server_selection_timeout_ms": 10_000}, 10_000),
])
def test_the_uri_timeout_wins_over_the_default_and_a_written_setting_over_both(uri, settings, timeout_ms):
    source = open_source("src", config(uri, **settings), BatchLimits())
    try:
        assert source.client.options.server_selection_timeout == timeout_ms / 1000
        assert config(uri, **settings).timeout_ms() == timeout_ms
    finally:
        source.client.close()
