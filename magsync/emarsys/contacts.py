"""Emarsys contacts: batch upsert with per-contact errors, contact lists, getdata.

Per-contact errors of a 200 reply are returned as data keyed by key value; only those
that mean the configuration is wrong (2015 key field not indexed, 2004/2006 invalid key
field) are raised, as ``RemoteConfigError`` (exit 2).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from magsync.emarsys.client import EmarsysApiError, EmarsysClient
from magsync.emarsys.fields import find_field, list_fields
from magsync.errors import RemoteConfigError
from magsync.util import jsoncodec

MAX_BATCH = 1000
MAX_BYTES = 8 * 1024 * 1024
MAX_LIST_ADD = 10_000
MAX_GETDATA = 1000
MAX_DELETE = 1000  # values a POST /contact/delete
ALREADY_GONE = "2008"  # "no contact found": for a deletion, the contact is gone
LIST_EXISTS = 3005
INVALID_LIST = 2020  # an upsert's contact_list_id names no list (it was deleted)
NO_SUCH_LIST = 3004  # a list call names a list that does not exist
NOT_INDEXED = 2015
INVALID_KEY = frozenset({2004, 2006})
_ENVELOPE_RESERVE = 1024  # bytes for key_id, contact_list_id and the JSON around contacts


@dataclass
class UpsertResult:
    """What one upsert request did: contact ids, and per-contact errors by key value."""

    ids: list[str] = field(default_factory=list)
    errors: dict[str, dict[str, str]] = field(default_factory=dict)  # key -> {code: text}

    def failed(self, key: Any) -> bool:
        """Whether the contact with this key value was rejected."""
        return str(key) in self.errors


@dataclass(frozen=True)
class ContactList:
    """An Emarsys contact list; ``created`` when this call created it."""

    id: int
    name: str
    created: bool = False


@dataclass
class GetDataResult:
    """``getdata``: matched contacts (field id string -> value, plus ``id``) and per-key
    errors (``{"key", "errorCode", "errorMsg"}``: 2008 not found, 2010 several contacts
    hold the key, ...)."""

    result: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def errors_by_key(self, *, fold: bool = False, ignore: Iterable[str] = ()
                      ) -> dict[str, dict[str, str]]:
        """{key value: {code: message}} (keys lower-cased with ``fold``), without the
        codes in ``ignore`` (e.g. 2008, which only says "not found")."""
        skip = set(ignore)
        out: dict[str, dict[str, str]] = {}
        for e in self.errors:  # nearly all of them 2008 in an export: skipped first
            code = e.get("errorCode")
            code = "" if code is None else str(code)
            if code in skip:
                continue
            key = str(e.get("key") if e.get("key") is not None else "")
            key = key.strip().lower() if fold else key
            out.setdefault(key, {})[code] = str(e.get("errorMsg") or "")
        return out


# ---------------------------------------------------------------------------------------
# Upsert


def merge_duplicates(contacts: Iterable[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """One contact per key value, in first-seen order; later values win field by field."""
    merged: dict[Any, dict[str, Any]] = {}
    keyless: list[dict[str, Any]] = []
    for c in contacts:
        value = c.get(key)
        if value in (None, ""):
            keyless.append(dict(c))  # Emarsys reports 2005 for it; nothing to merge on
        elif str(value) in merged:
            merged[str(value)].update(c)
        else:
            merged[str(value)] = dict(c)
    return [*merged.values(), *keyless]


def _size(contact: dict[str, Any]) -> int:
    # What the request will carry: the same encoder's bytes, plus a separator.
    return len(jsoncodec.dumps(contact)) + 1


def split_batches(contacts: Iterable[dict[str, Any]], key: str,
                  batch_size: int = MAX_BATCH, max_bytes: int = MAX_BYTES
                  ) -> Iterator[list[dict[str, Any]]]:
    """Batches of at most ``batch_size`` contacts and ``max_bytes`` of JSON, each key
    value once per batch (a repeated key is merged into the earlier contact, the last
    value winning). A single contact larger than ``max_bytes`` gets a batch of its own.
    """
    budget = max(1, max_bytes - _ENVELOPE_RESERVE)
    batch: dict[str, dict[str, Any]] = {}
    sizes: dict[str, int] = {}
    keyless: list[dict[str, Any]] = []
    used = 0
    for c in contacts:
        value = c.get(key)
        k = None if value in (None, "") else str(value)
        if k is not None and k in batch:
            c = {**batch[k], **c}
            grown = _size(c) - sizes[k]
            if used + grown <= budget or len(batch) + len(keyless) == 1:
                batch[k], sizes[k], used = c, sizes[k] + grown, used + grown
                continue
            # Merged, it no longer fits: it moves to the next batch, still only once.
            del batch[k]
            used -= sizes.pop(k)
        size = _size(c)
        if (batch or keyless) and (len(batch) + len(keyless) >= batch_size
                                   or used + size > budget):
            yield [*batch.values(), *keyless]
            batch, sizes, keyless, used = {}, {}, [], 0
        if k is None:
            keyless.append(dict(c))
        else:
            batch[k], sizes[k] = dict(c), size
        used += size
    if batch or keyless:
        yield [*batch.values(), *keyless]


def upsert_batch(client: EmarsysClient, key_field_id: int | str,
                 contacts: Sequence[dict[str, Any]], *, create: bool = True,
                 contact_list_id: int | None = None) -> UpsertResult:
    """Exactly one ``PUT /contact`` (the caller keeps it within the size limits).

    ``create=False`` only updates existing contacts (unknown keys give 2008).
    """
    key = str(key_field_id)
    body: dict[str, Any] = {"key_id": key, "contacts": merge_duplicates(contacts, key)}
    if contact_list_id is not None:
        body["contact_list_id"] = int(contact_list_id)
    params = {"create_if_not_exists": 1} if create else None
    data = client.call("PUT", "/contact/", json=body, params=params) or {}
    result = UpsertResult(ids=[str(i) for i in data.get("ids") or []],
                          errors=_errors_by_key(data.get("errors")))
    _raise_config_errors(client, key, result.errors)
    return result


def upsert_all(client: EmarsysClient, key_field_id: int | str,
               contacts: Sequence[dict[str, Any]], *, batch_size: int = MAX_BATCH,
               max_bytes: int = MAX_BYTES, create: bool = True,
               contact_list_id: int | None = None
               ) -> Iterator[tuple[list[dict[str, Any]], UpsertResult]]:
    """Upsert ``contacts`` in as few ``PUT /contact`` requests as the limits allow:
    (the batch as sent, its result) per request, batched as ``split_batches`` does.
    With ``contact_list_id`` every request also adds its contacts to that list (a
    deleted list fails the request: ``EmarsysApiError`` with reply code 2020).

    The usual case, one request's worth of distinct keys, is encoded once and sent as
    those bytes: sizing each contact first would encode everything twice.
    """
    key = str(key_field_id)
    if len(contacts) <= batch_size:
        keyless = [c for c in contacts if c.get(key) in (None, "")]
        batch = [c for c in contacts if c.get(key) not in (None, "")]
        if len({str(c[key]) for c in batch}) == len(batch):
            batch += keyless  # split_batches' order: keyed contacts, then key-less ones
            envelope: dict[str, Any] = {"key_id": key, "contacts": batch}
            if contact_list_id is not None:
                envelope["contact_list_id"] = int(contact_list_id)
            body = jsoncodec.dumps(envelope)
            if len(body) <= max_bytes - _ENVELOPE_RESERVE:
                yield batch, _put_contacts(client, key, body, create)
                return
    for batch in split_batches(contacts, key, batch_size, max_bytes):
        yield batch, upsert_batch(client, key, batch, create=create,
                                  contact_list_id=contact_list_id)


def _put_contacts(client: EmarsysClient, key: str, body: bytes, create: bool
                  ) -> UpsertResult:
    """``upsert_batch`` for a body already encoded (one batch of distinct keys)."""
    resp = client.http.request("PUT", "/contact/", data=body,
                               params={"create_if_not_exists": 1} if create else None,
                               headers={"Content-Type": "application/json"})
    data = client.unwrap(resp)[2] or {}
    result = UpsertResult(ids=[str(i) for i in data.get("ids") or []],
                          errors=_errors_by_key(data.get("errors")))
    _raise_config_errors(client, key, result.errors)
    return result


def _errors_by_key(raw: Any) -> dict[str, dict[str, str]]:
    if isinstance(raw, list):  # getdata's shape: [{"key", "errorCode", "errorMsg"}]
        out: dict[str, dict[str, str]] = {}
        for e in raw:
            if isinstance(e, dict) and e.get("key") is not None:
                out.setdefault(str(e["key"]), {})[str(e.get("errorCode") or "")] = \
                    str(e.get("errorMsg") or "")
        return out
    if not isinstance(raw, dict):
        return {}
    return {str(k): {str(code): str(text) for code, text in v.items()}
            if isinstance(v, dict) else {"": str(v)} for k, v in raw.items()}


def error_text(errors: dict[str, str]) -> str:
    """One contact's per-contact errors (code -> message) as one line."""
    return "; ".join(f"{code}: {text}" for code, text in errors.items())


