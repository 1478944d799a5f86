"""`${env:NAME}`, `${env:NAME:-default}`, `${secret:NAME}` and `${secret:NAME#key}` in job and mapping files.

Resolved once, at load time, so a run never starts with a missing credential. Secrets come from
AWS Secrets Manager (boto3 `get_secret_value`); the client is created on first use from the
standard AWS configuration (AWS_REGION / AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_SECRETS_MANAGER,
profiles, instance roles). Every secret value is registered with `etl.redact` before it is
returned, as is every environment value whose variable name says it is secret (`..._KEY`,
`..._PASSWORD`, `..._TOKEN`, `..._SECRET`) and every password inside a DSN or URI; error messages
name the variable or secret, never a value.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from etl import security
from etl.errors import EtlError
from etl.redact import is_secret_name, passwords_in, register_secret

log = logging.getLogger(__name__)

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Secrets Manager names: letters, digits and /_+=.@- (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_CreateSecret.html)
_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@\-]{1,512}\Z")
SYNTAX = "${env:NAME}, ${env:NAME:-default}, ${secret:NAME} or ${secret:NAME#json_key}"


class InterpolationError(EtlError):
    """A reference could not be resolved; the message names the variable or secret, never a value."""

    exit_code = 2


class SecretSource(Protocol):
    """Where `${secret:NAME}` values come from: returns the secret's string value."""

    def get_secret(self, name: str) -> str: ...


class AwsSecretsManager:
    """Secrets Manager through boto3; the client is created lazily and each secret read once."""

    def __init__(self, client: Any = None, *, allow_insecure: bool = False) -> None:
        self._client = client
        self._allow_insecure = allow_insecure
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3

                session = boto3.session.Session()
                client = session.client("secretsmanager")
                self._check_endpoint(security.aws_client_endpoint(client, "Secrets Manager", session=session))
                self._client = client
            return self._client

    def _check_endpoint(self, endpoint: security.Endpoint) -> None:
        """Secrets travel only over HTTPS (AWS_ENDPOINT_URL_SECRETS_MANAGER may point elsewhere)."""
        decided = security.verdict(endpoint, self._allow_insecure)
        if decided == "refuse":
            raise InterpolationError(security.refusal("Secrets Manager", endpoint))
        if decided == "warn":
            log.warning(security.warning("Secrets Manager", endpoint))

    def __getstate__(self) -> dict:
        # a boto3 client is not picklable: an unpickled copy makes its own
        return {"allow_insecure": self._allow_insecure}

    def __setstate__(self, state: dict) -> None:
        self.__init__(allow_insecure=state.get("allow_insecure", False))  # type: ignore[misc]

    def get_secret(self, name: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._get_client().get_secret_value(SecretId=name)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "ClientError")
            if code == "ResourceNotFoundException":
                raise InterpolationError(f"secret '{name}' does not exist in AWS Secrets Manager") from None
            raise InterpolationError(
                f"secret '{name}' could not be read from AWS Secrets Manager: {code}",
                hint="check the secret's name, the region and that the role may call "
                "secretsmanager:GetSecretValue on it",
            ) from None
        except BotoCoreError as error:
            raise InterpolationError(
                f"secret '{name}' could not be read from AWS Secrets Manager: {type(error).__name__}",
                hint="check AWS credentials, region (AWS_REGION) and endpoint",
            ) from None
        if "SecretString" not in response:
            raise InterpolationError(f"secret '{name}' holds binary data; only text secrets can be used")
        return response["SecretString"]


