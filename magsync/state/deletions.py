"""People deleted in Magento (SPEC 7): the sent customer ids as a sorted stream, guest
subscribers missed by complete subscriber reads, deletion marks, and the erasure of every
row about a person.

A mark's ``mode`` is the strongest ``sync.deletions`` mode approved for that person
(keep < unsubscribe < delete; never weakened) and ``applied_at`` is set once Emarsys
confirmed it; a mark whose mode is ``delete`` disappears with the person's other rows.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from magsync.model import EMAIL
from magsync.state.base import READ_CHUNK, Tables
from magsync.util import jsoncodec
from magsync.util.logs import get_logger
from magsync.util.timeutil import to_iso, utcnow

log = get_logger("state")

MODE_RANK = {"keep": 0, "unsubscribe": 1, "delete": 2}
_RANK_SQL = "CASE mode WHEN 'keep' THEN 0 WHEN 'unsubscribe' THEN 1 ELSE 2 END"
CONFIRMING_READS = 2  # complete subscriber reads that must miss a guest (SPEC 7)
CHECKPOINT_WAIT = 5.0  # seconds a WAL checkpoint may wait for readers to finish
# ``deletion_counts`` of a file without deletions (or not migrated to their tables yet),
# and ``status`` of a missing file
NO_DELETIONS: dict[str, Any] = {"found": 0, "erased": 0, "marked": 0, "by_mode": {},
                                "guest_suspects": 0}


@dataclass(frozen=True)
class SentCustomer:
    """A customer magsync sent: its id, its deletion mark's mode (None: not marked) and,
    when asked for, the Magento opt-in last synced (``_m31``)."""

    customer_id: int
    marked: str | None
    magento_optin: Any = None


@dataclass(frozen=True)
class DeletionMark:
    key: str
    mode: str
    applied: bool


class DeletionTables(Tables):
    """The ``deletions`` and ``deletion_suspects`` tables, and erasure."""

    # -- the customers magsync sent, in ascending id order ----------------------------------
    def iter_sent_customers(self, *, with_optin: bool = False) -> Iterator[SentCustomer]:
        """Every ``c:`` contact's customer id in ascending numeric order, a chunk at a
        time by keyset (memory stays flat however many there are)."""
        optin = "json_extract(c.sent, '$._m31')" if with_optin else "NULL"
        after = 0
        while True:
            rows = self._query(
                f"SELECT c.customer_id, d.mode, {optin} FROM contacts c "
                "LEFT JOIN deletions d ON d.key = c.key WHERE c.customer_id > ? "
                "AND substr(c.key, 1, 2) = 'c:' ORDER BY c.customer_id LIMIT ?",
                (after, READ_CHUNK))
            for row in rows:
                yield SentCustomer(int(row[0]), row[1], row[2])
            if len(rows) < READ_CHUNK:
                return
            after = int(rows[-1][0])

    # -- guests missed by complete subscriber reads ----------------------------------------
    def note_complete_read(self, stamp: str) -> None:
        """A complete, unfiltered subscriber read stamped its rows ``stamp`` (the rows it
        no longer holds are still in the mirror, older): each sent guest it misses is
        missed once more, a guest it holds is no longer a suspect. A website the read
        returned no row of counts as not read (``website_ids`` may have changed), so its
        guests are not missed. Call inside the transaction that replaces the mirror."""
        read = "SELECT website_id FROM subscribers WHERE seen_at = :stamp"
        args = {"stamp": stamp, "now": to_iso(utcnow())}
        with self.atomic() as c:
            c.execute(
                "DELETE FROM deletion_suspects WHERE subscriber_id IN (SELECT subscriber_id "
                "FROM subscribers WHERE seen_at = :stamp) OR NOT EXISTS (SELECT 1 FROM "
                "contacts c WHERE c.key = 's:' || deletion_suspects.subscriber_id) OR "
                "EXISTS (SELECT 1 FROM deletions d WHERE d.key = 's:' || "
                "deletion_suspects.subscriber_id)", args)
            c.execute("UPDATE deletion_suspects SET misses = misses + 1 WHERE website_id "
                      f"IS NULL OR website_id IN ({read})", args)
            # a guest of a website not read is kept with 0 misses: its website is known
            c.execute(
                "INSERT INTO deletion_suspects (subscriber_id, misses, first_missed_at, "
                "website_id) SELECT c.subscriber_id, CASE WHEN o.website_id IS NULL OR "
                f"o.website_id IN ({read}) THEN 1 ELSE 0 END, :now, o.website_id "
                "FROM contacts c LEFT JOIN subscribers o ON o.subscriber_id = c.subscriber_id "
                "WHERE c.key > 's:' AND c.key < 's;' AND c.subscriber_id IS NOT NULL "
                "AND (o.subscriber_id IS NULL OR o.seen_at <> :stamp) "
                "AND NOT EXISTS (SELECT 1 FROM deletion_suspects s "
                "WHERE s.subscriber_id = c.subscriber_id) "
                "AND NOT EXISTS (SELECT 1 FROM deletions d WHERE d.key = c.key)", args)

    def guest_candidates(self, limit: int) -> tuple[int, list[str]]:
        """Guests that consecutive complete reads missed often enough to count as
        deleted, not marked yet: (how many, the first ``limit`` keys)."""
        where = ("FROM deletion_suspects s WHERE s.misses >= ? AND NOT EXISTS (SELECT 1 "
                 "FROM deletions d WHERE d.key = 's:' || s.subscriber_id)")
        total = int(self._query(f"SELECT COUNT(*) {where}", (CONFIRMING_READS,))[0][0])
        rows = self._query(f"SELECT s.subscriber_id {where} ORDER BY s.subscriber_id "
                           "LIMIT ?", (CONFIRMING_READS, max(0, limit)))
        return total, [f"s:{r[0]}" for r in rows]

    def count_suspects(self) -> int:
        """Guests one complete read (or more, but too few) missed."""
        return int(self._query("SELECT COUNT(*) FROM deletion_suspects WHERE misses "
                               "BETWEEN 1 AND ?", (CONFIRMING_READS - 1,))[0][0])

    def keys_by_email(self, email: str) -> list[str]:
        """The contacts and queued contacts magsync holds with this email (any case)."""
        rows = self._query("SELECT key FROM contacts WHERE email = ? COLLATE NOCASE UNION "
                           "SELECT key FROM queue WHERE email = ? COLLATE NOCASE",
                           (email.strip(), email.strip()))
        return sorted({r[0] for r in rows})

    def mirror_ids_by_email(self, email: str) -> list[int]:
        """Subscriber ids of the mirror rows with this email (any case)."""
        return [int(r[0]) for r in self._query(
            "SELECT subscriber_id FROM subscribers WHERE email = ? COLLATE NOCASE "
            "ORDER BY subscriber_id", (email.strip(),))]

    # -- deletion marks ----------------------------------------------------------------------
    def mark_deleted(self, keys: Iterable[str], mode: str) -> int:
        """Mark people as deleted in Magento with ``mode`` to apply (not yet applied);
        an existing mark is only ever strengthened. Returns how many are new."""
        now = to_iso(utcnow())
        rows = [(k, mode, now) for k in dict.fromkeys(keys)]
        with self.atomic() as c:
            before = self._count_marks(c)
            c.executemany(
                "INSERT INTO deletions (key, mode, found_at) VALUES (?, ?, ?) "
                f"ON CONFLICT(key) DO UPDATE SET mode = excluded.mode, applied_at = NULL "
                f"WHERE {_RANK_SQL.replace('mode', 'excluded.mode')} > "
                f"{_RANK_SQL.replace('mode', 'deletions.mode')}", rows)
            new = self._count_marks(c) - before
            c.executemany("DELETE FROM deletion_suspects WHERE 's:' || subscriber_id = ?",
                          [(k,) for k, _, _ in rows if k.startswith("s:")])
            self._bump_meta(c, "deletions_found", new)
        return new

    def set_mark_applied(self, keys: Iterable[str], mode: str) -> None:
        now = to_iso(utcnow())
        with self.atomic() as c:
            c.executemany("UPDATE deletions SET applied_at = ? WHERE key = ? AND mode = ?",
                          [(now, k, mode) for k in keys])

    def unmark(self, keys: Iterable[str]) -> None:
        """People Magento holds again are no longer marked deleted."""
        with self.atomic() as c:
            c.executemany("DELETE FROM deletions WHERE key = ?", [(k,) for k in keys])

    def marks(self, keys: Iterable[str]) -> dict[str, DeletionMark]:
        return {key: DeletionMark(key, mode, applied is not None)
                for key, mode, applied in self._query_in(
                    "SELECT key, mode, applied_at FROM deletions WHERE key IN ({marks})",
                    list(dict.fromkeys(keys)))}

    def pending_marks(self) -> list[DeletionMark]:
        """Marks whose mode Emarsys has not confirmed yet (retried by every run)."""
        return [DeletionMark(k, m, False) for k, m in self._query(
            "SELECT key, mode FROM deletions WHERE applied_at IS NULL ORDER BY key")]

    def marks_weaker_than(self, mode: str, limit: int) -> tuple[int, list[str]]:
        """Marks applied with a weaker mode than ``mode`` (a later change of
        ``sync.deletions``): (how many, the first ``limit`` keys)."""
        where = f"FROM deletions WHERE {_RANK_SQL} < ? AND applied_at IS NOT NULL"
        rank = MODE_RANK[mode]
        total = int(self._query(f"SELECT COUNT(*) {where}", (rank,))[0][0])
        rows = self._query(f"SELECT key {where} ORDER BY key LIMIT ?", (rank, max(0, limit)))
        return total, [r[0] for r in rows]

    def deletion_counts(self) -> dict[str, Any]:
        """For ``status``: marks by mode (applied or pending), totals found and erased,
        guest suspects (all zero in a file not migrated to the deletion tables yet)."""
        by_mode: dict[str, dict[str, int]] = {}
        if not self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                           "name = 'deletion_suspects'"):
            return {**NO_DELETIONS, "by_mode": {}}  # a by_mode of its own, as below
        for mode, applied, n in self._query(
                "SELECT mode, applied_at IS NOT NULL, COUNT(*) FROM deletions "
                "GROUP BY mode, applied_at IS NOT NULL"):
            by_mode.setdefault(mode, {"applied": 0, "pending": 0})[
                "applied" if applied else "pending"] = int(n)
        return {"found": int(self.get_meta("deletions_found") or 0),
                "erased": int(self.get_meta("deletions_erased") or 0),
                "marked": sum(sum(v.values()) for v in by_mode.values()),
                "by_mode": by_mode, "guest_suspects": self.count_suspects()}

    @staticmethod
    def _count_marks(c: Any) -> int:
        return int(c.execute("SELECT COUNT(*) FROM deletions").fetchone()[0])

    @staticmethod
    def _bump_meta(c: Any, key: str, n: int) -> None:
        if n:
            c.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO "
                      "UPDATE SET value = CAST(meta.value AS INTEGER) + excluded.value",
                      (key, str(n)))

    # -- erasure -----------------------------------------------------------------------------
    def erase_people(self, keys: Iterable[str]) -> int:
        """Remove every row about these people (contact, queue, mirror, reports, marks)
        and scrub their key and emails from run messages; then make sure the file's bytes
        hold nothing of them. Returns how many contacts were removed."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return 0
        removed = 0
        traces: set[str] = set()
        with self.atomic() as c:
            for key in wanted:
                removed += self._erase_one(c, key, traces)
            _scrub_run_messages(c, traces)
            self._bump_meta(c, "deletions_erased", len(wanted))
        self.secure_erase()
        return removed

    @staticmethod
    def _erase_one(c: Any, key: str, traces: set[str]) -> int:
        """Delete one person's rows; add their key and emails to ``traces``."""
        row = c.execute("SELECT customer_id, subscriber_id, email, sent FROM contacts "
                        "WHERE key = ?", (key,)).fetchone()
        traces.add(key)
        if row is not None:
            customer_id, subscriber_id, email, sent = row
            traces.update(str(e) for e in (email, jsoncodec.loads(sent).get(EMAIL)) if e)
            if subscriber_id is not None:
                c.execute("DELETE FROM subscribers WHERE subscriber_id = ?", (subscriber_id,))
            if customer_id:
                c.execute("DELETE FROM subscribers WHERE customer_id = ?", (customer_id,))
        kind, _, number = key.partition(":")
        if kind == "s" and number.isdigit():
            c.execute("DELETE FROM subscribers WHERE subscriber_id = ?", (int(number),))
            c.execute("DELETE FROM deletion_suspects WHERE subscriber_id = ?", (int(number),))
        traces.update(str(e) for (e,) in c.execute(
            "SELECT email FROM queue WHERE key = ? AND email IS NOT NULL", (key,)))
        n = c.execute("DELETE FROM contacts WHERE key = ?", (key,)).rowcount or 0
        for table in ("queue", "reports", "deletions"):
            c.execute(f"DELETE FROM {table} WHERE key = ?", (key,))
        return int(n)

    def secure_erase(self) -> None:
        """After rows were deleted with ``secure_delete`` on (their bytes zeroed): a file
        written before it was on is vacuumed once (no old copy left in free space), and a
        TRUNCATE checkpoint moves the WAL into the file and empties it."""
        with self._lock:
            if self.get_meta("erase_needs_vacuum"):
                self._conn.execute("VACUUM")
                with self.atomic() as c:
                    c.execute("DELETE FROM meta WHERE key = 'erase_needs_vacuum'")
            deadline = time.monotonic() + CHECKPOINT_WAIT
            while True:
                busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                if not busy:
                    return
                if time.monotonic() >= deadline:
                    log.warning("another process is reading %s: its WAL keeps the erased "
                                "rows' old pages until the next checkpoint", self.path)
                    return
                time.sleep(0.1)


def _scrub_run_messages(c: Any, traces: set[str]) -> None:
    """Replace erased people's keys and emails in the run history's messages (one pass
    over the runs that have a message; few do)."""
    wanted = sorted({t.lower() for t in traces if t}, key=len, reverse=True)
    if not wanted:
        return
    for run_id, message in c.execute(
            "SELECT id, message FROM runs WHERE message IS NOT NULL").fetchall():
        lower = message.lower()
        hits = [t for t in wanted if t in lower]
        if not hits:
            continue
        # a key "c:12" must not match inside "c:123"; an email is taken whole
        scrubbed = re.sub("|".join(rf"(?<![\w:.@-]){re.escape(t)}(?![\w@-])" for t in hits),
                          "[erased]", message, flags=re.IGNORECASE)
        if scrubbed != message:
            c.execute("UPDATE runs SET message = ? WHERE id = ?", (scrubbed, run_id))
