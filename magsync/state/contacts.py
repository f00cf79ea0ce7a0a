"""Per-contact records (what was last sent) and the subscriber mirror."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from magsync.model import MAGENTO_OPTIN, ContactRecord, MirrorRow
from magsync.state.base import READ_CHUNK, Tables
from magsync.util import jsoncodec
from magsync.util.timeutil import from_iso, to_iso, utcnow


class ContactTables(Tables):
    """The ``contacts`` and ``subscribers`` tables."""

    # -- contacts -----------------------------------------------------------------------
    def get_contacts(self, keys: Iterable[str]) -> dict[str, ContactRecord]:
        """Records for the given keys (missing keys are absent from the result)."""
        return {row[0]: _contact(row) for row in self._query_in(
            _CONTACT_SELECT + " WHERE key IN ({marks})", list(dict.fromkeys(keys)))}

    def get_contact(self, key: str) -> ContactRecord | None:
        return self.get_contacts([key]).get(key)

    def find_contact_by_subscriber(self, subscriber_id: int) -> ContactRecord | None:
        rows = self._query(_CONTACT_SELECT + " WHERE subscriber_id = ? ORDER BY key LIMIT 1",
                           (subscriber_id,))
        return _contact(rows[0]) if rows else None

    def save_contacts(self, records: Iterable[ContactRecord]) -> None:
        """Insert or replace records (call inside ``atomic()`` to group with other writes)."""
        now = to_iso(utcnow())
        sent_text = jsoncodec.sorted_text  # runs for every contact saved
        rows = [(r.key, r.customer_id, r.subscriber_id, r.email, r.emarsys_id,
                 sent_text(r.sent), _lists_json(r.lists), now)
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
        """Replace the whole mirror with a fresh full read; returns the row count.

        Each replacement is a new mirror generation: its differences are still to be
        sent until a sync records that it diffed it (``mark_mirror_diffed``)."""
        stamp = to_iso(seen_at or utcnow())
        count = 0

        def data() -> Iterator[tuple[Any, ...]]:
            nonlocal count
            for r in rows:  # streamed: memory stays flat however many subscribers
                count += 1
                yield (r.subscriber_id, r.customer_id, r.email, r.status, r.website_id,
                       r.store_id, stamp)

        with self.atomic() as c:
            if c.execute("SELECT 1 FROM subscribers WHERE seen_at = ? LIMIT 1",
                         (stamp,)).fetchone():
                c.execute("DELETE FROM subscribers")  # a repeated stamp tells rows apart no more
            c.executemany(_MIRROR_PUT, data())
            self.set_meta("mirror_read_at", stamp)
            self.set_meta(_GENERATION, str(self.mirror_generation() + 1))
            # the rows this read no longer holds are still there, with an older stamp
            self.note_complete_read(stamp)  # guests it misses (SPEC 7)
            c.execute("DELETE FROM subscribers WHERE seen_at <> ?", (stamp,))
        return count

    def mirror_generation(self) -> int:
        """How many times the mirror was replaced by a full read."""
        return int(self.get_meta(_GENERATION) or 0)

    def mirror_diffed(self) -> int:
        """The last mirror generation whose differences a sync sent in full."""
        return int(self.get_meta(_DIFFED) or 0)

    def mark_mirror_diffed(self, generation: int) -> None:
        self.set_meta(_DIFFED, str(generation))

    def customers_missing_from_mirror(self) -> list[tuple[int, Any]]:
        """(customer id, sent Magento opt-in) of each customer magsync sent with a
        subscriber id that the mirror no longer holds for that customer."""
        rows = self._query(
            "SELECT c.customer_id, c.sent FROM contacts c WHERE c.key LIKE 'c:%' "
            "AND c.subscriber_id IS NOT NULL AND c.customer_id IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM subscribers s WHERE s.subscriber_id = "
            "c.subscriber_id AND s.customer_id = c.customer_id) ORDER BY c.customer_id")
        return [(int(r[0]), jsoncodec.loads(r[1]).get(MAGENTO_OPTIN)) for r in rows]

    def upsert_mirror(self, rows: Iterable[MirrorRow]) -> None:
        """Update single mirror rows (after pull-optin wrote them into Magento)."""
        stamp = to_iso(utcnow())
        with self.atomic() as c:
            c.executemany(_MIRROR_PUT, [(r.subscriber_id, r.customer_id, r.email, r.status,
                                         r.website_id, r.store_id, stamp) for r in rows])

    def mirror_read_at(self) -> datetime | None:
        value = self.get_meta("mirror_read_at")
        return from_iso(value) if value else None

    def mirror_for_customers(self, customer_ids: Iterable[int]) -> dict[int, list[MirrorRow]]:
        """Subscriber rows per customer id."""
        out: dict[int, list[MirrorRow]] = {}
        for row in self._query_in(_MIRROR_SELECT + " WHERE customer_id IN ({marks})",
                                  list(dict.fromkeys(customer_ids))):
            out.setdefault(row[1], []).append(_mirror(row))
        return out

    def mirror_rows(self, *, guests_only: bool = False, after: int = 0
                    ) -> Iterator[MirrorRow]:
        """Mirror rows in subscriber id order, read a chunk at a time (flat memory)."""
        where = " AND customer_id = 0" if guests_only else ""
        while True:
            rows = self._query(_MIRROR_SELECT + f" WHERE subscriber_id > ?{where} "
                               "ORDER BY subscriber_id LIMIT ?", (after, READ_CHUNK))
            for row in rows:
                yield _mirror(row)
            if len(rows) < READ_CHUNK:
                return
            after = int(rows[-1][0])

    def mirror_guest_emails(self, emails: Iterable[str]) -> set[str]:
        """The given emails (lower-cased) that belong to a guest subscriber."""
        return {r[0].lower() for r in self._query_in(
            "SELECT email FROM subscribers WHERE customer_id = 0 AND email COLLATE NOCASE "
            "IN ({marks})", list({e.lower() for e in emails if e}))}

    def mirror_get(self, subscriber_id: int) -> MirrorRow | None:
        rows = self._query(_MIRROR_SELECT + " WHERE subscriber_id = ?", (subscriber_id,))
        return _mirror(rows[0]) if rows else None

    def mirror_count(self, *, guests_only: bool = False, after: int = 0) -> int:
        """Mirror rows (only guests; only ids above ``after``)."""
        where = " AND customer_id = 0" if guests_only else ""
        return int(self._query(f"SELECT COUNT(*) FROM subscribers WHERE subscriber_id > ?"
                               f"{where}", (after,))[0][0])


@lru_cache(maxsize=64)
def _lists_json(lists: frozenset[str]) -> str:
    """The stored form of a contact's list roles (a handful of distinct values)."""
    return json.dumps(sorted(lists))


@lru_cache(maxsize=64)
def lists_of(stored: str) -> frozenset[str]:
    """The list roles ``_lists_json`` stored (decoded once per distinct value)."""
    return frozenset(json.loads(stored))


_GENERATION, _DIFFED = "mirror_generation", "mirror_diffed"
_MIRROR_SELECT = ("SELECT subscriber_id, customer_id, email, status, website_id, store_id "
                  "FROM subscribers")
_MIRROR_PUT = ("INSERT OR REPLACE INTO subscribers (subscriber_id, customer_id, email, status, "
               "website_id, store_id, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
_CONTACT_SELECT = ("SELECT key, customer_id, subscriber_id, email, emarsys_id, sent, lists "
                   "FROM contacts")


def _mirror(row: Sequence[Any]) -> MirrorRow:
    return MirrorRow(int(row[0]), int(row[1]), row[2], int(row[3]), row[4], row[5])


def _contact(row: Sequence[Any]) -> ContactRecord:
    return ContactRecord(key=row[0], customer_id=row[1], subscriber_id=row[2], email=row[3],
                         emarsys_id=row[4], sent=jsoncodec.loads(row[5]),
                         lists=lists_of(row[6]))
