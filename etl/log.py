"""Logging for the command: readable on a terminal, JSON lines for machines, redacted everywhere.

Schedulers (cron, ECS, AWS Batch) collect stderr into log stores that search JSON fields, so a
non-terminal stream gets one JSON object per line; a terminal gets rich's coloured output.
Whatever the output, the redaction filter runs on every record first.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO

from etl.redact import RedactingFilter, install_record_redaction, redact

QUIET_LIBRARIES = ("botocore", "boto3", "urllib3", "s3transfer", "pymongo", "asyncio", "distributed")
"""Their debug output (request bodies, wire traffic) is noise at best and a leak at worst."""

_STANDARD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, any `extra=` fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD_FIELDS and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


def setup_logging(debug: bool, stream: IO[str] | None = None) -> logging.Handler:
    """Send the root logger's records to `stream` (stderr by default); returns the handler installed.

    Calling it again replaces the handler it installed before, so tests and notebooks may call it
    freely. `debug` lowers the level to DEBUG for etl's own loggers; noisy libraries stay at INFO.
    """
    stream = sys.stderr if stream is None else stream
    install_record_redaction()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_etl_handler", False):
            root.removeHandler(handler)
    handler = _terminal_handler(stream) if _is_terminal(stream) else _json_handler(stream)
    handler._etl_handler = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.INFO if debug else logging.WARNING)
    return handler


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _json_handler(stream: IO[str]) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    return handler


def terminal_console(stream: IO[str]):
    """The rich Console the installed terminal handler writes `stream` with, so a live display made on
    it prints log records above itself instead of through its lines; a new Console if there is none."""
    from rich.console import Console

    for handler in logging.getLogger().handlers:
        console = getattr(handler, "console", None)
        if getattr(handler, "_etl_handler", False) and console is not None and console.file is stream:
            return console
    return Console(file=stream)


def _terminal_handler(stream: IO[str]) -> logging.Handler:
    from rich.console import Console
    from rich.logging import RichHandler

    console = Console(file=stream, stderr=stream is sys.stderr)
    # rich_tracebacks would render frames and locals from exc_info, bypassing redaction
    return RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False)
