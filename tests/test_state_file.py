"""The state file on disk (SPEC 5): magsync's own (application_id; other SQLite files are
refused untouched), checked on every open (a dropped table is exit 2 naming it), private
(0700/0600 whatever the umask, warnings for open ones even under -q), a lock file that is
never followed through a symlink, and read-only readers (``status``, ``check``,
``queue list``) that create, migrate and lock nothing and need no secrets."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from magsync.errors import EXIT_CONFIG, StateError
from magsync.sandbox.pair import SandboxPair
from magsync.state import SCHEMA_VERSION, StateStore
from magsync.state.integrity import APPLICATION_ID
from magsync.state.schema import MIGRATIONS
from magsync.state.store import read_state
from tests.helpers.cli import status_of

T0 = datetime(2024, 5, 1, 10, 30, tzinfo=timezone.utc)
T1 = datetime(2024, 6, 1, 8, 0, tzinfo=timezone.utc)
DAMAGED_FIX = ("(hint: magsync left it as it is: restore it from a backup, or move it away "
               "and run `magsync export-initial` to start a new one)")
MOVE_AWAY = ("(hint: point state.path (or $MAGSYNC_STATE) at another file, or move this one "
             "away)")

# Holds the run lock on argv[1] with a started, unfinished run until stdin closes.
HOLDER = """
import os, sys
from magsync.state import StateStore
from magsync.state.lock import StateLock
with StateLock(sys.argv[1], command="sync-background"):
    with StateStore.open(sys.argv[1]) as store:
        store.start_run("sync-background", pid=os.getpid())
    print("started", flush=True)
    sys.stdin.read()
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def files_of(directory: Path) -> dict[str, bytes]:
    """The state file and its companions in ``directory``, with their bytes."""
    return {p.name: p.read_bytes() for p in sorted(directory.glob("state.db*"))}


def requests_to(pair: SandboxPair) -> int:
    return len(pair.emarsys.requests()) + len(pair.magento.requests())


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


# -- magsync's own ---------------------------------------------------------------------------


