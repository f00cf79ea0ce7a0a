"""What every group of state tables shares: the connection, transactions, queries and
the meta table."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from magsync.state.integrity import FileInfo, quick_check
from magsync.util.interrupts import critical
from magsync.util.redact import scrub

TEXT_LIMIT = 500  # characters of a stored message (run, queue error, report)
READ_CHUNK = 1000  # rows a keyset read takes at a time: memory stays flat however many


def clean_text(text: str | None) -> str | None:
    """``text`` as the state file stores it: redacted first, then cut (a cut must not
    split a secret), so that no secret ever reaches the file or ``status``."""
    if text is None:
        return None
    return scrub(text)[:TEXT_LIMIT]


class Tables:
    """The connection of one open state file; the table groups build on it."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0
        self.warnings: list[str] = []  # existing directory or files open to other users
        self.info: FileInfo | None = None  # header and schema, as found on opening

    def close(self) -> None:
        self._conn.close()

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
            # Ctrl-C or SIGTERM raise wherever the main thread is: right after BEGIN or
            # COMMIT returned they would leave a transaction open, or report a committed
            # one as failed. Held back over both (util.interrupts), any stop in between
            # lands in the try and rolls back.
            self._depth = 1
            try:
                with critical():
                    self._conn.execute("BEGIN IMMEDIATE")
                yield self._conn
                with critical():
                    self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """The reads inside see one state of the file (one read transaction)."""
        with self._lock:
            try:
                self._conn.execute("BEGIN")
                yield
            finally:
                with suppress(sqlite3.Error):  # already ended by an error
                    self._conn.execute("ROLLBACK")

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._conn.execute(sql, args)
            return list(cur.fetchall())

    def _query_in(self, sql: str, values: Sequence[Any], head: Sequence[Any] = ()
                  ) -> Iterator[sqlite3.Row]:
        """The rows of ``sql``, whose ``{marks}`` is an ``IN`` list, for ``values`` 500 at
        a time (``in_list``'s longest list); ``head`` holds the arguments before it."""
        for start in range(0, len(values), 500):
            marks, args = in_list(list(values[start:start + 500]))
            yield from self._query(sql.format(marks=marks), [*head, *args])

    def quick_check(self) -> list[str]:
        """SQLite's ``quick_check`` (reads the whole file): its findings, [] when intact."""
        return quick_check(self._conn, self.path)

    def note_complete_read(self, stamp: str) -> None:
        """Hook: a complete subscriber read, its rows stamped ``stamp``, is replacing the
        mirror; the rows it no longer holds are still there (see deletions.py)."""

    # -- meta ---------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.atomic() as c:
            c.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) "
                      "DO UPDATE SET value = excluded.value", (key, value))


# Lengths an IN list is padded to. Each distinct SQL text is a prepared statement that the
# sqlite3 module keeps (128 of them): lists of every length would fill that cache with
# large statements as a long run meets more lengths, and memory would creep for it.
_IN_LENGTHS = (1, 8, 32, 100, 300, 500)


def in_list(values: list[Any]) -> tuple[str, list[Any]]:
    """``?`` marks for ``IN (...)`` and the values padded to one of ``_IN_LENGTHS`` by
    repeating the last one (which IN ignores); at most 500 values."""
    size = next(n for n in _IN_LENGTHS if n >= len(values))
    return ",".join("?" * size), values + values[-1:] * (size - len(values))
