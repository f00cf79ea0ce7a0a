"""The state file: one SQLite database (WAL) and the lock beside it.

Everything magsync remembers between runs goes through ``StateStore``: run history,
watermarks, export checkpoints, what was last sent per contact, the subscriber mirror,
the mapping hash, the failsafe queue and reported problems. Writes happen inside
``atomic()``; the schema is versioned with ``PRAGMA user_version`` and migrated forward.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from magsync.errors import StateError
from magsync.state.base import clean_text
from magsync.state.contacts import ContactTables
from magsync.state.deletions import DeletionTables
from magsync.state.files import (
    create_private_file,
    ensure_private_dir,
    exposure_warnings,
    private_umask,
)
from magsync.state.integrity import (
    APPLICATION_ID,
    DAMAGED_FIX,
    MOVE_AWAY,
    FileInfo,
    examine,
)
from magsync.state.lists import ListTables
from magsync.state.queue import QueueTables
from magsync.state.schema import MIGRATIONS, SCHEMA_VERSION, split_sql
from magsync.util.timeutil import from_iso, to_iso, utcnow

T = TypeVar("T")


@dataclass(frozen=True)
class RunInfo:
    id: int
    command: str
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None
    exit_code: int | None
    counts: dict[str, Any]
    message: str | None
    pid: int | None = None


class StateStore(ContactTables, QueueTables, DeletionTables, ListTables):
    """The state file. Open with ``StateStore.open(path)`` to write (under the run lock),
    or read it with ``read_state(path, fn)``; close when done."""

    # -- opening ----------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, create: bool = True) -> StateStore:
        """Open (and create or migrate) the state file at ``path``, for a writing run.

        A new directory is 0700 and a new file 0600 (SQLite gives its -wal/-shm the
        file's mode); ``warnings`` lists existing ones open to other users. A file that is
        not magsync's, or is damaged, is refused (``StateError``) before anything is
        written to it.
        """
        p = Path(path).expanduser()
        if not p.exists() and not create:
            raise StateError(f"state file {p} does not exist")
        warnings = exposure_warnings(p)
        conn = _connect_private(p)
        store = cls(conn, p)
        store.warnings = warnings
        try:
            info = examine(conn, p)  # before any write: a refused file is left as it is
            with private_umask():
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            # freed rows are zeroed, never left in free space (erasure, SPEC 7)
            conn.execute("PRAGMA secure_delete=ON")
            store._migrate(info)
        except StateError:
            conn.close()
            raise
        except sqlite3.OperationalError as exc:
            # locked, read-only or unreachable: the file may be fine, so do not call it foreign
            conn.close()
            raise StateError(f"cannot use state file {p}: {exc}",
                             hint="check state.path (or $MAGSYNC_STATE) and the permissions of "
                                  "the file and its directory") from None
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StateError(f"{p} is not a magsync state file ({exc})", hint=MOVE_AWAY
                             ) from None
        return store

    @classmethod
    def open_readonly(cls, path: Path, *, immutable: bool = False) -> StateStore:
        """Open an existing state file read-only: no create, no migration, no lock.

        ``immutable`` reads the file alone, without SQLite's -wal/-shm (which a read-only
        connection otherwise creates beside a WAL file and cannot remove); only right when
        no -wal exists, see ``read_state``.
        """
        uri = f"file:{quote(str(path))}?mode=ro" + ("&immutable=1" if immutable else "")
        hint = ("check state.path (or $MAGSYNC_STATE) and that this user may read the file "
                "and its directory")
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise StateError(f"cannot read state file {path}: {exc}", hint=hint) from None
        try:
            info = examine(conn, path)
        except StateError:
            conn.close()
            raise
        except sqlite3.OperationalError as exc:
            conn.close()
            raise StateError(f"cannot read state file {path}: {exc}", hint=hint) from None
        store = cls(conn, path)
        store.info = info
        return store

    def _migrate(self, info: FileInfo) -> None:
        """Apply the missing migrations; each also stamps magsync's application id."""
        stamp = f"PRAGMA application_id = {APPLICATION_ID}"
        for target in range(info.version, SCHEMA_VERSION):
            with self.atomic() as conn:
                conn.execute(stamp)
                for statement in split_sql(MIGRATIONS[target]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target + 1}")
        if info.application_id != APPLICATION_ID:
            with self.atomic() as conn:  # a file made before magsync stamped its files
                conn.execute(stamp)
        self.info = FileInfo(APPLICATION_ID, SCHEMA_VERSION, empty=False)

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ---------------------------------------------------------------------------
    def start_run(self, command: str, started_at: datetime | None = None, pid: int = 0
                  ) -> int:
        with self.atomic() as c:
            cur = c.execute("INSERT INTO runs (command, started_at, pid) VALUES (?, ?, ?)",
                            (command, to_iso(started_at or utcnow()), pid))
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, *, outcome: str, exit_code: int,
                   counts: dict[str, Any], message: str | None = None) -> None:
        with self.atomic() as c:
            c.execute("UPDATE runs SET ended_at = ?, outcome = ?, exit_code = ?, counts = ?, "
                      "message = ? WHERE id = ?",
                      (to_iso(utcnow()), outcome, exit_code, json.dumps(counts),
                       clean_text(message), run_id))

    def last_runs(self) -> dict[str, RunInfo]:
        rows = self._query(_RUN_SELECT + " WHERE id IN (SELECT MAX(id) FROM runs GROUP BY "
                           "command) ORDER BY command")
        return {r[1]: _run_info(r) for r in rows}

    def recent_runs(self, limit: int = 20) -> list[RunInfo]:
        rows = self._query(_RUN_SELECT + " ORDER BY id DESC LIMIT ?", (limit,))
        return [_run_info(r) for r in rows]

    def last_success(self, command: str) -> datetime | None:
        """When ``command`` last ended having done its work (exit 0, or 1: some contacts
        failed and were queued), for ``health`` and the metrics."""
        rows = self._query("SELECT ended_at FROM runs WHERE command = ? AND exit_code IN "
                           "(0, 1) AND ended_at IS NOT NULL ORDER BY id DESC LIMIT 1",
                           (command,))
        return from_iso(rows[0][0]) if rows else None

    def runs_since(self, when: datetime) -> list[RunInfo]:
        """The runs that ended after ``when`` or have no end (running or killed), oldest
        first: what held the lock since then."""
        rows = self._query(_RUN_SELECT + " WHERE ended_at IS NULL OR ended_at > ? ORDER BY id",
                           (to_iso(when),))
        return [_run_info(r) for r in rows]

    # -- watermarks and checkpoints -----------------------------------------------------
    def get_watermark(self, name: str) -> datetime | None:
        rows = self._query("SELECT value FROM watermarks WHERE name = ?", (name,))
        return from_iso(rows[0][0]) if rows else None

    def set_watermark(self, name: str, value: datetime) -> None:
        with self.atomic() as c:
            c.execute("INSERT INTO watermarks (name, value, updated_at) VALUES (?, ?, ?) "
                      "ON CONFLICT(name) DO UPDATE SET value = excluded.value, "
                      "updated_at = excluded.updated_at",
                      (name, to_iso(value), to_iso(utcnow())))

    def watermarks(self) -> dict[str, datetime]:
        return {r[0]: from_iso(r[1]) for r in
                self._query("SELECT name, value FROM watermarks ORDER BY name")}

    def get_checkpoint(self, name: str) -> dict[str, Any] | None:
        rows = self._query("SELECT data FROM checkpoints WHERE name = ?", (name,))
        return json.loads(rows[0][0]) if rows else None

    def set_checkpoint(self, name: str, data: dict[str, Any]) -> None:
        with self.atomic() as c:
            c.execute("INSERT INTO checkpoints (name, data, updated_at) VALUES (?, ?, ?) "
                      "ON CONFLICT(name) DO UPDATE SET data = excluded.data, "
                      "updated_at = excluded.updated_at",
                      (name, json.dumps(data, sort_keys=True), to_iso(utcnow())))

    def clear_checkpoint(self, name: str) -> None:
        with self.atomic() as c:
            c.execute("DELETE FROM checkpoints WHERE name = ?", (name,))


