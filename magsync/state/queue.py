"""The failsafe queue and the findings runs report (conflicts, unconvertible values...)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from magsync.state.base import Tables, clean_text
from magsync.util.timeutil import from_iso, to_iso, utcnow


@dataclass(frozen=True)
class QueueItem:
    key: str
    kind: str
    email: str | None
    attempts: int
    last_error: str | None
    queued_at: datetime
    dead: bool


class QueueTables(Tables):
    """The ``queue`` and ``reports`` tables."""

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
                (key, kind, email, attempts, clean_text(error), now, now, int(dead)))
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
        return {key: from_iso(at) for key, at in self._query_in(
            "SELECT key, updated_at FROM queue WHERE kind = ? AND key IN ({marks})",
            list(keys), (kind,))}

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

    def oldest_queued_at(self) -> datetime | None:
        """When the longest-waiting live queued contact first failed."""
        rows = self._query("SELECT MIN(queued_at) FROM queue WHERE dead = 0")
        return from_iso(rows[0][0]) if rows and rows[0][0] else None

    def count_queue(self, *, dead: bool, queued_before: datetime | None = None,
                    updated_since: datetime | None = None) -> int:
        """Live (or dead) queued contacts first queued before ``queued_before`` and/or last
        attempted since ``updated_since`` (a dead one: since it became dead)."""
        sql = "SELECT COUNT(*) FROM queue WHERE dead = ?"
        args: list[Any] = [int(dead)]
        if queued_before is not None:
            sql += " AND queued_at < ?"
            args.append(to_iso(queued_before))
        if updated_since is not None:
            sql += " AND updated_at >= ?"
            args.append(to_iso(updated_since))
        return int(self._query(sql, args)[0][0])

    # -- reports (consent conflicts, unconvertible values, ambiguous emails ...) ---------
    def add_reports(self, run_id: int | None, items: Iterable[tuple[str, str | None, str]]
                    ) -> None:
        """Record (kind, key, detail) findings of a run for ``status``."""
        now = to_iso(utcnow())
        with self.atomic() as c:
            c.executemany("INSERT INTO reports (run_id, kind, key, detail, at) "
                          "VALUES (?, ?, ?, ?, ?)",
                          [(run_id, kind, key, clean_text(detail), now)
                           for kind, key, detail in items])

    def reports(self, run_id: int | None = None, limit: int = 200
                ) -> list[tuple[str, str | None, str, datetime]]:
        if run_id is None:
            rows = self._query("SELECT kind, key, detail, at FROM reports ORDER BY id DESC "
                               "LIMIT ?", (limit,))
        else:
            rows = self._query("SELECT kind, key, detail, at FROM reports WHERE run_id = ? "
                               "ORDER BY id LIMIT ?", (run_id, limit))
        return [(r[0], r[1], r[2], from_iso(r[3])) for r in rows]


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
