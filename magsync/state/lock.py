"""The run lock: one writing magsync run per state file.

An exclusive ``flock`` on a sidecar file (``state.db.lock``, 0600, never followed through
a symbolic link). The OS releases it when the holder dies, even under ``kill -9``, so a
stale lock never blocks cron. The holder writes its pid, command and start time into the
file so the refused run can name it, and ``status`` can tell a running run from a killed
one (``probe_lock``).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from magsync.errors import LockHeld, StateError
from magsync.state.files import ensure_private_dir, private_umask
from magsync.util.timeutil import to_iso, utcnow

# never through a symbolic link (a shared directory could point it at any file), and
# not inherited by child processes
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC


def lock_path(state_path: str | Path) -> Path:
    """The lock file beside a state file."""
    return Path(str(Path(state_path).expanduser()) + ".lock")


class StateLock:
    """``with StateLock(path, wait=0, command="sync-realtime"):`` holds the lock."""

    def __init__(self, state_path: str | Path, *, wait: float = 0.0, command: str = "",
                 poll: float = 0.2) -> None:
        self.path = lock_path(state_path)
        self.wait = max(0.0, wait)
        self.command = command
        self.poll = poll
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, waiting up to ``wait`` seconds; raise ``LockHeld`` otherwise."""
        fd = self._open()
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self._describe_holder(fd)
                    os.close(fd)
                    raise LockHeld(f"another magsync run holds the lock on {self.path.parent}"
                                   f"/{self.path.stem}: {holder}") from None
                time.sleep(min(self.poll, max(0.0, deadline - time.monotonic())) or 0.01)
        info = {"pid": os.getpid(), "command": self.command, "started_at": to_iso(utcnow())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def _open(self) -> int:
        """The lock file, created 0600 whatever the umask; a symbolic link is refused."""
        if not self.path.parent.exists():
            ensure_private_dir(self.path.parent)
        try:
            with private_umask():
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StateError(f"the lock file {self.path} is a symbolic link; magsync does "
                                 "not follow it", hint=f"remove it (rm {self.path}): magsync "
                                 "creates its own lock file") from None
            raise StateError(f"cannot create lock file {self.path}: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StateError(f"the lock file {self.path} is not a regular file",
                             hint="move it away: magsync creates its own lock file")
        return fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    @staticmethod
    def _describe_holder(fd: int) -> str:
        info = _read_holder(fd)
        if not info:
            return "holder unknown"
        what = f" ({info['command']})" if info.get("command") else ""
        return f"pid {info.get('pid')}{what}, started {info.get('started_at')}"

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def probe_lock(state_path: str | Path) -> dict[str, Any] | None:
    """Who holds the run lock now (pid, command, started_at), or None when nobody does.

    For ``status``: tries the lock without waiting and releases it at once, and never
    creates the lock file (none means no run ever held it, or it was removed). A lock file
    this user may not open raises ``OSError``: then nobody can tell.
    """
    try:
        fd = os.open(lock_path(state_path), os.O_RDONLY | _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _read_holder(fd)
            return info if isinstance(info, dict) else {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_holder(fd: int) -> Any:
    """The JSON the holder wrote into the lock file ({} when none can be read)."""
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
