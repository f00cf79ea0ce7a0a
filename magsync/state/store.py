"""The state file: one SQLite database (WAL) and the lock beside it.

Everything magsync remembers between runs goes through ``StateStore``: run history,
watermarks, export checkpoints, what was last sent per contact, the subscriber mirror,
the mapping hash, the failsafe queue and reported problems. Writes happen inside
``atomic()``; the schema is versioned with ``PRAGMA user_version`` and migrated forward.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from magsync.errors import StateError
from magsync.state.contacts import ContactTables
from magsync.state.deletions import DeletionTables
from magsync.state.queue import QueueTables
from magsync.state.schema import MIGRATIONS, SCHEMA_VERSION, split_sql
from magsync.util.timeutil import from_iso, to_iso, utcnow


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


class StateStore(ContactTables, QueueTables, DeletionTables):
    """The state file. Open with ``StateStore.open(path)``; close when done."""

    # -- opening ----------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, create: bool = True) -> StateStore:
        """Open (and create or migrate) the state file at ``path``."""
        p = Path(path).expanduser()
        if not p.exists() and not create:
            raise StateError(f"state file {p} does not exist")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(p), timeout=30, isolation_level=None,
                                   check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open state file {p}: {exc}",
                             hint="check state.path (or $MAGSYNC_STATE) and the directory's "
                                  "permissions") from None
        store = cls(conn, p)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            # freed rows are zeroed, never left in free space (erasure, SPEC 7)
            conn.execute("PRAGMA secure_delete=ON")
            store._migrate()
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
            raise StateError(f"{p} is not a magsync state file ({exc})",
                             hint="point state.path (or $MAGSYNC_STATE) at another file, or "
                                  "move this one away") from None
        return store

    @classmethod
    def open_existing(cls, path: str | Path) -> StateStore | None:
        """Open for reading only if the file exists (``status``, ``check``)."""
        p = Path(path).expanduser()
        return cls.open(p) if p.exists() else None

    def _migrate(self) -> None:
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{self.path} was written by a newer magsync (schema {version}, this one "
                f"knows {SCHEMA_VERSION})", hint="upgrade magsync, or use another state.path")
        for target in range(version, SCHEMA_VERSION):
            with self.atomic() as conn:
                for statement in split_sql(MIGRATIONS[target]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target + 1}")

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
                      (to_iso(utcnow()), outcome, exit_code, json.dumps(counts), message,
                       run_id))

    def last_runs(self) -> dict[str, RunInfo]:
        rows = self._query(
            "SELECT id, command, started_at, ended_at, outcome, exit_code, counts, message "
            "FROM runs WHERE id IN (SELECT MAX(id) FROM runs GROUP BY command) ORDER BY command")
        return {r[1]: _run_info(r) for r in rows}

    def recent_runs(self, limit: int = 20) -> list[RunInfo]:
        rows = self._query(
            "SELECT id, command, started_at, ended_at, outcome, exit_code, counts, message "
            "FROM runs ORDER BY id DESC LIMIT ?", (limit,))
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


def _run_info(row: Sequence[Any]) -> RunInfo:
    return RunInfo(id=int(row[0]), command=row[1], started_at=from_iso(row[2]),
                   ended_at=from_iso(row[3]) if row[3] else None, outcome=row[4],
                   exit_code=row[5], counts=json.loads(row[6] or "{}"), message=row[7])
