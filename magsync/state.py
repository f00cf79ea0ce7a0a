"""The state file: one SQLite database (WAL) and the lock beside it.

Everything magsync remembers between runs goes through this module: run history,
watermarks, export checkpoints, what was last sent per contact, the subscriber mirror,
the mapping hash, the failsafe queue and reported problems. Writes happen inside
``atomic()``; the schema is versioned with ``PRAGMA user_version`` and migrated forward.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from magsync.errors import StateError
from magsync.model import ContactRecord, MirrorRow
from magsync.statelock import StateLock
from magsync.util import jsoncodec
from magsync.util.timeutil import from_iso, to_iso, utcnow

__all__ = ["ContactRecord", "MirrorRow", "QueueItem", "RunInfo", "StateLock", "StateStore"]

# Each entry migrates from version i to i + 1.
_MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, command TEXT NOT NULL,
        started_at TEXT NOT NULL, ended_at TEXT, outcome TEXT, exit_code INTEGER,
        counts TEXT NOT NULL DEFAULT '{}', message TEXT, pid INTEGER);
    CREATE INDEX runs_command ON runs (command, id);
    CREATE TABLE watermarks (name TEXT PRIMARY KEY, value TEXT NOT NULL,
        updated_at TEXT NOT NULL);
    CREATE TABLE checkpoints (name TEXT PRIMARY KEY, data TEXT NOT NULL,
        updated_at TEXT NOT NULL);
    CREATE TABLE contacts (
        key TEXT PRIMARY KEY, customer_id INTEGER, subscriber_id INTEGER, email TEXT,
        emarsys_id TEXT, sent TEXT NOT NULL DEFAULT '{}', lists TEXT NOT NULL DEFAULT '[]',
        updated_at TEXT NOT NULL);
    CREATE INDEX contacts_subscriber ON contacts (subscriber_id);
    CREATE INDEX contacts_email ON contacts (email);
    CREATE TABLE subscribers (
        subscriber_id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL DEFAULT 0,
        email TEXT NOT NULL, status INTEGER NOT NULL, website_id INTEGER,
        store_id INTEGER, seen_at TEXT NOT NULL);
    CREATE INDEX subscribers_customer ON subscribers (customer_id);
    CREATE TABLE queue (
        key TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'sync', email TEXT,
        attempts INTEGER NOT NULL DEFAULT 1, last_error TEXT,
        queued_at TEXT NOT NULL, updated_at TEXT NOT NULL, dead INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (key, kind));
    CREATE TABLE reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER, kind TEXT NOT NULL,
        key TEXT, detail TEXT NOT NULL, at TEXT NOT NULL);
    CREATE INDEX reports_run ON reports (run_id);
    """,
    # 2: find guest subscribers by email (a new customer may be a guest who registered)
    """
    CREATE INDEX subscribers_email ON subscribers (email COLLATE NOCASE);
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)


@dataclass(frozen=True)
class QueueItem:
    key: str
    kind: str
    email: str | None
    attempts: int
    last_error: str | None
    queued_at: datetime
    dead: bool


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


class StateStore:
    """The state file. Open with ``StateStore.open(path)``; close when done."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0

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
                for statement in _split_sql(_MIGRATIONS[target]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target + 1}")

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """One transaction (nested calls join the outer one)."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._conn
            except BaseException:
                self._depth = 0
                self._conn.execute("ROLLBACK")
                raise
            self._depth = 0
            self._conn.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._conn.execute(sql, args)
            return list(cur.fetchall())

    # -- meta ---------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.atomic() as c:
            c.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) "
                      "DO UPDATE SET value = excluded.value", (key, value))

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

    # -- contacts -----------------------------------------------------------------------
    def get_contacts(self, keys: Iterable[str]) -> dict[str, ContactRecord]:
        """Records for the given keys (missing keys are absent from the result)."""
        out: dict[str, ContactRecord] = {}
        key_list = list(dict.fromkeys(keys))
        for i in range(0, len(key_list), 500):
            chunk = key_list[i:i + 500]
            marks, args = _in_list(chunk)
            for row in self._query(
                    "SELECT key, customer_id, subscriber_id, email, emarsys_id, sent, lists "
                    f"FROM contacts WHERE key IN ({marks})", args):
                out[row[0]] = _contact(row)
        return out

    def get_contact(self, key: str) -> ContactRecord | None:
        return self.get_contacts([key]).get(key)

    def find_contact_by_subscriber(self, subscriber_id: int) -> ContactRecord | None:
        rows = self._query(
            "SELECT key, customer_id, subscriber_id, email, emarsys_id, sent, lists "
            "FROM contacts WHERE subscriber_id = ? ORDER BY key LIMIT 1", (subscriber_id,))
        return _contact(rows[0]) if rows else None

    def save_contacts(self, records: Iterable[ContactRecord]) -> None:
        """Insert or replace records (call inside ``atomic()`` to group with other writes)."""
        now = to_iso(utcnow())
        rows = [(r.key, r.customer_id, r.subscriber_id, r.email, r.emarsys_id,
                 jsoncodec.dumps_text(r.sent, sort_keys=True), _lists_json(r.lists), now)
                for r in records]
        with self.atomic() as c:
            c.executemany(
                "INSERT INTO contacts (key, customer_id, subscriber_id, email, emarsys_id, "
                "sent, lists, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET customer_id = excluded.customer_id, "
                "subscriber_id = excluded.subscriber_id, email = excluded.email, "
                "emarsys_id = COALESCE(excluded.emarsys_id, contacts.emarsys_id), "
                "sent = excluded.sent, lists = excluded.lists, "
                "updated_at = excluded.updated_at", rows)

    def delete_contacts(self, keys: Iterable[str]) -> None:
        with self.atomic() as c:
            c.executemany("DELETE FROM contacts WHERE key = ?", [(k,) for k in keys])

    def count_contacts(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM contacts")[0][0])

    def iter_contact_keys(self) -> list[str]:
        return [r[0] for r in self._query("SELECT key FROM contacts ORDER BY key")]

    # -- subscriber mirror ----------------------------------------------------------------
    def replace_mirror(self, rows: Iterable[MirrorRow], seen_at: datetime | None = None
                       ) -> int:
        """Replace the whole mirror with a fresh full read; returns the row count."""
        stamp = to_iso(seen_at or utcnow())
        count = 0

        def data() -> Iterator[tuple[Any, ...]]:
            nonlocal count
            for r in rows:  # streamed: memory stays flat however many subscribers
                count += 1
                yield (r.subscriber_id, r.customer_id, r.email, r.status, r.website_id,
                       r.store_id, stamp)

        with self.atomic() as c:
            c.execute("DELETE FROM subscribers")
            c.executemany("INSERT OR REPLACE INTO subscribers (subscriber_id, customer_id, "
                          "email, status, website_id, store_id, seen_at) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?)", data())
            self.set_meta("mirror_read_at", stamp)
        return count

    def upsert_mirror(self, rows: Iterable[MirrorRow]) -> None:
        """Update single mirror rows (after pull-optin wrote them into Magento)."""
        stamp = to_iso(utcnow())
        with self.atomic() as c:
            c.executemany("INSERT OR REPLACE INTO subscribers (subscriber_id, customer_id, "
                          "email, status, website_id, store_id, seen_at) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?)",
                          [(r.subscriber_id, r.customer_id, r.email, r.status, r.website_id,
                            r.store_id, stamp) for r in rows])

    def mirror_read_at(self) -> datetime | None:
        value = self.get_meta("mirror_read_at")
        return from_iso(value) if value else None

    def mirror_for_customers(self, customer_ids: Iterable[int]) -> dict[int, list[MirrorRow]]:
        """Subscriber rows per customer id."""
        out: dict[int, list[MirrorRow]] = {}
        ids = list(dict.fromkeys(customer_ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks, args = _in_list(chunk)
            for row in self._query(_MIRROR_SELECT + f" WHERE customer_id IN ({marks})", args):
                out.setdefault(row[1], []).append(_mirror(row))
        return out

    def mirror_rows(self, *, guests_only: bool = False, after: int = 0, chunk: int = 1000
                    ) -> Iterator[MirrorRow]:
        """Mirror rows in subscriber id order, read a chunk at a time (flat memory)."""
        where = " AND customer_id = 0" if guests_only else ""
        while True:
            rows = self._query(_MIRROR_SELECT + f" WHERE subscriber_id > ?{where} "
                               "ORDER BY subscriber_id LIMIT ?", (after, chunk))
            for row in rows:
                yield _mirror(row)
            if len(rows) < chunk:
                return
            after = int(rows[-1][0])

    def mirror_guest_emails(self, emails: Iterable[str]) -> set[str]:
        """The given emails (lower-cased) that belong to a guest subscriber."""
        wanted = list({e.lower() for e in emails if e})
        found: set[str] = set()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            marks, args = _in_list(chunk)
            found.update(r[0].lower() for r in self._query(
                "SELECT email FROM subscribers WHERE customer_id = 0 AND email COLLATE NOCASE "
                f"IN ({marks})", args))
        return found

    def mirror_get(self, subscriber_id: int) -> MirrorRow | None:
        rows = self._query(_MIRROR_SELECT + " WHERE subscriber_id = ?", (subscriber_id,))
        return _mirror(rows[0]) if rows else None

    def mirror_count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM subscribers")[0][0])

    # -- failsafe queue -------------------------------------------------------------------
    def enqueue(self, key: str, email: str | None, error: str, *, max_attempts: int,
                kind: str = "sync") -> bool:
        """Record one failed attempt; returns True when the contact is now dead."""
        now = to_iso(utcnow())
        with self.atomic() as c:
            row = c.execute("SELECT attempts FROM queue WHERE key = ? AND kind = ?",
                            (key, kind)).fetchone()
            attempts = (int(row[0]) + 1) if row else 1
            dead = attempts >= max_attempts
            c.execute(
                "INSERT INTO queue (key, kind, email, attempts, last_error, queued_at, "
                "updated_at, dead) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(key, kind) DO UPDATE SET email = COALESCE(excluded.email, "
                "queue.email), attempts = excluded.attempts, last_error = excluded.last_error,"
                " updated_at = excluded.updated_at, dead = excluded.dead",
                (key, kind, email, attempts, error, now, now, int(dead)))
        return dead

    def dequeue(self, keys: Iterable[str], kind: str = "sync") -> int:
        with self.atomic() as c:
            cur = c.executemany("DELETE FROM queue WHERE key = ? AND kind = ?",
                                [(k, kind) for k in keys])
            return int(cur.rowcount or 0)

    def queue_items(self, *, dead: bool | None = False, kind: str | None = "sync"
                    ) -> list[QueueItem]:
        """Queued contacts (``dead=None``: both live and dead)."""
        where, args = _queue_filter(dead, kind)
        rows = self._query("SELECT key, kind, email, attempts, last_error, queued_at, dead "
                           f"FROM queue{where} ORDER BY queued_at, key", args)
        return [QueueItem(r[0], r[1], r[2], int(r[3]), r[4], from_iso(r[5]), bool(r[6]))
                for r in rows]

    def queued_keys(self, kind: str = "sync") -> set[str]:
        return {r[0] for r in self._query("SELECT key FROM queue WHERE kind = ?", (kind,))}

    def queue_attempted_at(self, keys: Iterable[str], kind: str = "sync"
                           ) -> dict[str, datetime]:
        """When each of these keys that is queued (live or dead) was last attempted."""
        wanted = list(keys)
        out: dict[str, datetime] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            marks, args = _in_list(chunk)
            for key, at in self._query(f"SELECT key, updated_at FROM queue WHERE kind = ? "
                                       f"AND key IN ({marks})", [kind, *args]):
                out[key] = from_iso(at)
        return out

    def revive_dead(self, kind: str = "sync") -> int:
        with self.atomic() as c:
            cur = c.execute("UPDATE queue SET dead = 0, attempts = 0 WHERE dead = 1 AND "
                            "kind = ?", (kind,))
            return int(cur.rowcount or 0)

    def purge_queue(self, *, dead: bool | None = None, kind: str | None = None) -> int:
        where, args = _queue_filter(dead, kind)
        with self.atomic() as c:
            return int(c.execute(f"DELETE FROM queue{where}", args).rowcount or 0)

    def queue_counts(self) -> dict[str, int]:
        rows = self._query("SELECT dead, COUNT(*) FROM queue GROUP BY dead")
        counts = {"queued": 0, "dead": 0}
        for dead, n in rows:
            counts["dead" if dead else "queued"] = int(n)
        return counts

    # -- reports (consent conflicts, unconvertible values, ambiguous emails ...) ---------
    def add_reports(self, run_id: int | None, items: Iterable[tuple[str, str | None, str]]
                    ) -> None:
        """Record (kind, key, detail) findings of a run for ``status``."""
        now = to_iso(utcnow())
        with self.atomic() as c:
            c.executemany("INSERT INTO reports (run_id, kind, key, detail, at) "
                          "VALUES (?, ?, ?, ?, ?)",
                          [(run_id, kind, key, detail, now) for kind, key, detail in items])

    def reports(self, run_id: int | None = None, limit: int = 200
                ) -> list[tuple[str, str | None, str, datetime]]:
        if run_id is None:
            rows = self._query("SELECT kind, key, detail, at FROM reports ORDER BY id DESC "
                               "LIMIT ?", (limit,))
        else:
            rows = self._query("SELECT kind, key, detail, at FROM reports WHERE run_id = ? "
                               "ORDER BY id LIMIT ?", (run_id, limit))
        return [(r[0], r[1], r[2], from_iso(r[3])) for r in rows]


@lru_cache(maxsize=64)
def _lists_json(lists: frozenset[str]) -> str:
    """The stored form of a contact's list roles (a handful of distinct values)."""
    return json.dumps(sorted(lists))


