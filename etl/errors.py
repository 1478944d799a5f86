"""The one family of errors a user can cause.

Every message says what went wrong, where (file:line:column, table, key) and what to do.
The command prints the message without a traceback unless `--debug`; secrets never appear
in a message (see `etl.redact`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EtlError(Exception):
    """A problem the user can fix. `exit_code` is what `python -m etl.run` exits with."""

    exit_code = 3

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")

    def __reduce__(self):
        """Pickled (from a worker process or a Dask task): the same class, message, hint and attributes,
        whatever the subclass's own constructor takes."""
        return _rebuild, (type(self), self.message, self.hint, dict(self.__dict__))


def _rebuild(cls: type[EtlError], message: str, hint: str | None, attributes: dict) -> EtlError:
    error = cls.__new__(cls)
    EtlError.__init__(error, message, hint=hint)
    error.__dict__.update(attributes)
    return error


class JobFileError(EtlError):
    """A job file is invalid (syntax, unknown key, wrong type, missing variable or secret)."""

    exit_code = 2


class MappingError(EtlError):
    """A mapping file is invalid or does not fit the target (names file, line and path)."""

    exit_code = 2


class ConnectionFailed(EtlError):
    """A server could not be reached or refused the credentials."""

    exit_code = 3


class RuntimeFailure(EtlError):
    """Data could not be moved (too many rejects, a sink gave up, a lease is held...)."""

    exit_code = 3


class ValidationDifferences(EtlError):
    """Validation found differences between source and target."""

    exit_code = 1


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the nearest of `choices`, or an empty string: for messages that
    name something that does not exist."""
    near = difflib.get_close_matches(name, sorted(choices), n=1)
    return f"; did you mean '{near[0]}'?" if near else ""
