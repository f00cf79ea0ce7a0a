"""The run lock (magsync.statelock) across real processes: refused at once, waited for,
and released by the OS when the holder is killed."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from magsync.errors import EXIT_LOCKED, LockHeld, StateError
from magsync.state import StateStore
from magsync.state.lock import StateLock

# Holds the lock on argv[1] (as command argv[2]) until its stdin closes.
HOLDER = """
import sys
from magsync.state.lock import StateLock
with StateLock(sys.argv[1], command=sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.read()
"""

# Takes the lock with wait=argv[2] seconds; reports the outcome on stdout.
WAITER = """
import sys
from magsync.errors import LockHeld
from magsync.state.lock import StateLock
try:
    StateLock(sys.argv[1], wait=0).acquire()
    print("not refused", flush=True)
except LockHeld:
    print("refused", flush=True)
lock = StateLock(sys.argv[1], wait=float(sys.argv[2]), poll=0.05, command="waiter")
lock.acquire()
print("acquired", flush=True)
lock.release()
"""


def spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock on tmp_path/state.db."""
    proc = spawn(HOLDER, str(tmp_path / "state.db"), "sync-realtime")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked", proc.stderr
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def release(proc: subprocess.Popen[str]) -> None:
    """Let a HOLDER process end normally."""
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0


def test_refused_at_once_naming_the_holder(tmp_path: Path,
                                           holder: subprocess.Popen[str]) -> None:
    with pytest.raises(LockHeld) as info:
        StateLock(tmp_path / "state.db", wait=0).acquire()
    message = str(info.value)
    assert message.startswith(f"another magsync run holds the lock on {tmp_path}/state.db: "
                              f"pid {holder.pid} (sync-realtime), started 20")
    assert info.value.exit_code == EXIT_LOCKED == 75


def test_lock_file_names_the_holder(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    lock_file = tmp_path / "state.db.lock"
    info = json.loads(lock_file.read_text())
    assert info["pid"] == holder.pid and info["command"] == "sync-realtime"
    assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600


def test_state_store_still_readable_while_locked(tmp_path: Path,
                                                 holder: subprocess.Popen[str]) -> None:
    # status and check read the state file without the lock
    with StateStore.open(tmp_path / "state.db") as store:
        assert store.last_runs() == {}


def test_wait_succeeds_once_the_holder_ends(tmp_path: Path,
                                            holder: subprocess.Popen[str]) -> None:
    waiter = spawn(WAITER, str(tmp_path / "state.db"), "30")
    assert waiter.stdout is not None
    assert waiter.stdout.readline().strip() == "refused"
    time.sleep(0.3)  # let the waiter reach its wait loop (ordering only, nothing timed)
    assert waiter.poll() is None  # still waiting: the holder holds on
    release(holder)
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    assert out.strip() == "acquired"


def test_wait_gives_up_while_still_held(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    with pytest.raises(LockHeld, match=f"pid {holder.pid}"):
        StateLock(tmp_path / "state.db", wait=0.2, poll=0.05).acquire()
    assert holder.poll() is None


def test_sigkill_releases_the_lock(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    os.kill(holder.pid, signal.SIGKILL)
    assert holder.wait(timeout=10) == -signal.SIGKILL
    # the dead holder's note is still in the file, but the OS dropped its lock
    assert json.loads((tmp_path / "state.db.lock").read_text())["pid"] == holder.pid
    with StateLock(tmp_path / "state.db", wait=0, command="next-run"):
        info = json.loads((tmp_path / "state.db.lock").read_text())
        assert info["pid"] == os.getpid() and info["command"] == "next-run"


def test_release_lets_the_next_run_in_and_clears_the_note(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"  # the directory is created
    with StateLock(path, command="export-initial"), \
            pytest.raises(LockHeld, match=r"\(export-initial\)"):
        StateLock(path).acquire()  # a second open file description conflicts too
    assert (tmp_path / "sub" / "state.db.lock").read_text() == ""
    with StateLock(path):
        pass


def test_holder_that_ended_is_no_obstacle(tmp_path: Path,
                                          holder: subprocess.Popen[str]) -> None:
    release(holder)
    with StateLock(tmp_path / "state.db", wait=0):
        pass


def test_unwritable_lock_location_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError, match="cannot create lock file"):
        StateLock(blocker / "state.db").acquire()
