"""Durations, WHEN arguments and the two timestamp formats (magsync.timeutil)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from magsync.util.timeutil import (
    from_iso,
    from_magento,
    parse_duration,
    parse_when,
    to_iso,
    to_magento,
    utcnow,
)

NOW = datetime(2024, 6, 15, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def local_utc_minus5(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's local zone is UTC-5 (POSIX TZ needs no tz database)."""
    monkeypatch.setenv("TZ", "EST+05")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_utcnow_is_aware_utc() -> None:
    assert utcnow().utcoffset() == timedelta(0)


@pytest.mark.parametrize(("text", "expected"), [
    ("30s", timedelta(seconds=30)),
    ("10m", timedelta(minutes=10)),
    ("24h", timedelta(hours=24)),
    ("7d", timedelta(days=7)),
    ("2w", timedelta(weeks=2)),
    (" 5 m ", timedelta(minutes=5)),
    (90, timedelta(seconds=90)),
])
def test_parse_duration(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "10", "10x", "h", "-5m", "1.5h", "ten minutes"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["99999999999d", 10**20])
def test_parse_duration_overflow_is_a_value_error(text: str | int) -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration(text)


@pytest.mark.parametrize(("text", "back"), [
    ("48h", timedelta(hours=48)), ("7d", timedelta(days=7)), ("90m", timedelta(minutes=90)),
])
def test_parse_when_duration_counts_back_from_now(text: str, back: timedelta) -> None:
    assert parse_when(text, now=NOW) == NOW - back


def test_parse_when_zoned_datetime_is_converted_to_utc() -> None:
    assert parse_when("2024-03-01T10:00:00+02:00") == datetime(2024, 3, 1, 8, 0,
                                                              tzinfo=timezone.utc)
    assert parse_when("2024-03-01T10:00:00Z") == datetime(2024, 3, 1, 10, 0,
                                                         tzinfo=timezone.utc)


def test_parse_when_date_means_local_midnight(local_utc_minus5: None) -> None:
    got = parse_when("2024-03-01")
    assert got == datetime(2024, 3, 1, 5, 0, tzinfo=timezone.utc)
    assert got.tzinfo == timezone.utc


def test_parse_when_local_datetime_uses_machine_zone(local_utc_minus5: None) -> None:
    assert parse_when("2024-03-01T23:30") == datetime(2024, 3, 2, 4, 30, tzinfo=timezone.utc)
    assert parse_when("2024-03-01 23:30:15") == datetime(2024, 3, 2, 4, 30, 15,
                                                        tzinfo=timezone.utc)


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01", "30", "", "48 hours"])
def test_parse_when_rejects_bad_values(text: str) -> None:
    with pytest.raises(ValueError, match="neither a duration"):
        parse_when(text, now=NOW)


def test_parse_when_too_far_back_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="before year 1"):
        parse_when("99999999d", now=NOW)


def test_magento_format_round_trip() -> None:
    dt = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert to_magento(dt) == "2024-01-02 03:04:05"
    assert from_magento("2024-01-02 03:04:05") == dt
    # Magento sometimes appends fractions; the zone-less text is UTC
    assert from_magento("2024-01-02 03:04:05.000000") == dt


def test_to_magento_converts_other_zones_to_utc() -> None:
    dt = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert to_magento(dt) == "2024-01-02 01:04:05"


def test_iso_round_trip_keeps_microseconds() -> None:
    dt = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    text = to_iso(dt)
    assert text == "2024-01-02T03:04:05.678901Z"
    assert from_iso(text) == dt
    assert from_iso("2024-01-02T05:04:05+02:00") == datetime(2024, 1, 2, 3, 4, 5,
                                                            tzinfo=timezone.utc)
    assert from_iso("2024-01-02T03:04:05").tzinfo == timezone.utc