def _raise_config_errors(client: EmarsysClient, key: str,
                         errors: dict[str, dict[str, str]]) -> None:
    codes = {int(c) for errs in errors.values() for c in errs if c.isdigit()}
    if not codes & (INVALID_KEY | {NOT_INDEXED}):
        return
    label = _field_label(client, key)
    if NOT_INDEXED in codes:
        raise RemoteConfigError(
            f"Emarsys has no index on the key field {label} (error 2015)",
            service="Emarsys", code=NOT_INDEXED,
            hint=f"Emarsys must index field {label}: ask Emarsys support to index it")
    raise RemoteConfigError(
        f"Emarsys does not accept {label} as a key field (error "
        f"{min(codes & INVALID_KEY)})", service="Emarsys", code=min(codes & INVALID_KEY),
        hint="check emarsys.key_fields: run `magsync fields` to see the field ids")


def _field_label(client: EmarsysClient, key: str) -> str:
    try:
        fld = find_field(client, key)
    except Exception:  # a label for an error message must not hide the error itself
        fld = None
    return f"{fld.name!r} (id {fld.id})" if fld else f"id {key}"


# ---------------------------------------------------------------------------------------
# Contact lists


def read_lists(client: EmarsysClient) -> list[ContactList]:
    """Every contact list of the account (one request)."""
    data = client.call("GET", "/contactlist") or []
    return [ContactList(int(x["id"]), str(x.get("name") or "")) for x in data]


