"""`${env:..}` and `${secret:..}` references: resolution, caching, errors that never show a value."""

from __future__ import annotations

import pytest

from etl.interpolate import InterpolationError, Interpolator
from etl.redact import redact


class CountingSecrets:
    """An injected SecretSource that records which names were asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.asked: list[str] = []

    def get_secret(self, name: str) -> str:
        self.asked.append(name)
        if name not in self.values:
            raise InterpolationError(f"secret '{name}' does not exist")
        return self.values[name]


def test_environment_variables_and_defaults():
    resolve = Interpolator({"HOST": "db.internal", "EMPTY": ""}, {})
    assert resolve("host=${env:HOST} port=${env:PORT:-5432}") == "host=db.internal port=5432"
    assert resolve("${env:EMPTY:-fallback}") == ""
    assert resolve("${env:PORT:-}") == ""
    assert resolve("no references") == "no references"
    assert resolve("literal $${env:HOST} stays") == "literal ${env:HOST} stays"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${env:MISSING}", "job.yaml:3:7: environment variable 'MISSING' is not set"),
        ("${env:bad-name}", "job.yaml:3:7: bad environment variable name in '${env:bad-name}'"),
        (
            "${vault:x}",
            "job.yaml:3:7: unknown reference '${vault:x}'; expected ${env:NAME}, ${env:NAME:-default}, "
            "${secret:NAME} or ${secret:NAME#json_key}",
        ),
        (
            "${env:HOST",
            "job.yaml:3:7: unterminated reference '${env:HOST'; expected ${env:NAME}, ${env:NAME:-default}, "
            "${secret:NAME} or ${secret:NAME#json_key}",
        ),
        (
            "${secret:db#}",
            "job.yaml:3:7: bad secret reference '${secret:db#}'; expected ${env:NAME}, ${env:NAME:-default}, "
            "${secret:NAME} or ${secret:NAME#json_key}",
        ),
    ],
)
def test_reference_errors(text, message):
    with pytest.raises(InterpolationError) as caught:
        Interpolator({}, {})(text, where="job.yaml:3:7")
    assert caught.value.message == message
    assert caught.value.exit_code == 2


def test_missing_variable_hint():
    with pytest.raises(InterpolationError) as caught:
        Interpolator({}, {})("${env:ETL_PG_DSN}")
    assert str(caught.value) == (
        "environment variable 'ETL_PG_DSN' is not set\n"
        "  hint: set ETL_PG_DSN, or give a default with ${env:ETL_PG_DSN:-default}"
    )


def test_secrets_are_read_once_per_name_and_registered_for_redaction():
    source = CountingSecrets(
        {"prod/pg": '{"user": "interp-user-31", "password": "Xq7-interp-pw"}', "token": "tok-5551-abc"}
    )
    resolve = Interpolator({}, source)
    text = "postgresql://${secret:prod/pg#user}:${secret:prod/pg#password}@db/x?t=${secret:token}"
    assert resolve(text) == "postgresql://interp-user-31:Xq7-interp-pw@db/x?t=tok-5551-abc"
    assert resolve("${secret:prod/pg#password}") == "Xq7-interp-pw"
    assert source.asked == ["prod/pg", "token"]
    assert redact("password is Xq7-interp-pw, token tok-5551-abc") == "password is ***, token ***"


def test_secret_errors_name_the_secret_and_key_never_the_value():
    source = CountingSecrets({"plain": "not-json-value-123", "doc": '{"user": "app-user-77"}'})
    resolve = Interpolator({}, source)
    with pytest.raises(InterpolationError) as caught:
        resolve("${secret:absent}", where="j.yaml:1:1")
    assert caught.value.message == "j.yaml:1:1: secret 'absent' does not exist"
    with pytest.raises(InterpolationError) as caught:
        resolve("${secret:plain#password}", where="j.yaml:1:1")
    assert (
        caught.value.message == "j.yaml:1:1: secret 'plain' is not a JSON object, so it has no key 'password'"
    )
    with pytest.raises(InterpolationError) as caught:
        resolve("${secret:doc#password}", where="j.yaml:2:5")
    assert caught.value.message == "j.yaml:2:5: secret 'doc' has no key 'password'"
    assert "not-json-value-123" not in caught.value.message and "app-user-77" not in caught.value.message


def test_non_string_json_fields_become_json_text():
    resolve = Interpolator({}, {"cfg": '{"port": 65431, "replicas": [1, 2]}'})
    assert resolve("${secret:cfg#port}/${secret:cfg#replicas}") == "65431/[1, 2]"


def test_passwords_inside_environment_dsns_are_registered():
    resolve = Interpolator({"DSN": "host=db user=app password=EnvDsnPw-31"}, {})
    assert resolve("${env:DSN}") == "host=db user=app password=EnvDsnPw-31"
    assert redact("login failed for EnvDsnPw-31") == "login failed for ***"


def test_environment_values_named_as_secrets_are_registered():
    resolve = Interpolator({"ETL_DEMO_HMAC_KEY": "hmac-env-key-8080", "ETL_HOST": "db-host-7070"}, {})
    assert resolve("${env:ETL_DEMO_HMAC_KEY} ${env:ETL_HOST}") == "hmac-env-key-8080 db-host-7070"
    assert redact("key hmac-env-key-8080 host db-host-7070") == "key *** host db-host-7070"
