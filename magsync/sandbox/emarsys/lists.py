"""Contact lists of the sandbox Emarsys account: create, add, remove, read, delete.

A mixin of ``EmarsysAccount`` (which supplies the lock, the key lookups and the list
table), kept apart so the account module stays readable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from magsync.sandbox.emarsys.fields import EMAIL
from magsync.sandbox.emarsys.types import ContactError, ContactList, RequestFailed

MAX_LIST_IDS = 10_000  # per add or remove call (3002 beyond)


class ListOps:
    """The contact-list half of ``EmarsysAccount``."""

    lock: threading.RLock
    lists: dict[int, ContactList]
    _next_list_id: int

    if TYPE_CHECKING:  # supplied by EmarsysAccount
        def find(self, key: int | str, value: Any) -> set[int]: ...

        def resolve_key(self, key_id: Any) -> int | str: ...

    def create_list(self, name: str, key_id: Any = EMAIL,
                    external_ids: list[Any] | None = None) -> tuple[int, dict[str, Any]]:
        """``POST /contactlist``: (list id, per-id errors); 3005 when the name exists."""
        with self.lock:
            if any(lst.name == name for lst in self.lists.values()):
                raise RequestFailed(400, 3005, f"Contact list name already exists: {name}")
            lst = ContactList(self._next_list_id, name)
            self._next_list_id += 1
            self.lists[lst.id] = lst
            _, errors = self._each_single(key_id, external_ids or [], _add_to(lst))
            return lst.id, errors

    def add_to_list(self, list_id: int, key_id: Any, external_ids: list[Any]
                    ) -> tuple[int, dict[str, Any]]:
        """``POST /contactlist/{id}/add``: (inserted count, errors); 3002 past 10,000 ids."""
        with self.lock:
            lst = self._list_for_batch(list_id, external_ids)
            return self._each_single(key_id, external_ids, _add_to(lst))

    def remove_from_list(self, list_id: int, key_id: Any, external_ids: list[Any]
                         ) -> tuple[int, dict[str, Any]]:
        """``POST /contactlist/{id}/delete``: (removed count, errors); 3002 past 10,000.

        A contact that exists but is not a member is neither counted nor an error (the
        live behaviour is undocumented; removal is idempotent here)."""
        with self.lock:
            lst = self._list_for_batch(list_id, external_ids)
            removed = 0

            def remove(found: set[int], _value: Any) -> None:
                nonlocal removed
                removed += len(found & lst.members)
                lst.members.difference_update(found)

            _, errors = self._each_single(key_id, external_ids, remove)
            return removed, errors

    def delete_list(self, list_id: int) -> None:
        """The list is deleted (as in the Emarsys UI); KeyError when there is none."""
        with self.lock:
            del self.lists[int(list_id)]

    def forget_member(self, contact_id: int) -> None:
        """A deleted contact leaves every list."""
        with self.lock:
            for lst in self.lists.values():
                lst.members.discard(contact_id)

    def list_by_name(self, name: str) -> ContactList | None:
        """The contact list called ``name``, if any."""
        with self.lock:
            return next((lst for lst in self.lists.values() if lst.name == name), None)

    def list_members(self, list_ref: int | str) -> list[int]:
        """Sorted internal ids of a list's members, by list id or name."""
        with self.lock:
            lst = self.lists.get(list_ref) if isinstance(list_ref, int) else \
                self.list_by_name(list_ref)
            if lst is None:
                raise KeyError(f"no contact list {list_ref!r}")
            return sorted(lst.members)

    def _list_for_batch(self, list_id: int, external_ids: list[Any]) -> ContactList:
        lst = self.lists.get(int(list_id))
        if lst is None:
            raise RequestFailed(404, 3004, f"Contact list does not exist: {list_id}")
        if len(external_ids) > MAX_LIST_IDS:
            raise RequestFailed(400, 3002, f"Too many contacts: at most {MAX_LIST_IDS}")
        return lst

    def _each_single(self, key_id: Any, external_ids: list[Any],
                     apply: Callable[[set[int], Any], None]) -> tuple[int, dict[str, Any]]:
        """Call ``apply({contact id}, value)`` for each value that names exactly one contact;
        (how many did, per-value errors 2008/2010 or the key's own 2004/2015)."""
        try:
            key = self.resolve_key(key_id)
        except ContactError as exc:
            return 0, {str(v): {str(exc.code): exc.text} for v in external_ids}
        errors: dict[str, Any] = {}
        done = 0
        for value in external_ids:
            found = self.find(key, value)
            if len(found) != 1:
                errors[str(value)] = single_contact_error(key, value, found)
                continue
            apply(found, value)
            done += 1
        return done, errors


def _add_to(lst: ContactList) -> Callable[[set[int], Any], None]:
    return lambda found, _value: lst.members.update(found)


def single_contact_error(key: int | str, value: Any, found: set[int]) -> dict[str, str]:
    """The per-value error of a batch call whose value names none or several contacts."""
    if found:
        return {"2010": f"More than one contact found with the external id: {key} - {value}"}
    return {"2008": f"No contact found with the external id: {key} - {value}"}
