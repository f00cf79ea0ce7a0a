"""Logging: human lines or one JSON object per event on stderr, secrets always redacted
(through ``magsync.util.redact``, the one redaction path)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from typing import Any

from magsync.util import redact
from magsync.util.timeutil import to_iso, utcnow

LOGGER_NAME = "magsync"
_RESERVED = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "always"}
# ``log.warning(..., extra=ALWAYS)``: a warning that -q does not hide (the state file open
# to other users...). -q otherwise prints errors only.
ALWAYS: dict[str, Any] = {"always": True}


class QuietFilter(logging.Filter):
    """Under -q: errors, and the warnings marked ``ALWAYS``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or bool(getattr(record, "always", False))


class RedactingFilter(logging.Filter):
    """Redacts every known secret (``magsync.util.redact``) and ``secrets`` from a
    record's message, traceback and extras."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len,
                              reverse=True)

    def add(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted(set(self.secrets) | {s for s in secrets if s and len(s) >= 3},
                              key=len, reverse=True)

    def scrub(self, text: str) -> str:
        return redact.scrub(text, self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            # formatters reuse exc_text, so a traceback quoting a secret is redacted too
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
        for key, value in list(vars(record).items()):
            if key not in _RESERVED and isinstance(value, str):
                setattr(record, key, self.scrub(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, event, and any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {"time": to_iso(utcnow()), "level": record.levelname.lower(),
                                 "event": record.getMessage()}
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                event[key] = value
        if record.exc_text:
            event["traceback"] = record.exc_text
        elif record.exc_info:
            event["traceback"] = self.formatException(record.exc_info)
        # extras may be nested (payload samples): redact the finished line as a whole
        return _filter.scrub(json.dumps(event, default=str))


_filter = RedactingFilter()


def setup_logging(*, verbose: int = 0, quiet: bool = False, log_json: bool = False) -> None:
    """Configure the ``magsync`` logger for this process (idempotent)."""
    logger = logging.getLogger(LOGGER_NAME)
    # each invocation redacts its own config's secrets; runs in one process (tests, demo)
    # must not inherit an earlier config's, which would blank unrelated output
    _filter.secrets = []
    redact.REDACTOR.reset()
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_filter)
    if log_json:
        handler.setFormatter(JsonFormatter())
        level = logging.DEBUG if verbose else logging.INFO
    else:
        handler.setFormatter(logging.Formatter("magsync: %(levelname)s: %(message)s"))
        level = (logging.DEBUG if verbose > 1 else logging.INFO if verbose else
                 logging.WARNING)
        if quiet:
            level = logging.WARNING
            handler.addFilter(QuietFilter())
    logger.setLevel(level)
    logger.addHandler(handler)
    logger.propagate = False


def add_secrets(secrets: Iterable[str]) -> None:
    """Teach the redaction the secrets of the loaded config."""
    redact.add_secrets(secrets)


def scrub(text: str) -> str:
    """Redact known secrets from a string meant for output."""
    return redact.scrub(text)


def get_logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)
