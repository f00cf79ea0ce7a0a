"""The state file's place on disk: a private directory (0700) and private files (0600),
whatever the umask, and warnings for existing ones that are open to other users.

The state file holds personal data (every email and sent value). Files and directories are
created private from the start (a tightened umask around their creation), never chmod-ed
afterwards: there is no moment in which another user could open them.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from magsync.errors import StateError

PRIVATE_UMASK = 0o077
COMPANIONS = ("-wal", "-shm", ".lock")  # what SQLite and the run lock put beside the file
# O_EXCL and O_NOFOLLOW: never into a file that exists, nor through a symbolic link (a
# shared directory could point it anywhere); O_CLOEXEC: no child process inherits it
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_umask_lock = threading.Lock()


@contextmanager
def private_umask() -> Iterator[None]:
    """Files and directories created inside are for their owner only (umask 077).

    The umask is per process: keep the block short (it is taken before a run's threads
    start, and only around the creation of the state file, its directory and its lock).
    """
    with _umask_lock:
        old = os.umask(PRIVATE_UMASK)
        try:
            yield
        finally:
            os.umask(old)


def ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` (0700) and any missing parents; an existing one is kept as is."""
    if directory.is_dir():
        return
    try:
        if not directory.parent.is_dir():
            directory.parent.mkdir(parents=True, exist_ok=True)  # parents: the usual mode
        with private_umask():
            directory.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise StateError(f"cannot create the state directory {directory}: {exc.strerror}",
                         hint="check state.path (or $MAGSYNC_STATE) and the permissions of "
                              "its parent directory") from None


def open_new_private(path: Path) -> int:
    """A descriptor of the file ``path`` created now (0600, less what the umask takes
    away); ``FileExistsError`` when it exists or is a symbolic link."""
    return os.open(path, _NEW_FILE, 0o600)


@contextmanager
def private_writer(fd: int) -> Iterator[TextIO]:
    """The new file ``fd`` (``open_new_private``) to write text into, closed after."""
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(fd, 0o600)  # the umask may have taken bits away, never added: be exact
        yield f


def create_private_file(path: Path) -> bool:
    """Create an empty file (0600) unless it exists; True when this call created it."""
    try:
        with private_umask():
            fd = open_new_private(path)
    except FileExistsError:
        return False
    except OSError as exc:
        raise StateError(f"cannot create state file {path}: {exc.strerror}",
                         hint="check state.path (or $MAGSYNC_STATE) and the directory's "
                              "permissions") from None
    os.close(fd)
    return True


def exposure_warnings(path: Path) -> list[str]:
    """One warning for each of the state directory, the file and its companions that other
    users may open (a directory: list or write; a file: any access)."""
    warnings = []
    directory = path.parent
    mode = _mode(directory)
    if mode is not None and mode & 0o066:
        warnings.append(f"the state directory {directory} is open to other users (mode "
                        f"{mode:04o}); it holds personal data: run chmod 700 {directory}")
    for candidate in (path, *(Path(f"{path}{suffix}") for suffix in COMPANIONS)):
        mode = _mode(candidate)
        if mode is not None and mode & 0o077:
            warnings.append(f"{candidate} is open to other users (mode {mode:04o}); it holds "
                            f"personal data: run chmod 600 {candidate}")
    return warnings


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.lstat().st_mode)
    except OSError:
        return None


def unwritable_reason(path: Path) -> str | None:
    """Why a writing run could not create or use the state file at ``path`` (None: it
    can): the directory (or the first existing parent to create it in) must be writable,
    and an existing file too."""
    directory = path.parent
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    if not directory.is_dir():
        return f"{directory} is not a directory"
    if not os.access(directory, os.W_OK | os.X_OK):
        return (f"the state directory {directory} is not writable by this user (a run "
                "creates the state file, its -wal/-shm and its lock there)")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f"{path} is not readable and writable by this user"
    return None
