"""The sandbox Emarsys account: fields, contacts and their change history.

No HTTP here: ``EmarsysSandbox`` wraps this, and tests or the demo may use it directly.
Contacts are indexed by (field, value) for the key fields and e-mail, so a 1000-contact
upsert costs milliseconds even with 100k+ contacts stored. Every public method takes the
account lock, so HTTP handler threads may call them concurrently. Contact lists are in
``lists.py``; getdata, checkids and contact/delete in ``keyed.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from magsync.sandbox.emarsys.fields import (
    CREATABLE_TYPES,
    EMAIL,
    KEY_FIELD_NAMES,
    OPT_IN,
    Field,
    InvalidValue,
    build_system_fields,
    index_form,
    make_string_id,
    normalize_value,
    value_normalizer,
)
from magsync.sandbox.emarsys.keyed import GETDATA_MULTI_ERROR, KeyedCalls
from magsync.sandbox.emarsys.lists import ListOps
from magsync.sandbox.emarsys.types import (
    ChangeEvent,
    ContactError,
    ContactList,
    DeletionEntry,
    EditEntry,
    RequestFailed,
    ResponseEvent,
    UpsertResult,
    WriteEntry,
)

__all__ = ["ChangeEvent", "ContactError", "ContactList", "EmarsysAccount", "RequestFailed",
           "UpsertResult", "WriteEntry"]

FIRST_CONTACT_ID = 285_291_248
FIRST_CUSTOM_FIELD_ID = 7001
FIRST_LIST_ID = 900_101
INTERNAL_ID = "id"
CHANGE_FIELDS = frozenset({EMAIL, OPT_IN})  # what getchanges watches
# Campaign response sources; an unsubscribe or a spam complaint opts the contact out.
RESPONSE_SOURCES = frozenset({"unsubscribe", "complaint", "bounce"})
OPT_OUT_SOURCES = frozenset({"unsubscribe", "complaint"})


class EmarsysAccount(ListOps, KeyedCalls):
    """The state of one Emarsys account.

    ``indexed_fields``: ids or names of custom fields usable as ``key_id``; default: the two
    Magento key fields (by name, whenever they exist). E-mail and ``id`` always work.
    """

    def __init__(self, *, key_fields: bool = True,
                 indexed_fields: Iterable[int | str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.fields: dict[int, Field] = build_system_fields(key_fields=key_fields)
        self._next_field_id = FIRST_CUSTOM_FIELD_ID + (len(KEY_FIELD_NAMES) if key_fields else 0)
        self.indexed: set[int | str] = (set(KEY_FIELD_NAMES.values()) if indexed_fields is None
                                        else set(indexed_fields))
        self.contacts: dict[int, dict[int, str | None]] = {}
        self._index: dict[int, dict[str, set[int]]] = {EMAIL: {}}
        self._next_contact_id = FIRST_CONTACT_ID
        self.lists: dict[int, ContactList] = {}
        self._next_list_id = FIRST_LIST_ID
        self.changes: list[ChangeEvent] = []
        self.responses: list[ResponseEvent] = []
        self._writes: dict[int, list[WriteEntry]] = {}
        self._edits: dict[int, list[EditEntry]] = {}
        self.deleted: list[DeletionEntry] = []
        self.getdata_multi = GETDATA_MULTI_ERROR
        self._injected: dict[tuple[str, str], tuple[int, str]] = {}
        # field-id text as sent -> (id, normaliser) of a writable field (emptied when a
        # field is deleted)
        self._writable: dict[str, tuple[int, Callable[[Any], str | None]]] = {}

    # -- fields ----------------------------------------------------------------------
    def create_field(self, name: str, application_type: str) -> Field:
        """``POST /field``: 9002 when the name exists, 400 for a type that cannot be created."""
        with self.lock:
            if any(f.name.lower() == name.lower() for f in self.fields.values()):
                raise RequestFailed(400, 9002, f"Field name already exists: {name}")
            if application_type not in CREATABLE_TYPES:
                raise RequestFailed(400, 9001, f"Invalid application type: {application_type}")
            fld = Field(self._next_field_id, name, application_type, make_string_id(name))
            self._next_field_id += 1
            self.fields[fld.id] = fld
            return fld

    def delete_field(self, field_id: int) -> None:
        """The field is deleted, as in the Emarsys UI (its values with it): a request that
        names its id answers 2004/2006 from now on; KeyError for no such custom field."""
        with self.lock:
            fld = self.fields.get(int(field_id))
            if fld is None or fld.id < FIRST_CUSTOM_FIELD_ID:
                raise KeyError(f"no custom field {field_id}")
            del self.fields[fld.id]
            self._writable.clear()
            self._index.pop(fld.id, None)
            for values in self.contacts.values():
                values.pop(fld.id, None)

    def field_by_name(self, name: str) -> Field | None:
        """The field called ``name`` (case-insensitive), if any."""
        with self.lock:
            return next((f for f in self.fields.values() if f.name.lower() == name.lower()), None)

    def set_indexed(self, field_ref: int | str, indexed: bool = True) -> None:
        """Index (or un-index) a custom field, as Emarsys support would on request."""
        with self.lock:
            (self.indexed.add if indexed else self.indexed.discard)(field_ref)

    def is_indexed(self, fld: Field) -> bool:
        """Whether ``fld`` may serve as ``key_id`` (2015 otherwise)."""
        return fld.id == EMAIL or fld.id in self.indexed or fld.name in self.indexed

    def resolve_key(self, key_id: Any) -> int | str:
        """A ``key_id`` as a field id, or ``"id"``; raises ContactError 2004/2015."""
        if str(key_id) == INTERNAL_ID:
            return INTERNAL_ID
        text = str(key_id)
        fld = self.fields.get(int(text)) if text.isdecimal() else None
        if fld is None or fld.read_only:
            raise ContactError(2004, f"Invalid key field id: {key_id}")
        if not self.is_indexed(fld):
            raise ContactError(2015, f"No index on the key column: {fld.id} ({fld.name})")
        return fld.id

    # -- lookups ---------------------------------------------------------------------
    def find(self, key: int | str, value: Any) -> set[int]:
        """Internal ids of the contacts whose field ``key`` (or ``"id"``) holds ``value``."""
        with self.lock:
            if value is None or value == "":
                return set()
            if key == INTERNAL_ID:
                cid = int(value) if str(value).isdecimal() else -1
                return {cid} if cid in self.contacts else set()
            fid = int(key)
            fld = self.fields.get(fid)
            try:
                stored = normalize_value(fld, value) if fld else str(value)
            except InvalidValue:
                return set()
            if stored is None:
                return set()
            return set(self._index_for(fid).get(index_form(fid, stored), ()))

    def find_contacts(self, field_id: int, value: Any) -> list[int]:
        """Test helper: sorted ids of contacts whose field holds ``value`` (any field)."""
        return sorted(self.find(field_id, value))

    def contact(self, contact_id: int) -> dict[str, str | None]:
        """A copy of one contact's fields, keyed by field-id strings (KeyError if unknown)."""
        with self.lock:
            return {str(k): v for k, v in self.contacts[int(contact_id)].items()}

    def _index_for(self, fid: int) -> dict[str, set[int]]:
        index = self._index.get(fid)
        if index is None:  # built on first use: not every field needs an index
            index = {}
            for cid, values in self.contacts.items():
                if values.get(fid) is not None:
                    index.setdefault(index_form(fid, values[fid] or ""), set()).add(cid)
            self._index[fid] = index
        return index

    # -- writes ----------------------------------------------------------------------
    def _set_fields(self, cid: int, values: dict[int, str | None], event: str | None,
                    at: float | None = None) -> bool:
        """Write values to a contact, keeping indexes and the change history right: an
        e-mail or opt-in change is a ChangeEvent from ``event`` (None: getchanges does not
        see it). True when it made one."""
        contact = self.contacts.get(cid)
        if contact is None:
            contact = self.contacts[cid] = {}
        indexes = self._index
        changed = False
        for fid, new in values.items():
            old = contact.get(fid)
            if old == new:
                continue
            if fid in indexes:  # most fields have no index
                index = indexes[fid]
                if old is not None:
                    index.get(index_form(fid, old), set()).discard(cid)
                if new is not None:
                    index.setdefault(index_form(fid, new), set()).add(cid)
            contact[fid] = new
            if fid in CHANGE_FIELDS:
                changed = True
        if changed and event is not None:
            self.changes.append(ChangeEvent(self.clock() if at is None else at, cid, event))
            return True
        return False

    def _drop_contact(self, cid: int) -> dict[int, str | None]:
        """Remove a contact from the account, its indexes and every list; its fields."""
        contact = self.contacts.pop(cid)
        for fid, index in self._index.items():
            value = contact.get(fid)
            if value is not None:
                index.get(index_form(fid, value), set()).discard(cid)
        self.forget_member(cid)
        return contact

    def _new_contact_id(self) -> int:
        self._next_contact_id += 1
        return self._next_contact_id - 1

    def _check_values(self, raw: dict[str, Any], key: int | str) -> dict[int, str | None]:
        """Field-id strings -> stored values; raises ContactError 2006/2007."""
        values: dict[int, str | None] = {}
        writable = self._writable
        for name, value in raw.items():
            hit = writable.get(name)
            if hit is None:
                if key == INTERNAL_ID and name == INTERNAL_ID:
                    continue
                hit = self._writable_field(name)
            fid, normalize = hit
            try:
                values[fid] = normalize(value)
            except InvalidValue as exc:
                raise ContactError(2007, str(exc)) from None
        return values

    def _writable_field(self, name: Any) -> tuple[int, Callable[[Any], str | None]]:
        """The field a contact's key ``name`` writes (cached); raises ContactError 2006."""
        fld = self.fields.get(int(name)) if str(name).isdecimal() else None
        if fld is None:
            raise ContactError(2006, f"Invalid field id: {name}")
        if fld.read_only:
            raise ContactError(2006, f"Field {name} ({fld.name}) is read-only")
        hit = (fld.id, value_normalizer(fld))
        if type(name) is str:  # what JSON sends; a bool or int key must not alias it
            self._writable[name] = hit
        return hit

    # -- upsert ----------------------------------------------------------------------
    def upsert(self, key_id: Any, contacts: list[Any], *, create: bool,
               create_only: bool = False, list_id: int | None = None) -> UpsertResult:
        """``PUT /contact`` (``create``: create_if_not_exists=1) or ``POST /contact``
        (``create_only``: 2009 when the key exists). Per-contact failures land in
        ``errors`` keyed by the key value; the rest is written."""
        result = UpsertResult()
        with self.lock:
            # Undocumented whether a bad list id fails the whole call; the sandbox fails it
            # whole (nothing written), the strictest reading, so a client must treat 2020 as
            # "the list is gone: look it up again" rather than as per-contact noise.
            if list_id is not None and list_id not in self.lists:
                raise RequestFailed(400, 2020, f"Invalid contact list id: {list_id}")
            key_error: ContactError | None = None
            try:
                key: int | str = self.resolve_key(key_id)
            except ContactError as exc:
                key, key_error = "", exc
            key_name = str(key_id)
            for raw in contacts:
                key_value = _key_value(raw, key_name)
                try:
                    if key_error is not None:
                        raise key_error
                    cid, created = self._upsert_one(key, key_value, raw, create, create_only)
                except ContactError as exc:
                    result.errors[key_value] = {str(exc.code): exc.text}
                    continue
                result.ids.append(cid if created else str(cid))
                entry = WriteEntry(cid, dict(raw) if key != INTERNAL_ID else
                                   {k: v for k, v in raw.items() if k != INTERNAL_ID})
                self._writes.setdefault(cid, []).append(entry)
                result.writes.append(entry)
                if list_id is not None:
                    self.lists[list_id].members.add(cid)
        return result

    def _upsert_one(self, key: int | str, key_value: str, raw: Any, create: bool,
                    create_only: bool) -> tuple[int, bool]:
        if not isinstance(raw, dict):
            raise ContactError(2006, "A contact must be an object of field ids to values")
        injected = self._injected.get((str(key), key_value)) if self._injected else None
        if injected is not None:
            raise ContactError(*injected)
        if key_value == "":
            raise ContactError(2005, f"No value provided for key field: {key}")
        values = self._check_values(raw, key)
        found = self._find_key(key, key_value, values)
        if len(found) > 1:
            raise ContactError(2010, f"More than one contact found with the external id: "
                                     f"{key} - {key_value}")
        if found and create_only:
            raise ContactError(2009, f"Contact with the external id already exists: {key}")
        if not found:
            if key == INTERNAL_ID or not (create or create_only):
                raise ContactError(2008, f"No contact found with the external id: "
                                         f"{key} - {key_value}")
            cid = self._new_contact_id()
            self._set_fields(cid, values, "api")
            return cid, True
        cid = next(iter(found))  # may be the index's own set: read, never change it
        self._set_fields(cid, values, "api")
        return cid, False

    def _find_key(self, key: int | str, key_value: str, values: dict[int, str | None]
                  ) -> Collection[int]:
        """``find(key, key_value)`` for a contact being written: when ``values`` holds
        exactly ``key_value`` for the key, normalising it again gives the same (true of every
        field but opt-in), so the index is read directly, its set not copied."""
        if isinstance(key, int) and key != OPT_IN and values.get(key) == key_value:
            return self._index_for(key).get(index_form(key, key_value), ())
        return self.find(key, key_value)

    def inject_contact_error(self, key_id: Any, key_value: Any, code: int, text: str) -> None:
        """Make every upsert of this key fail with ``code`` until cleared."""
        with self.lock:
            self._injected[(str(key_id), str(key_value))] = (int(code), text)

    def clear_contact_errors(self) -> None:
        """Forget every injected per-contact error."""
        with self.lock:
            self._injected.clear()

    def writes_for(self, contact_id: int) -> list[tuple[int, dict[str, Any]]]:
        """(request seq, {field: value as sent}) for each upsert request that wrote it."""
        with self.lock:
            return [(w.seq, dict(w.fields)) for w in self._writes.get(int(contact_id), [])]

    # -- test and demo helpers -------------------------------------------------------
    def seed_contact(self, fields: dict[Any, Any]) -> int:
        """Create a pre-existing contact (not a change getchanges reports); returns its id."""
        with self.lock:
            values = self._values_for_edit(fields)
            cid = self._new_contact_id()
            self._set_fields(cid, values, None)
            return cid

    def ui_edit(self, contact_id: int, fields: dict[Any, Any], *, at: float | None = None
                ) -> None:
        """A person edits the contact in the Emarsys UI or a form: getchanges reports an
        e-mail or opt-in change (any field may be edited, the key fields too)."""
        self._edit(contact_id, fields, "ui", at, reported=True)

    def ui_import(self, contact_id: int, fields: dict[Any, Any], *, at: float | None = None
                  ) -> None:
        """A UI data import changes the contact: getchanges does NOT report it."""
        self._edit(contact_id, fields, "import", at, reported=False)

    def campaign_response(self, contact_id: int, source: str, *, at: float | None = None,
                          in_getchanges: bool = False) -> None:
        """The contact responds to a campaign e-mail: ``email/getresponses`` reports it; an
        unsubscribe or complaint also sets opt-in to 2, which getchanges lists only with
        ``in_getchanges`` (whether it does live is undocumented: the blind spot)."""
        if source not in RESPONSE_SOURCES:
            raise ValueError(f"unknown response source {source!r}: "
                             f"one of {sorted(RESPONSE_SOURCES)}")
        with self.lock:
            when = self.clock() if at is None else float(at)
            if source in OPT_OUT_SOURCES:
                self._edit(contact_id, {OPT_IN: 2}, "campaign", when, reported=in_getchanges)
            elif int(contact_id) not in self.contacts:
                raise KeyError(f"no contact {contact_id}")
            self.responses.append(ResponseEvent(when, int(contact_id), source))

    def edits_for(self, contact_id: int) -> list[EditEntry]:
        """The changes made to a contact outside the API, oldest first."""
        with self.lock:
            return list(self._edits.get(int(contact_id), []))

    def _edit(self, contact_id: int, fields: dict[Any, Any], source: str, at: float | None,
              *, reported: bool) -> None:
        with self.lock:
            cid = int(contact_id)
            if cid not in self.contacts:
                raise KeyError(f"no contact {cid}")
            values = self._values_for_edit(fields)
            when = self.clock() if at is None else float(at)
            seen = self._set_fields(cid, values, source if reported else None, when)
            self._edits.setdefault(cid, []).append(EditEntry(
                when, source, {str(k): v for k, v in values.items()}, seen))

    def _values_for_edit(self, fields: dict[Any, Any]) -> dict[int, str | None]:
        """Checked values of a control-plane edit; ValueError names the refusal."""
        try:
            return self._check_values({str(k): v for k, v in fields.items()}, "")
        except ContactError as exc:
            raise ValueError(exc.text) from None


def _key_value(raw: Any, key_id: str) -> str:
    value = raw.get(key_id) if isinstance(raw, dict) else None
    return "" if value is None else str(value)
