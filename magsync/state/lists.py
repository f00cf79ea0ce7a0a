"""Contact-list membership as the state file records it.

A contact's record holds the list *roles* it joined (``customers``, ``subscribers``: the
``lists`` column, see ``contacts.py``); which Emarsys list each role meant is recorded
once, as a ``meta`` row ``list_id:<role>``. A role recorded for a contact therefore says
"member of that list id": when a run finds the list under another id (deleted in Emarsys
and created again, or another list named in the config), the role is dropped from every
record (``drop_list_role``), and the contacts that belong on the list are added again
(``missing_list_members``, then ``add_list_role``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from magsync.state.base import Tables
from magsync.state.contacts import _lists_json, lists_of

_META = "list_id:{}"
_CHUNK = 5000
# The key range of each kind of contact: "c:<customer id>", "s:<subscriber id>".
_RANGES = {"c": ("c:", "c;"), "s": ("s:", "s;")}


@dataclass(frozen=True)
class Member:
    """A contact that belongs on a list it is not recorded in: its key, the value of the
    key field it is added by, and its stored ``lists``."""

    key: str
    key_value: str
    lists: str


class ListTables(Tables):
    """List ids per role, and the roles each contact joined."""

    def list_binding(self, role: str) -> int | None:
        """The list id the recorded ``role`` memberships refer to (None: not recorded)."""
        value = self.get_meta(_META.format(role))
        return int(value) if value else None

    def bind_list(self, role: str, list_id: int, *, drop_members: bool) -> int:
        """Record ``list_id`` as ``role``'s list; with ``drop_members`` the role is first
        dropped from every record (they joined another list). Returns how many lost it."""
        dropped = 0
        with self.atomic() as c:
            after = ""
            while drop_members:  # a chunk at a time: memory stays flat
                rows = c.execute("SELECT key, lists FROM contacts WHERE key > ? AND lists "
                                 "LIKE ? ORDER BY key LIMIT ?",
                                 (after, _pattern(role), _CHUNK)).fetchall()
                if not rows:
                    break
                c.executemany("UPDATE contacts SET lists = ? WHERE key = ?",
                              [(_lists_json(lists_of(lists) - {role}), key)
                               for key, lists in rows])
                dropped += len(rows)
                after = rows[-1][0]
            self.set_meta(_META.format(role), str(int(list_id)))
        return dropped

    def missing_list_members(self, role: str, kind: str, *, after: str = "",
                             limit: int = 10_000) -> list[Member]:
        """Up to ``limit`` contacts of ``kind`` (``c`` customers, ``s`` guests) that belong
        on ``role``'s list and are not recorded in it, in key order after ``after``.

        Customers belong on the customers list; every contact with a subscriber id on the
        subscribers list, except people found deleted in Magento (``unsubscribe`` took
        them off the lists on purpose). Customers are added by customer id, guests by
        subscriber id."""
        low, high = _RANGES[kind]
        value = "customer_id" if kind == "c" else "subscriber_id"
        extra = " AND subscriber_id IS NOT NULL" if role == "subscribers" else ""
        rows = self._query(
            f"SELECT key, {value}, lists FROM contacts WHERE key > ? AND key < ? "
            f"AND lists NOT LIKE ?{extra} AND {value} IS NOT NULL "
            "AND key NOT IN (SELECT key FROM deletions) ORDER BY key LIMIT ?",
            (max(after, low), high, _pattern(role), limit))
        return [Member(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def add_list_role(self, members: Iterable[Member], role: str) -> None:
        """Record ``role`` for ``members`` (Emarsys took them into its list)."""
        with self.atomic() as c:
            c.executemany("UPDATE contacts SET lists = ? WHERE key = ?",
                          [(_lists_json(lists_of(m.lists) | {role}), m.key)
                           for m in members])


def _pattern(role: str) -> str:
    """A LIKE pattern matching a stored ``lists`` (a JSON array of role names, see
    ``contacts._lists_json``) that holds ``role``."""
    return f'%"{role}"%'
