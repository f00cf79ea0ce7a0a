"""``magsync health [--json]`` (SPEC sections 1 and 9): exit 0 when every scheduled command
last succeeded within its interval plus a grace, no contact became dead in the last day and
nothing waits in the queue for more than 2 days; else exit 1 with one line per problem.
Lock time of other runs does not count; it runs without the secrets' variables."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from magsync.sandbox.pair import SandboxPair
from magsync.state import StateStore
from magsync.state.lock import StateLock
from magsync.util.timeutil import to_iso


def now() -> datetime:
    return datetime.now(timezone.utc)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config whose secrets come from variables that are NOT set (a monitoring user)."""
    for name in ("HX_TOKEN", "HX_USER", "HX_SECRET", "MAGSYNC_STATE", "MAGSYNC_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "magsync.yaml"
    path.write_text(yaml.safe_dump({
        "magento": {"base_url": "https://shop.example.com",
                    "auth": {"method": "bearer", "token": "${HX_TOKEN}"}},
        "emarsys": {"auth": {"username": "${HX_USER}", "secret": "${HX_SECRET}"}},
        "state": {"path": str(tmp_path / "state.db")}}))
    return path


def add_run(state: Path, command: str, started: timedelta, ended: timedelta | None,
            exit_code: int | None = 0) -> None:
    """A run in the history, ``started``/``ended`` that long ago (``ended`` None: no end)."""
    StateStore.open(state).close()
    at = now()
    with sqlite3.connect(state) as conn:
        conn.execute("INSERT INTO runs (command, started_at, ended_at, outcome, exit_code) "
                     "VALUES (?, ?, ?, ?, ?)",
                     (command, to_iso(at - started), to_iso(at - ended) if ended else None,
                      None if ended is None else "ok" if exit_code == 0 else "failed",
                      exit_code))


def all_recent(state: Path) -> None:
    for command in ("sync-realtime", "pull-optin", "sync-background"):
        add_run(state, command, timedelta(minutes=3), timedelta(minutes=2))


def health(magsync: Any, config: Path, *args: str) -> Any:
    return magsync("health", *args, config=config)


def test_no_state_file_is_unhealthy(magsync: Any, config: Path, tmp_path: Path) -> None:
    r = health(magsync, config)
    assert r.code == 1
    assert r.out == f"state file {tmp_path / 'state.db'} does not exist: magsync has not " \
                    "run yet\n"


def test_healthy_without_the_secret_variables(magsync: Any, config: Path,
                                              tmp_path: Path) -> None:
    all_recent(tmp_path / "state.db")
    r = health(magsync, config)
    assert r.code == 0, r
    assert r.out.startswith("healthy: last success sync-realtime 2 min ago, pull-optin 2 min "
                            "ago, sync-background 2 min ago; queue 0 queued, 0 dead")
    assert r.err == ""
    data = json.loads(health(magsync, config, "--json").out)
    assert data["healthy"] is True and data["problems"] == []
    assert [c["command"] for c in data["commands"]] == ["sync-realtime", "pull-optin",
                                                        "sync-background"]


def test_a_stale_command_is_one_line_and_exit_1(magsync: Any, config: Path,
                                                tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    all_recent(state)
    add_run(state, "sync-realtime", timedelta(minutes=21), timedelta(minutes=20))
    add_run(state, "sync-realtime", timedelta(minutes=4), timedelta(minutes=3), exit_code=3)
    add_run(state, "sync-background", timedelta(hours=30), timedelta(hours=29))
    add_run(state, "sync-background", timedelta(minutes=1), timedelta(minutes=1),
            exit_code=1)  # exit 1 counts: it did its work
    r = health(magsync, config)
    assert r.code == 1
    lines = r.out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("sync-realtime last succeeded ")
    # the other commands' runs of 3 to 2 minutes ago held the lock: 19 minutes count
    assert lines[0].endswith(", 19 min ago (limit 15 min; 1 min while other runs held the "
                             "lock not counted)")


def test_quiet_does_not_hide_what_health_prints(magsync: Any, config: Path, tmp_path: Path
                                            ) -> None:
    add_run(tmp_path / "state.db", "sync-realtime", timedelta(hours=1),
            timedelta(minutes=59))
    r = magsync("-q", "health", config=config)
    assert r.code == 1
    assert "pull-optin has never succeeded (limit 26.0 h); it has never run" in r.out
    assert "sync-realtime last succeeded" in r.out


def test_only_the_commands_the_mode_schedules(magsync: Any, config: Path,
                                              tmp_path: Path) -> None:
    text = config.read_text() + "sync: {mode: background-only}\n"
    config.write_text(text)
    state = tmp_path / "state.db"
    for command in ("pull-optin", "sync-background"):
        add_run(state, command, timedelta(hours=20), timedelta(hours=19))
    r = health(magsync, config, "--json")
    assert r.code == 0, r
    assert [c["command"] for c in json.loads(r.out)["commands"]] == ["pull-optin",
                                                                     "sync-background"]


def test_time_another_run_held_the_lock_does_not_count(magsync: Any, config: Path,
                                                       tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    all_recent(state)
    add_run(state, "sync-realtime", timedelta(minutes=61), timedelta(minutes=60))
    # a 50-minute sync-background, then an export that began 8 minutes ago and is gone
    add_run(state, "sync-background", timedelta(minutes=58), timedelta(minutes=8))
    add_run(state, "export-initial", timedelta(minutes=8), timedelta(minutes=3))
    r = health(magsync, config, "--json")
    data = json.loads(r.out)
    realtime = data["commands"][0]
    assert r.code == 0, data["problems"]
    # 50 + 5 minutes, and the other two commands' minute (3 to 2 minutes ago)
    assert realtime["locked_by_other_runs_seconds"] == pytest.approx(56 * 60, abs=2)
    assert realtime["age_seconds"] == pytest.approx(4 * 60, abs=2)


def test_a_run_without_an_end_counts_while_it_holds_the_lock(magsync: Any, config: Path,
                                                             tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    all_recent(state)
    add_run(state, "sync-realtime", timedelta(minutes=40), timedelta(minutes=39))
    add_run(state, "export-initial", timedelta(minutes=35), None)  # still running, or killed
    # killed (the lock is free): nothing shows when it died, so it covers nothing
    r = health(magsync, config)
    assert r.code == 1 and "sync-realtime last succeeded" in r.out
    with StateLock(state, command="export-initial"):  # still running: until now
        assert health(magsync, config).code == 0
    # a later run started, so the earlier one had ended by then
    add_run(state, "pull-optin", timedelta(minutes=10), timedelta(minutes=9))
    r = health(magsync, config, "--json")
    realtime = json.loads(r.out)["commands"][0]
    # the export until pull-optin began (25 min), pull-optin's minute, and the minute of
    # the other commands' runs of 3 to 2 minutes ago
    assert realtime["locked_by_other_runs_seconds"] == pytest.approx(27 * 60, abs=2)


def test_dead_and_old_queued_contacts(magsync: Any, config: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    all_recent(state)
    with StateStore.open(state) as store:
        store.enqueue("c:1", "a@example.com", "rejected", max_attempts=1)  # dead now
        store.enqueue("c:2", "b@example.com", "rejected", max_attempts=10)
        store.enqueue("c:3", "c@example.com", "rejected", max_attempts=10)
    three_days_ago = to_iso(now() - timedelta(days=3))
    with sqlite3.connect(state) as conn:
        conn.execute("UPDATE queue SET queued_at = ? WHERE key = 'c:2'", (three_days_ago,))
    r = health(magsync, config)
    assert r.code == 1
    assert r.out.splitlines() == [
        "1 contact(s) became dead in the last 24 hours (Emarsys kept rejecting them): see "
        "`magsync queue list --dead`",
        f"1 queued contact(s) have waited longer than 2 days (the oldest since "
        f"{three_days_ago[:19]}Z): see `magsync queue list`"]
    with sqlite3.connect(state) as conn:  # a day later the dead contact is old news
        conn.execute("UPDATE queue SET updated_at = ? WHERE key = 'c:1'",
                     (to_iso(now() - timedelta(hours=25)),))
        conn.execute("DELETE FROM queue WHERE key = 'c:2'")
    assert health(magsync, config).code == 0


def test_health_after_real_runs(magsync: Any, pair: SandboxPair, tmp_path: Path) -> None:
    config = pair.write_config(tmp_path / "magsync.yaml", tmp_path / "state.db")
    for command in ("export-initial", "sync-realtime", "pull-optin", "sync-background"):
        assert magsync(command, config=config).code == 0
    r = magsync("health", config=config)
    assert r.code == 0 and r.out.startswith("healthy: "), r
    assert magsync("sync-realtime", "--dry-run", config=config).code == 0
    assert magsync("health", config=config).code == 0