# Lengths an IN list is padded to. Each distinct SQL text is a prepared statement that the
# sqlite3 module keeps (128 of them): lists of every length would fill that cache with
# large statements as a long run meets more lengths, and memory would creep for it.
_IN_LENGTHS = (1, 8, 32, 100, 300, 500)


def _in_list(values: list[Any]) -> tuple[str, list[Any]]:
    """``?`` marks for ``IN (...)`` and the values padded to one of ``_IN_LENGTHS`` by
    repeating the last one (which IN ignores); at most 500 values."""
    size = next(n for n in _IN_LENGTHS if n >= len(values))
    return ",".join("?" * size), values + values[-1:] * (size - len(values))


_MIRROR_SELECT = ("SELECT subscriber_id, customer_id, email, status, website_id, store_id "
                  "FROM subscribers")


def _mirror(row: Sequence[Any]) -> MirrorRow:
    return MirrorRow(int(row[0]), int(row[1]), row[2], int(row[3]), row[4], row[5])


def _contact(row: Sequence[Any]) -> ContactRecord:
    return ContactRecord(key=row[0], customer_id=row[1], subscriber_id=row[2], email=row[3],
                         emarsys_id=row[4], sent=jsoncodec.loads(row[5]),
                         lists=frozenset(json.loads(row[6])))


def _run_info(row: Sequence[Any]) -> RunInfo:
    return RunInfo(id=int(row[0]), command=row[1], started_at=from_iso(row[2]),
                   ended_at=from_iso(row[3]) if row[3] else None, outcome=row[4],
                   exit_code=row[5], counts=json.loads(row[6] or "{}"), message=row[7])


def _queue_filter(dead: bool | None, kind: str | None) -> tuple[str, list[Any]]:
    """The WHERE clause (and its arguments) selecting queue rows by dead flag and kind."""
    clauses: list[str] = []
    args: list[Any] = []
    if dead is not None:
        clauses.append("dead = ?")
        args.append(int(dead))
    if kind is not None:
        clauses.append("kind = ?")
        args.append(kind)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
