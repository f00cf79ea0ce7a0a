"""Logging: human lines or one JSON object per event on stderr, secrets always redacted
(through ``magsync.util.redact``, the one redaction path)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from magsync.util import redact
from magsync.util.timeutil import from_iso, to_iso, utcnow

LOGGER_NAME = "magsync"
_RESERVED = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
class RedactingFilter(logging.Filter):
    """Redacts every known secret (``magsync.util.redact``) from a record's message,
    traceback and extras."""

    def scrub(self, text: str) -> str:
        return redact.scrub(text)

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


class OncePerDay(logging.Filter):
    """Under -q: each distinct warning at most once a day (cron runs every minute, and
    each line it prints is a mail). Errors always pass.

    Warnings are told apart by their text with the numbers left out. When each was last
    shown is kept in a small JSON file beside the state file (``<state file>.warnings``,
    0600), set by ``remember_warnings_in`` once the config is loaded; before that, or
    when the file cannot be written, a warning is shown.
    """

    PERIOD = timedelta(days=1)

    def __init__(self) -> None:
        super().__init__()
        self.path: Path | None = None
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or self.path is None:
            return True
        key = re.sub(r"\d+", "#", record.getMessage())[:300]
        with self._lock:
            shown = _read_shown(self.path)
            now = utcnow()
            last = shown.get(key)
            if last is not None and now - last < self.PERIOD:
                return False
            shown = {k: v for k, v in shown.items() if now - v < self.PERIOD}
            shown[key] = now
            _write_shown(self.path, shown)
        return True


def _read_shown(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {str(k): from_iso(str(v)) for k, v in raw.items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def _write_shown(path: Path, shown: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({k: to_iso(v) for k, v in shown.items()}, f)
        os.replace(tmp, path)
    except OSError:  # a read-only monitoring user, or no state directory yet
        with contextlib.suppress(OSError):
            tmp.unlink()


_filter = RedactingFilter()
_once = OncePerDay()
_mode = {"json": False}


def setup_logging(*, verbose: int = 0, quiet: bool = False, log_json: bool = False) -> None:
    """Configure the ``magsync`` logger for this process (idempotent).

    ``quiet`` (-q) means the same in both formats: errors, and each distinct warning at
    most once a day.
    """
    logger = logging.getLogger(LOGGER_NAME)
    # each invocation redacts its own config's secrets; runs in one process (tests, demo)
    # must not inherit an earlier config's, which would blank unrelated output
    redact.REDACTOR.reset()
    _once.path = None
    _mode["json"] = log_json
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
        handler.addFilter(_once)
    logger.setLevel(level)
    logger.addHandler(handler)
    logger.propagate = False


def remember_warnings_in(state_path: Path) -> None:
    """Keep -q's "warning last shown" times beside this state file."""
    _once.path = Path(str(Path(state_path).expanduser()) + ".warnings")


def is_json_logging() -> bool:
    """Whether --log-json is on (every stderr line is then a JSON object)."""
    return _mode["json"]


def emit(text: str, *, level: str = "error", plain: str | None = None,
         **fields: Any) -> None:
    """One line on stderr that is not a log event (the final error, a run's failure
    notes): with --log-json a JSON object like the log events, else ``plain`` (default:
    ``text``). Redacted either way."""
    if _mode["json"]:
        event: dict[str, Any] = {"time": to_iso(utcnow()), "level": level, "event": text}
        event.update(fields)
        line = json.dumps(event, default=str)
    else:
        line = text if plain is None else plain
    sys.stderr.write(_filter.scrub(line) + "\n")
    sys.stderr.flush()


def add_secrets(secrets: Iterable[str]) -> None:
    """Teach the redaction the secrets of the loaded config."""
    redact.add_secrets(secrets)


def scrub(text: str) -> str:
    """Redact known secrets from a string meant for output."""
    return redact.scrub(text)


def get_logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)