def list_lists(client: EmarsysClient, *, refresh: bool = False) -> list[ContactList]:
    """Every contact list of the account, read once per client unless ``refresh``."""
    if refresh:
        client.forget("lists")
    return client.memo("lists", lambda: read_lists(client))


def find_list(client: EmarsysClient, name: str,
              known: list[ContactList] | None = None) -> ContactList | None:
    """The contact list called ``name`` (exact, else case-insensitive), if any;
    ``known`` is the account's lists when already read."""
    lists = read_lists(client) if known is None else known
    exact = [x for x in lists if x.name == name]
    loose = [x for x in lists if x.name.lower() == name.strip().lower()]
    matches = exact or loose
    return matches[0] if matches else None


def find_or_create_list(client: EmarsysClient, name: str, key_field_id: int | str,
                        known: list[ContactList] | None = None) -> ContactList:
    """The list called ``name``, created (empty) when missing."""
    found = find_list(client, name, known)
    if found is not None:
        return found
    try:
        data = client.call("POST", "/contactlist",
                           json={"key_id": str(key_field_id), "name": name,
                                 "external_ids": []})
    except EmarsysApiError as exc:
        if exc.reply_code != LIST_EXISTS:
            raise
        found = find_list(client, name)  # created meanwhile by another run
        if found is None:
            raise
        return found
    made = ContactList(int(data["id"]), name, created=True)
    held = client.remembered().get("lists")
    if held is not None:  # what list_lists keeps, with the new list
        client.remember("lists", [*held, ContactList(made.id, name)])
    return made


def add_to_list(client: EmarsysClient, list_id: int, key_field_id: int | str,
                external_ids: Iterable[Any], *, chunk: int = MAX_LIST_ADD
                ) -> tuple[int, dict[str, Any]]:
    """Add existing contacts to a list, ``chunk`` ids a call: (inserted, errors by id)."""
    inserted = 0
    errors: dict[str, Any] = {}
    for data in _list_calls(client, list_id, "add", key_field_id, external_ids, chunk):
        inserted += int(data.get("inserted_contacts") or 0)
        if isinstance(data.get("errors"), dict):
            errors.update({str(k): v for k, v in data["errors"].items()})
    return inserted, errors