class MappingSecrets:
    """Secrets from a plain mapping (tests, notebooks, callers that fetched them elsewhere)."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def get_secret(self, name: str) -> str:
        if name not in self._values:
            raise InterpolationError(f"secret '{name}' does not exist")
        return self._values[name]


class Interpolator:
    """Resolves references in strings; `interpolator(text, where="file:3:7")` returns the resolved text.

    `where` prefixes error messages. `$${` stands for a literal `${`.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        secrets: SecretSource | Mapping[str, str] | None = None,
        *,
        allow_insecure: bool = False,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        if secrets is None:
            secrets = AwsSecretsManager(allow_insecure=allow_insecure)
        elif isinstance(secrets, Mapping):
            secrets = MappingSecrets(secrets)
        self._secrets = secrets
        self._cache: dict[str, str] = {}
        self._failures: dict[str, InterpolationError] = {}
        self._registered: set[str] = set()
        self._lock = threading.Lock()

    def register(self, value: str) -> None:
        """Mask `value` in every output, here and in every process this resolver is pickled to."""
        if value:
            register_secret(value)
            self._registered.add(value)

    def __getstate__(self) -> dict:
        """Pickled (Dask tasks carry the job): the copy reads the environment of the process it lands in."""
        state = self.__dict__.copy()
        state["_environ"] = None if self._environ is os.environ else dict(self._environ)
        state["_failures"] = {}
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._environ is None:
            self._environ = os.environ
        self._lock = threading.Lock()
        for value in self._registered:
            register_secret(value)

    def __call__(self, text: str, where: str | None = None) -> str:
        if "${" not in text:
            return text
        prefix = f"{where}: " if where else ""
        return _REFERENCE.sub(lambda m: self._replace(m, prefix), text)

    def uses_secret(self, text: str) -> bool:
        """Whether `text` holds a `${secret:..}` reference (its resolved value is a secret)."""
        return any(m.group(1) and m.group(1).startswith("secret:") for m in _REFERENCE.finditer(text))

    def _replace(self, match: re.Match[str], prefix: str) -> str:
        if match.group(0) == "$${":
            return "${"
        body = match.group(1)
        if not match.group(0).endswith("}"):
            raise InterpolationError(f"{prefix}unterminated reference '${{{_clip(body)}'; expected {SYNTAX}")
        kind, _, rest = body.partition(":")
        if kind == "env":
            return self._env(rest, body, prefix)
        if kind == "secret":
            return self._secret(rest, body, prefix)
        raise InterpolationError(f"{prefix}unknown reference '${{{_clip(body)}}}'; expected {SYNTAX}")

    def _env(self, rest: str, body: str, prefix: str) -> str:
        name, has_default, default = rest.partition(":-")
        if not _ENV_NAME.match(name):
            raise InterpolationError(f"{prefix}bad environment variable name in '${{{_clip(body)}}}'")
        value = self._environ.get(name)
        if value is None:
            if has_default:
                return default
            raise InterpolationError(
                f"{prefix}environment variable '{name}' is not set",
                hint=f"set {name}, or give a default with ${{env:{name}:-default}}",
            )
        if is_secret_name(name):
            self.register(value)
        for password in passwords_in(value):
            self.register(password)
        return value

    def _secret(self, rest: str, body: str, prefix: str) -> str:
        name, has_key, key = rest.partition("#")
        if not _SECRET_NAME.match(name) or (has_key and not key):
            raise InterpolationError(f"{prefix}bad secret reference '${{{_clip(body)}}}'; expected {SYNTAX}")
        try:
            value = self._cached(name)
        except InterpolationError as error:
            raise InterpolationError(prefix + error.message, hint=error.hint) from None
        if not has_key:
            return value
        try:
            document = json.loads(value)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise InterpolationError(
                f"{prefix}secret '{name}' is not a JSON object, so it has no key '{key}'"
            )
        if key not in document:
            raise InterpolationError(f"{prefix}secret '{name}' has no key '{key}'")
        field = document[key]
        text = field if isinstance(field, str) else json.dumps(field)
        self.register(text)
        return text

    def _cached(self, name: str) -> str:
        with self._lock:
            if name in self._failures:
                raise self._failures[name]
            if name in self._cache:
                return self._cache[name]
        try:
            value = self._secrets.get_secret(name)
        except InterpolationError as error:
            with self._lock:
                self._failures[name] = error  # asked once: a missing secret does not appear later
            raise
        self.register(value)
        for password in passwords_in(value):
            self.register(password)
        with self._lock:
            self._cache[name] = value
        return value


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