_RUN_SELECT = ("SELECT id, command, started_at, ended_at, outcome, exit_code, counts, message, "
               "pid FROM runs")  # the columns _run_info reads


def _run_info(row: Sequence[Any]) -> RunInfo:
    return RunInfo(id=int(row[0]), command=row[1], started_at=from_iso(row[2]),
                   ended_at=from_iso(row[3]) if row[3] else None, outcome=row[4],
                   exit_code=row[5], counts=json.loads(row[6] or "{}"), message=row[7],
                   pid=row[8])


def _connect_private(p: Path) -> sqlite3.Connection:
    """A writing connection to ``p``; its directory (0700) and the file (0600) are created
    private when missing."""
    ensure_private_dir(p.parent)
    create_private_file(p)
    try:
        with private_umask():  # should SQLite create it (a dangling symlink): 0600 too
            return sqlite3.connect(str(p), timeout=30, isolation_level=None,
                                   check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise StateError(f"cannot open state file {p}: {exc}",
                         hint="check state.path (or $MAGSYNC_STATE) and the directory's "
                              "permissions") from None


def read_state(path: str | Path, read: Callable[[StateStore], T]) -> T | None:
    """``read(store)`` on the state file opened read-only; None when there is no file.

    A read-only SQLite connection to a WAL file creates the -wal and -shm files when they
    are missing (it needs the shared-memory index to see a writer's commits) and, being
    read-only, cannot remove them again. They are missing exactly when no connection is
    open and everything is in the main file, so then the file is read alone (SQLite's
    ``immutable``), and the read counts only if the main file did not change meanwhile (a
    run that started and checkpointed); otherwise, and whenever a -wal exists, the read
    goes through SQLite's normal read-only path, which then creates nothing.
    """
    p = Path(path).expanduser()
    if not p.exists():
        return None
    before = _quiet_file(p)
    if before is not None:
        try:
            result = _read_once(p, read, immutable=True)
        except StateError:
            if _quiet_file(p) == before:
                raise  # the file did not change: this is what it holds
        else:
            if _quiet_file(p) == before:
                return result
    return _read_once(p, read, immutable=False)


def _quiet_file(p: Path) -> tuple[int, int, int] | None:
    """Identity, size and mtime of a state file no connection has open (no -wal)."""
    if Path(f"{p}-wal").exists() or Path(f"{p}-shm").exists():
        return None
    try:
        st = p.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _read_once(p: Path, read: Callable[[StateStore], T], *, immutable: bool) -> T:
    store = StateStore.open_readonly(p, immutable=immutable)
    try:
        with store.snapshot():
            return read(store)
    except sqlite3.OperationalError as exc:
        note = store.info.migration_note() if store.info else None
        if note:
            raise StateError(f"cannot read state file {p} yet: it needs a migration ({note})"
                             ) from None
        raise StateError(f"cannot read state file {p}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise StateError(f"state file {p} is damaged: {exc}", hint=DAMAGED_FIX) from None
    finally:
        store.close()
