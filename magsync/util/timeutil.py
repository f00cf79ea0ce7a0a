"""Durations, WHEN arguments and the timestamp formats of the two APIs. UTC-aware only."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAGENTO_FORMAT = "%Y-%m-%d %H:%M:%S"


def utcnow() -> datetime:
    """The current time, UTC-aware."""
    return datetime.now(timezone.utc)


def parse_duration(text: str | int) -> timedelta:
    """``30s``, ``10m``, ``24h``, ``7d``, ``2w`` (a bare number means seconds)."""
    if isinstance(text, int) and not isinstance(text, bool):
        amount, unit = text, "seconds"
    else:
        m = _DURATION.match(str(text))
        if not m:
            raise ValueError(f"{text!r} is not a duration (use e.g. 30s, 10m, 24h, 7d)")
        amount, unit = int(m.group(1)), _UNITS[m.group(2)]
    try:
        return timedelta(**{unit: amount})
    except OverflowError:
        # callers handle ValueError only; an absurd number must not crash the CLI
        raise ValueError(f"{text!r} is too long a duration") from None


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """A WHEN argument: a duration back from now, or an ISO 8601 date or date-time.

    Without a zone, the machine's local time is meant (SPEC section 1).
    """
    now = now or utcnow()
    if _DURATION.match(text):
        try:
            return now - parse_duration(text)
        except OverflowError:
            raise ValueError(f"{text!r} reaches back before year 1") from None
    from dateutil import parser as dateparser  # only here: most commands never parse

    try:
        parsed = dateparser.isoparse(text)
    except (ValueError, OverflowError) as exc:
        raise ValueError(
            f"{text!r} is neither a duration (48h, 7d) nor an ISO 8601 date or date-time"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # local time of the machine
    return parsed.astimezone(timezone.utc)


def to_magento(dt: datetime) -> str:
    """Magento's UTC timestamp format, ``YYYY-MM-DD HH:MM:SS``."""
    return dt.astimezone(timezone.utc).strftime(MAGENTO_FORMAT)


def from_magento(text: str) -> datetime:
    """Parse Magento's zone-less UTC timestamp."""
    return datetime.strptime(text[:19], MAGENTO_FORMAT).replace(tzinfo=timezone.utc)


def to_iso(dt: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as stored in the state file."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_iso_seconds(dt: datetime) -> str:
    """``to_iso`` to the second, for people to read (``2024-05-01T12:00:00Z``)."""
    return to_iso(dt)[:19] + "Z"


def from_iso(text: str) -> datetime:
    """Parse what ``to_iso`` wrote (or any ISO 8601 string with a zone)."""
    try:  # the stdlib reads what to_iso writes (its "Z" spelled as an offset for 3.10)
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z")
                                        else text)
    except ValueError:
        from dateutil import parser as dateparser

        parsed = dateparser.isoparse(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)
