"""Keep secrets out of every log line, error and report.

Two defences work together: a process-wide registry of known secret values (every resolved
`${secret:..}`, every password found in a job file) replaced wherever they appear, and patterns
that scrub passwords from DSNs and URIs even when the value was never registered (a DSN read
from an environment variable, a driver's error message quoting its connection string).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import quote, quote_plus, unquote

if TYPE_CHECKING:  # a plain dict at run time: `python -m etl.run --version` imports no pydantic
    from pydantic import ConfigDict

MASK = "***"
"""What a secret is replaced with."""

MIN_SECRET_LENGTH = 3
"""Shorter values are not registered: masking every 'a' or 'pw' in every log line helps nobody."""

_SECRET_KEYS = r"password|passwd|pwd|secret|secret_access_key|token|api_key|apikey"  # noqa: S105

# scheme://user:password@host - the password ends at the last '@' before a blank or quote.
_URI_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s'\"]*:)([^\s'\"<>]*)(@)")
# key=value pairs of DSNs, ODBC strings, environments: password=x, PWD={x;y}, AWS_SECRET_ACCESS_KEY=x.
_KEY_VALUE_PASSWORD = re.compile(
    rf"(?i)(\b(?:\w*?_)?(?:{_SECRET_KEYS})\s*=\s*)(\{{[^}}]*\}}|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s;&,)]*)"
)
# quoted mapping entries as printed by repr() or JSON: 'password': 'x', "token": "x".
_QUOTED_ENTRY_PASSWORD = re.compile(
    rf"(?i)(['\"](?:\w*?_)?(?:{_SECRET_KEYS})['\"]\s*:\s*)('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
)

_SECRET_WORDS = {"PASSWORD", "PASSWD", "PWD", "SECRET", "TOKEN", "CREDENTIAL", "CREDENTIALS", "APIKEY"}

_lock = threading.Lock()
_secrets: set[str] = set()
_secrets_pattern: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Mask `value` (and its URL- and JSON-escaped forms) in everything `redact` sees from now on."""
    global _secrets_pattern
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    forms = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}
    with _lock:
        if forms <= _secrets:
            return
        _secrets.update(forms)
        ordered = sorted(_secrets, key=len, reverse=True)
        _secrets_pattern = re.compile("|".join(re.escape(s) for s in ordered))
    install_record_redaction()


def registered_count() -> int:
    """How many distinct strings are masked (each secret counts once per escaped form)."""
    with _lock:
        return len(_secrets)


def is_secret_name(name: str) -> bool:
    """Whether a variable or key name says it holds a secret (`ETL_HMAC_KEY`, `db_password`, `token`)."""
    parts = re.split(r"[^A-Za-z0-9]+", name.upper())
    return any(part in _SECRET_WORDS or part.endswith("KEY") for part in parts)


def passwords_in(text: str) -> list[str]:
    """Passwords written inline in DSNs or URIs inside `text` (URL-decoded), for registration."""
    found = [unquote(m.group(2)) for m in _URI_PASSWORD.finditer(text) if m.group(2)]
    for m in _KEY_VALUE_PASSWORD.finditer(text):
        value = m.group(2)
        if len(value) >= 2 and value[0] + value[-1] in ("{}", "''", '""'):
            value = value[1:-1]
        if value:
            found.append(value)
    return found


def redact(text: str) -> str:
    """`text` with every registered secret and every DSN/URI password replaced by `***`."""
    text = _URI_PASSWORD.sub(rf"\g<1>{MASK}\g<3>", text)
    text = _KEY_VALUE_PASSWORD.sub(rf"\g<1>{MASK}", text)
    text = _QUOTED_ENTRY_PASSWORD.sub(rf"\g<1>'{MASK}'", text)
    pattern = _secrets_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return text


def redact_exception(error: BaseException) -> str:
    """The formatted traceback of `error`, redacted (for `--debug` output and reports)."""
    return redact("".join(traceback.format_exception(error)))


class RedactingFilter(logging.Filter):
    """Redacts a record's message, arguments, exception and stack text before any handler sees them.

    Attach it to handlers, not loggers: a logger's filters do not see records from child loggers.
    """

    _STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact_exception(record.exc_info[1]).rstrip("\n")
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(record.__dict__.items()):
            if name not in self._STANDARD and isinstance(value, str):
                setattr(record, name, redact(value))
        return True


_factory_installed = False


def install_record_redaction() -> None:
    """Redact every log record as it is created, whichever handler later sees it (idempotent).

    Handler filters protect only the handlers they are attached to; a record factory also covers
    handlers installed by others (a notebook's, a Dask worker's). Called when the first secret is
    registered and by `etl.log.setup_logging`.
    """
    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        _factory_installed = True
    previous = logging.getLogRecordFactory()
    scrub = RedactingFilter()

    def redacting_factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        scrub.filter(record)
        return record

    logging.setLogRecordFactory(redacting_factory)


class _Shown:
    """A value's text, already redacted; its repr is that text (so pydantic and rich print it as is)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class RedactedRepr:
    """Mixin for pydantic models holding connection settings: no representation shows a password.

    `repr`, `str`, rich's and devtools' pretty printers all build on `__repr_args__`, so each
    field's repr is redacted there; a notebook cell or a traceback showing the model shows `***`.
    `hide_input_in_errors` keeps the offending input (which may be a whole section with its DSN)
    out of the text of a `ValidationError`; `ValidationError.errors()` still carries it for
    callers that decide themselves what to show. Put the mixin before `BaseModel` in the bases.
    """

    model_config: ClassVar[ConfigDict] = {"hide_input_in_errors": True}

    def __repr_args__(self) -> Iterator[tuple[str | None, object]]:
        for name, value in super().__repr_args__():  # type: ignore[misc]
            yield name, _Shown(redact(repr(value)))
