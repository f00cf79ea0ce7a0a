"""Batch calls that address contacts by key values: getdata, checkids, contact/delete.

A mixin of ``EmarsysAccount`` (which supplies the lock, the lookups and the contact
table). A key value that names several contacts is where these calls differ: getdata
answers a per-key 2010 by default (``getdata_multi = "rows"`` returns every row instead,
the other reading of the evidence), checkids lists every id only when asked to, and a
delete leaves such contacts alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from magsync.sandbox.emarsys.fields import Field
from magsync.sandbox.emarsys.lists import single_contact_error
from magsync.sandbox.emarsys.types import ContactError, DeletionEntry, RequestFailed

GETDATA_MULTI_ERROR, GETDATA_MULTI_ROWS = "error", "rows"
GETDATA_MULTI_MODES = (GETDATA_MULTI_ERROR, GETDATA_MULTI_ROWS)
MAX_KEYED_VALUES = 1000  # getdata keyValues, checkids external_ids, delete values


class KeyedCalls:
    """The keyed batch calls of ``EmarsysAccount``."""

    lock: threading.RLock
    contacts: dict[int, dict[int, str | None]]
    fields: dict[int, Field]
    getdata_multi: str
    deleted: list[DeletionEntry]

    if TYPE_CHECKING:  # supplied by EmarsysAccount
        def find(self, key: int | str, value: Any) -> set[int]: ...

        def resolve_key(self, key_id: Any) -> int | str: ...

        def _drop_contact(self, cid: int) -> dict[int, str | None]: ...

        def _each_single(self, key_id: Any, external_ids: list[Any],
                         apply: Callable[[set[int], Any], None]
                         ) -> tuple[int, dict[str, Any]]: ...

    def get_data(self, key_id: Any, key_values: list[Any], fields: list[Any]
                 ) -> tuple[list[dict[str, Any]] | bool, list[dict[str, Any]]]:
        """``POST /contact/getdata``: a row per contact found, an error per key that
        matches none (2008) or, unless ``getdata_multi`` is "rows", several (2010)."""
        with self.lock:
            wanted = [int(f) for f in fields if str(f).isdecimal() and int(f) in self.fields]
            try:
                key = self.resolve_key(key_id)
            except ContactError as exc:
                return False, [_getdata_error(v, exc.code, exc.text) for v in key_values]
            result: list[dict[str, Any]] = []
            errors: list[dict[str, Any]] = []
            for value in key_values:
                found = self.find(key, value)
                if not found:
                    errors.append(_getdata_error(
                        value, 2008, f"No contact found with the external id: {key}"))
                elif len(found) > 1 and self.getdata_multi == GETDATA_MULTI_ERROR:
                    errors.append(_getdata_error(
                        value, 2010, f"More contacts found with the external identifier: "
                                     f"{key} - {value}"))
                    continue
                for cid in sorted(found):
                    row: dict[str, Any] = {"id": str(cid)}
                    row.update({str(f): self.contacts[cid].get(f) for f in wanted})
                    result.append(row)
            return result or False, errors

    def check_ids(self, key_id: Any, external_ids: list[Any], multiple: bool
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``POST /contact/checkids``: ({value: internal id}, errors); with ``multiple``
        (``get_multiple_ids``) each value maps to the list of every id it matches."""
        _check_count(external_ids)
        with self.lock:
            try:
                key = self.resolve_key(key_id)
            except ContactError as exc:
                return {}, {str(v): {str(exc.code): exc.text} for v in external_ids}
            ids: dict[str, Any] = {}
            errors: dict[str, Any] = {}
            for value in external_ids:
                found = sorted(self.find(key, value))
                if multiple and found:
                    ids[str(value)] = [str(cid) for cid in found]
                elif len(found) == 1:
                    ids[str(value)] = str(found[0])
                else:
                    errors[str(value)] = single_contact_error(key, value, set(found))
            return ids, errors

    def delete_contacts(self, key_id: Any, values: list[Any]
                        ) -> tuple[int, dict[str, Any], list[DeletionEntry]]:
        """``POST /contact/delete``: (deleted count, errors, what was deleted). A value
        naming no contact is 2008, several 2010 (none of them deleted)."""
        _check_count(values)
        with self.lock:
            entries: list[DeletionEntry] = []

            def delete(found: set[int], value: Any) -> None:
                cid = found.pop()
                fields = self._drop_contact(cid)
                entries.append(DeletionEntry(cid, str(key_id), str(value),
                                             {str(f): v for f, v in fields.items()}))

            _, errors = self._each_single(key_id, values, delete)
            self.deleted.extend(entries)
            return len(entries), errors, entries


def _check_count(values: list[Any]) -> None:
    if len(values) > MAX_KEYED_VALUES:
        raise RequestFailed(400, 1000, f"At most {MAX_KEYED_VALUES} values per request")


def _getdata_error(value: Any, code: int, text: str) -> dict[str, Any]:
    return {"key": str(value), "errorCode": str(code), "errorMsg": text}