def foreign_db(path: Path, application_id: int = 0) -> None:
    """Another application's SQLite database."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes (body) VALUES ('do not lose me')")
    if application_id:
        conn.execute(f"PRAGMA application_id = {application_id}")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(("application_id", "why"), [
    (0, "it holds tables that are not magsync's (notes)"),
    (0x0F055112, "it is an SQLite database of another application (application_id "
                 "0xf055112)"),
])
def test_another_applications_sqlite_file_is_refused_untouched(
        magsync: Any, pair: SandboxPair, tmp_path: Path, application_id: int,
        why: str) -> None:
    state = tmp_path / "state.db"
    foreign_db(state, application_id)
    before = files_of(tmp_path)
    expected = f"magsync: error: {state} is not a magsync state file: {why} {MOVE_AWAY}\n"
    for command in (["export-initial"], ["sync-realtime"], ["queue", "purge", "--yes"],
                    ["status"], ["queue", "list"]):
        result = magsync(*command)
        assert (result.code, result.err) == (EXIT_CONFIG, expected), command
    assert requests_to(pair) == 0  # nothing sent, not even read ...
    check = magsync("check")
    assert check.code == EXIT_CONFIG
    assert f"FAIL state file — {state} is not a magsync state file: {why}" in check.out
    after = files_of(tmp_path)
    after.pop("state.db.lock", None)  # the writing runs' lock, beside the file
    assert after == before  # ... and the file is exactly as it was


def test_a_new_state_file_carries_magsyncs_application_id(tmp_path: Path) -> None:
    StateStore.open(tmp_path / "state.db").close()
    conn = sqlite3.connect(tmp_path / "state.db")
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID == 0x6D616773
    conn.close()


# -- damage ----------------------------------------------------------------------------------


def test_a_dropped_table_is_exit_2_naming_it(magsync: Any, pair: SandboxPair,
                                             tmp_path: Path) -> None:
    assert magsync("export-initial").code == 0
    state = tmp_path / "state.db"
    conn = sqlite3.connect(state)
    conn.execute("DROP TABLE queue")
    conn.commit()
    conn.close()
    before = files_of(tmp_path)
    seen = requests_to(pair)
    expected = (f"magsync: error: state file {state} is damaged: table queue is missing "
                f"{DAMAGED_FIX}\n")
    for command in (["sync-realtime"], ["export-initial", "--restart"], ["pull-optin"],
                    ["status"], ["queue", "list"], ["status", "--json"]):
        result = magsync(*command)
        assert (result.code, result.out, result.err) == (EXIT_CONFIG, "", expected), command
    assert requests_to(pair) == seen  # stopped before any request
    check = magsync("check")
    assert check.code == EXIT_CONFIG
    assert f"FAIL state file — state file {state} is damaged: table queue is missing" \
        in check.out
    assert files_of(tmp_path) == before


def test_check_reads_the_whole_file(magsync: Any, tmp_path: Path) -> None:
    assert magsync("export-initial").code == 0
    state = tmp_path / "state.db"
    conn = sqlite3.connect(state)
    page = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'subscribers_email'"
                        ).fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with state.open("r+b") as f:  # a damaged index page: only quick_check reads it
        f.seek((page - 1) * size)
        f.write(b"\0" * 8)
    assert magsync("status").code == 0  # the cheap checks on every open pass
    check = magsync("check")
    assert check.code == EXIT_CONFIG
    line = next(x for x in check.out.splitlines() if x.startswith("FAIL state file"))
    assert line.startswith(f"FAIL state file — state file {state} is damaged: Page {page}: ")


def test_a_damaged_page_met_during_a_run_is_exit_2(config_file: Path) -> None:
    from magsync.cli.app import App

    app = App(config_path=str(config_file))
    with pytest.raises(StateError) as info, app.writing("sync-realtime"):
        raise sqlite3.DatabaseError("database disk image is malformed")
    assert str(info.value).startswith(f"state file {config_file.parent / 'state.db'} is "
                                      "damaged: database disk image is malformed")
    assert info.value.exit_code == EXIT_CONFIG


# -- private ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("umask_022")
def test_a_new_state_directory_and_its_files_are_private(magsync: Any, pair: SandboxPair,
                                                         tmp_path: Path) -> None:
    state = tmp_path / "new" / "dir" / "state.db"
    config = pair.write_config(tmp_path / "magsync.yaml", state)
    result = magsync("export-initial", config=config)
    assert (result.code, result.err) == (0, ""), result  # nothing to warn about
    assert mode(state.parent) == 0o700
    assert mode(state) == 0o600
    assert mode(Path(f"{state}.lock")) == 0o600
    with StateStore.open(state) as store:  # while open: SQLite's -wal and -shm
        store.set_meta("probe", "x")
        assert mode(Path(f"{state}-wal")) == 0o600
        assert mode(Path(f"{state}-shm")) == 0o600


def test_a_state_file_open_to_others_warns_even_under_q(magsync: Any, tmp_path: Path) -> None:
    assert magsync("export-initial").code == 0
    state = tmp_path / "state.db"
    tmp_path.chmod(0o755)
    state.chmod(0o644)
    result = magsync("-q", "sync-realtime")
    assert result.code == 0, result
    assert result.err.splitlines() == [
        f"magsync: WARNING: the state directory {tmp_path} is open to other users (mode "
        f"0755); it holds personal data: run chmod 700 {tmp_path}",
        f"magsync: WARNING: {state} is open to other users (mode 0644); it holds personal "
        f"data: run chmod 600 {state}"]
    assert mode(state) == 0o644  # a warning: magsync changes no one's permissions
    check = magsync("-q", "check")
    assert check.code == 0
    assert f"WARN state file private — {state} is open to other users (mode 0644)" in check.out


def test_the_lock_file_is_not_followed_through_a_symlink(magsync: Any, pair: SandboxPair,
                                                         tmp_path: Path) -> None:
    victim = tmp_path / "shared" / "important.txt"
    victim.parent.mkdir()
    victim.write_text("keep me\n")
    lock = tmp_path / "state.db.lock"
    lock.symlink_to(victim)
    result = magsync("export-initial")
    assert result.code == EXIT_CONFIG
    assert result.err == (f"magsync: error: the lock file {lock} is a symbolic link; magsync "
                          f"does not follow it (hint: remove it (rm {lock}): magsync creates "
                          "its own lock file)\n")
    assert victim.read_text() == "keep me\n"
    assert requests_to(pair) == 0


# -- read-only readers -----------------------------------------------------------------------


def old_schema_file(path: Path) -> None:
    """A state file as magsync's schema 1 left it (before the application id)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO runs (command, started_at, ended_at, outcome, exit_code, pid) "
                 "VALUES ('sync-realtime', '2024-05-01T10:30:00Z', '2024-05-01T10:31:00Z', "
                 "'ok', 0, 1)")
    conn.execute("INSERT INTO queue (key, email, queued_at, updated_at) VALUES "
                 "('c:7', 'q@example.com', '2024-05-01T10:30:00Z', '2024-05-01T10:30:00Z')")
    conn.commit()
    conn.close()
    path.chmod(0o600)