def remove_from_list(client: EmarsysClient, list_id: int, key_field_id: int | str,
                     external_ids: Iterable[Any], *, chunk: int = MAX_LIST_ADD
                     ) -> dict[str, dict[str, str]]:
    """``POST /contactlist/{id}/delete``: take contacts off a list without deleting
    them, ``chunk`` ids a call; per-id errors (2008: not on the list or no such contact)."""
    errors: dict[str, dict[str, str]] = {}
    for data in _list_calls(client, list_id, "delete", key_field_id, external_ids, chunk):
        errors.update(_errors_by_key(data.get("errors")))
    return errors


def _list_calls(client: EmarsysClient, list_id: int, verb: str, key_field_id: int | str,
                external_ids: Iterable[Any], chunk: int) -> Iterator[Any]:
    """The replies of ``POST /contactlist/{id}/{verb}``, ``chunk`` ids a call."""
    ids = [str(i) for i in external_ids]
    step = max(1, min(chunk, MAX_LIST_ADD))
    for start in range(0, len(ids), step):
        yield client.call("POST", f"/contactlist/{int(list_id)}/{verb}",
                          json={"key_id": str(key_field_id),
                                "external_ids": ids[start:start + step]}) or {}


# ---------------------------------------------------------------------------------------
# Deleting contacts


def delete_contacts(client: EmarsysClient, key_field_id: int | str, values: Iterable[Any],
                    *, chunk: int = MAX_DELETE
                    ) -> Iterator[tuple[list[str], dict[str, dict[str, str]]]]:
    """``POST /contact/delete`` keyed on a key field, ``chunk`` (at most 1000) values a
    call: (the values of the call, its per-value errors) per call, so a caller can
    commit each confirmed call before the next. A value Emarsys answers with no error,
    or with 2008 (no such contact: already gone), is deleted; a value that matches
    several contacts (2010) is not. It cannot be undone."""
    key = str(key_field_id)
    wanted = [str(v) for v in values]
    step = max(1, min(chunk, MAX_DELETE))
    for start in range(0, len(wanted), step):
        batch = wanted[start:start + step]
        data = client.call("POST", "/contact/delete", json={"key_id": key, key: batch}) or {}
        errors = _errors_by_key(data.get("errors") if isinstance(data, dict) else None)
        _raise_config_errors(client, key, errors)
        yield batch, errors


# ---------------------------------------------------------------------------------------
# getdata


def get_data(client: EmarsysClient, key_field_id: int | str, key_values: Iterable[Any],
             fields: Iterable[int | str], *, chunk: int = MAX_GETDATA) -> GetDataResult:
    """Contacts by key value, ``chunk`` keys a request; unknown keys land in errors."""
    keys = [str(k) for k in key_values]
    wanted = [int(f) if str(f).isdigit() else f for f in fields]
    out = GetDataResult()
    step = max(1, min(chunk, MAX_GETDATA))
    for start in range(0, len(keys), step):
        data = client.call("POST", "/contact/getdata", json={
            "keyId": str(key_field_id), "keyValues": keys[start:start + step],
            "fields": wanted}) or {}
        if isinstance(data.get("result"), list):  # `false` when nothing was found
            out.result.extend(data["result"])
        out.errors.extend(_getdata_errors(data.get("errors")))
    return out


def _getdata_errors(raw: Any) -> list[dict[str, Any]]:
    """getdata's errors as a list of ``{"key", "errorCode", "errorMsg"}``; the per-key
    map the other batch calls use (``{key: {code: text}}``) is read too."""
    if isinstance(raw, list):
        return [e for e in raw if isinstance(e, dict)]
    if isinstance(raw, dict):
        return [{"key": k, "errorCode": code, "errorMsg": text}
                for k, v in raw.items() if isinstance(v, dict) for code, text in v.items()]
    return []


__all__ = ["ContactList", "GetDataResult", "UpsertResult", "add_to_list",
           "delete_contacts", "error_text", "find_list", "find_or_create_list", "get_data",
           "list_fields", "list_lists", "merge_duplicates", "read_lists",
           "remove_from_list", "split_batches", "upsert_all", "upsert_batch"]
