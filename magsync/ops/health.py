"""``magsync health``: is the sync healthy? For Nagios/monit checks and systemd
``OnFailure=`` units (SPEC sections 1 and 9), answered from the state file alone.

Healthy when every command that ``sync.mode`` schedules last succeeded (exit 0, or 1:
it ran, and the contacts that failed are queued) within its interval plus a grace
(sync-realtime 15 minutes, the daily commands 26 hours), no contact became dead in the
last 24 hours, and no queued contact waits longer than 2 days.

Time during which another run held the lock does not count: a long export or a daily
sync-background makes every minutely sync-realtime exit 75, and those skipped minutes
leave no trace in the run history. What the history does hold is every run that had the
lock, with its start and end, so the time covered by runs of *other* commands since the
checked command's last success is left out of its age. A run with no end (running, or
killed) covers the time until the next run started, or until now while the lock is
still held.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from magsync.state import StateStore
from magsync.state.store import RunInfo
from magsync.util.timeutil import to_iso, to_iso_seconds

REALTIME_GRACE = timedelta(minutes=15)
DAILY_GRACE = timedelta(hours=26)
DEAD_WINDOW = timedelta(hours=24)
MAX_QUEUE_AGE = timedelta(days=2)


def scheduled_commands(mode: str) -> dict[str, timedelta]:
    """The commands ``magsync crontab`` schedules in this mode, each with its limit."""
    daily = {"pull-optin": DAILY_GRACE, "sync-background": DAILY_GRACE}
    return {"sync-realtime": REALTIME_GRACE, **daily} if mode == "realtime-failsafe" \
        else daily


@dataclass(frozen=True)
class CommandHealth:
    """One scheduled command: its last success and how old it is, lock time excluded."""

    command: str
    limit: timedelta
    last_success: datetime | None
    age: timedelta | None  # since the last success, minus the time others held the lock
    locked: timedelta  # what was left out

    @property
    def ok(self) -> bool:
        return self.age is not None and self.age <= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {"command": self.command, "ok": self.ok,
                "last_success": to_iso(self.last_success) if self.last_success else None,
                "age_seconds": round(self.age.total_seconds()) if self.age is not None else None,
                "limit_seconds": round(self.limit.total_seconds()),
                "locked_by_other_runs_seconds": round(self.locked.total_seconds())}


def check_health(store: StateStore | None, mode: str, state_path: Path, now: datetime, *,
                 lock_held: bool) -> dict[str, Any]:
    """The health report: ``healthy``, one line per problem, and the figures behind it."""
    if store is None:
        problem = f"state file {state_path} does not exist: magsync has not run yet"
        return {"healthy": False, "problems": [problem], "commands": [], "queue": {},
                "state_path": str(state_path)}
    commands = [command_health(store, cmd, limit, now, lock_held=lock_held)
                for cmd, limit in scheduled_commands(mode).items()]
    stale = [c for c in commands if not c.ok]
    last_runs = store.last_runs() if stale else {}
    problems = [_stale_line(c, last_runs.get(c.command)) for c in stale]
    dead = store.count_queue(dead=True, updated_since=now - DEAD_WINDOW)
    old = store.count_queue(dead=False, queued_before=now - MAX_QUEUE_AGE)
    if dead:
        problems.append(f"{dead} contact(s) became dead in the last 24 hours (Emarsys kept "
                        "rejecting them): see `magsync queue list --dead`")
    if old:
        oldest = store.oldest_queued_at()
        since = f" (the oldest since {to_iso_seconds(oldest)})" if oldest else ""
        problems.append(f"{old} queued contact(s) have waited longer than 2 days{since}: see "
                        "`magsync queue list`")
    return {"healthy": not problems, "problems": problems,
            "commands": [c.as_dict() for c in commands],
            "queue": {**store.queue_counts(), "dead_last_24h": dead,
                      "older_than_2_days": old},
            "state_path": str(state_path)}


def command_health(store: StateStore, command: str, limit: timedelta, now: datetime, *,
                   lock_held: bool) -> CommandHealth:
    """How long ago ``command`` last succeeded, not counting other runs' lock time."""
    last = store.last_success(command)
    if last is None:
        return CommandHealth(command, limit, None, None, timedelta(0))
    locked = locked_time(store.runs_since(last), command, last, now, lock_held=lock_held)
    return CommandHealth(command, limit, last, max(timedelta(0), now - last - locked), locked)


def locked_time(runs: list[RunInfo], command: str, since: datetime, now: datetime, *,
                lock_held: bool) -> timedelta:
    """The time in ``[since, now]`` during which runs of other commands held the lock
    (``runs``: oldest first; overlapping intervals counted once)."""
    spans: list[tuple[datetime, datetime]] = []
    for i, run in enumerate(runs):
        if run.command == command:
            continue
        end = run.ended_at
        if end is None:  # running, or killed: until the next run began (it had the lock)
            later = runs[i + 1].started_at if i + 1 < len(runs) else None
            end = later or (now if lock_held else run.started_at)
        start, end = max(run.started_at, since), min(end, now)
        if end > start:
            spans.append((start, end))
    total = timedelta(0)
    cursor = since
    for start, end in sorted(spans):
        start = max(start, cursor)
        if end > start:
            total += end - start
            cursor = end
    return total


def _stale_line(c: CommandHealth, last: RunInfo | None) -> str:
    """Why ``c`` is not healthy; ``last``: its last run, for one that never succeeded."""
    limit = _span(c.limit)
    if c.last_success is None:
        tail = (f"; its last run started {to_iso_seconds(last.started_at)} and ended "
                f"{_outcome(last)}" if last else "; it has never run")
        return f"{c.command} has never succeeded (limit {limit}){tail}"
    locked = (f"; {_span(c.locked)} while other runs held the lock not counted"
              if c.locked else "")
    assert c.age is not None
    return (f"{c.command} last succeeded {to_iso_seconds(c.last_success)}, {_span(c.age)} ago "
            f"(limit {limit}{locked})")


def _outcome(run: RunInfo) -> str:
    if run.ended_at is None:
        return "never (still running, or killed)"
    return f"with exit {run.exit_code} ({run.outcome}: {run.message or 'no message'})"


def _span(delta: timedelta) -> str:
    minutes = delta.total_seconds() / 60
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"


def summary_line(report: dict[str, Any]) -> str:
    """The one line of a healthy report."""
    parts = [f"{c['command']} {_span(timedelta(seconds=c['age_seconds'] or 0))} ago"
             for c in report["commands"]]
    q = report["queue"]
    return (f"healthy: last success {', '.join(parts)}; queue {q.get('queued', 0)} queued, "
            f"{q.get('dead', 0)} dead")
