"""The run lock: one writing magsync run per state file.

An exclusive ``fcntl`` lock on a sidecar file (``state.db.lock``). The OS releases it when
the holder dies, even under ``kill -9``, so a stale lock never blocks cron. The holder
writes its pid, command and start time into the file so the refused run can name it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from magsync.errors import LockHeld, StateError
from magsync.util.timeutil import to_iso, utcnow


class StateLock:
    """``with StateLock(path, wait=0, command="sync-realtime"):`` holds the lock."""

    def __init__(self, state_path: str | Path, *, wait: float = 0.0, command: str = "",
                 poll: float = 0.2) -> None:
        self.path = Path(str(Path(state_path).expanduser()) + ".lock")
        self.wait = max(0.0, wait)
        self.command = command
        self.poll = poll
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, waiting up to ``wait`` seconds; raise ``LockHeld`` otherwise."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(f"cannot create lock file {self.path}: {exc.strerror}") from None
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
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            info = {}
        if not info:
            return "holder unknown"
        what = f" ({info['command']})" if info.get("command") else ""
        return f"pid {info.get('pid')}{what}, started {info.get('started_at')}"

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