def test_readers_leave_an_old_schema_file_as_it_is(magsync: Any, tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    old_schema_file(state)
    before = files_of(tmp_path)
    note = (f"schema 1: the next writing command (sync-realtime, export-initial, ...) "
            f"migrates it to schema {SCHEMA_VERSION}")
    result = magsync("status")
    assert result.code == 0, result
    assert result.out.splitlines()[:2] == [f"state file: {state}",
                                           f"  needs a migration: {note}"]
    data = status_of(magsync)
    assert data["migration"] == note and data["schema_version"] == 1
    assert data["runs"]["sync-realtime"]["outcome"] == "ok"
    listed = magsync("queue", "list")
    assert listed.code == 0 and "q@example.com" in listed.out
    check = magsync("check")
    assert f"WARN state file — {state} needs a migration: {note}" in check.out
    # no migration, no -wal/-shm, no lock file: byte for byte as it was
    assert files_of(tmp_path) == before
    assert magsync("export-initial").code == 0  # the next writing command migrates it
    assert status_of(magsync)["migration"] is None


def test_status_reads_what_a_running_writer_committed(magsync: Any, tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "state.db") as writer:  # -wal and -shm exist now
        writer.set_watermark("sync-realtime", T0)
        watermarks = status_of(magsync)["watermarks"]
        assert watermarks == {"sync-realtime": "2024-05-01T10:30:00.000000Z"}


def test_a_read_during_which_a_run_checkpoints_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore.open(path) as store:
        store.set_watermark("w", T0)
    seen = []

    def read(store: StateStore) -> Any:
        seen.append(store.get_watermark("w"))
        if len(seen) == 1:  # a run starts, commits and ends meanwhile
            with StateStore.open(path) as writer:
                writer.set_watermark("w", T1)
        return store.get_watermark("w")

    assert read_state(path, read) == T1
    assert seen == [T0, T1]


def test_status_and_queue_list_need_no_secrets(magsync: Any, pair: SandboxPair,
                                               tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert magsync("export-initial").code == 0
    cfg = pair.config(tmp_path / "state.db")
    cfg["magento"]["auth"] = {key: f"${{MAGSYNC_TEST_{key.upper()}}}" for key in (
        "consumer_key", "consumer_secret", "access_token", "access_token_secret")}
    cfg["emarsys"]["auth"]["secret"] = "${MAGSYNC_TEST_EMARSYS_SECRET}"
    monitoring = tmp_path / "monitoring.yaml"
    monitoring.write_text(yaml.safe_dump(cfg))
    monkeypatch.delenv("MAGSYNC_TEST_EMARSYS_SECRET", raising=False)
    status = magsync("status", "--json", config=monitoring)
    assert status.code == 0, status
    assert json.loads(status.out)["runs"]["export-initial"]["outcome"] == "ok"
    assert magsync("queue", "list", config=monitoring).code == 0
    refused = magsync("sync-realtime", config=monitoring)  # the rest still validates all
    assert refused.code == EXIT_CONFIG
    assert "emarsys.auth.secret: environment variable MAGSYNC_TEST_EMARSYS_SECRET is not " \
           "set" in refused.err


def test_status_with_only_magsync_state(magsync: Any, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from magsync.cli import run

    assert magsync("export-initial").code == 0
    monkeypatch.chdir(tmp_path / "..")
    monkeypatch.delenv("MAGSYNC_CONFIG", raising=False)
    monkeypatch.setenv("MAGSYNC_STATE", str(tmp_path / "state.db"))
    capsys.readouterr()
    assert run(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"]["export-initial"]["outcome"] == "ok"


def test_status_tells_running_from_killed(magsync: Any, tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(state)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        assert status_of(magsync)["runs"]["sync-background"]["outcome"] == "running"
        proc.send_signal(signal.SIGKILL)  # dies without a word
        proc.wait(timeout=10)
        assert status_of(magsync)["runs"]["sync-background"]["outcome"] == "killed"
        assert magsync("sync-realtime").code != 75  # the lock is free again
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
    Path(f"{state}.lock").unlink()
    with StateStore.open(state) as store:
        store.start_run("pull-optin", pid=1)
    assert status_of(magsync)["runs"]["pull-optin"]["outcome"] == "killed"
    assert not Path(f"{state}.lock").exists()  # status never creates the lock file


def test_check_reports_a_state_directory_it_cannot_write(magsync: Any, pair: SandboxPair,
                                                         tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    config = pair.write_config(tmp_path / "c.yaml", blocker / "state.db")
    check = magsync("check", config=config)
    assert check.code == EXIT_CONFIG
    assert f"FAIL state directory — {blocker} is not a directory" in check.out


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any directory")
def test_check_reports_a_read_only_state_directory(magsync: Any, pair: SandboxPair,
                                                   tmp_path: Path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    config = pair.write_config(tmp_path / "c.yaml", locked / "state.db")
    try:
        check = magsync("check", config=config)
    finally:
        locked.chmod(0o700)
    assert check.code == EXIT_CONFIG
    assert f"FAIL state directory — the state directory {locked} is not writable by this " \
           "user" in check.out


def test_status_says_so_when_it_cannot_open_the_lock_file(magsync: Any, tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    with StateStore.open(state) as store:
        store.start_run("sync-background", pid=1)
    target = tmp_path / "elsewhere"
    target.write_text("x")
    Path(f"{state}.lock").symlink_to(target)  # never opened: nobody can tell
    outcome = status_of(magsync)["runs"]["sync-background"]["outcome"]
    assert outcome == "running or killed (the lock file cannot be read)"
    assert target.read_text() == "x"
