"""Emarsys metadata (the field list, choice lists and contact lists) kept in the state
file for an hour, so that a minutely ``sync-realtime`` need not ask Emarsys for it.

What is kept is what the Emarsys client caches per run (``EmarsysClient.memo``): the
``GET /field`` list, each ``GET /field/{id}/choice`` list, and ``GET /contactlist``, and
the country tables built from the choice lists (``util.countries``). A run
that may use the copy (``sync-realtime``) seeds its client with it while it is younger
than ``LIFETIME`` and was read from the same Emarsys account; every other run reads
Emarsys afresh and stores what it read. The checks that run on the metadata (every mapped
field exists and fits, the key fields are the bound ones) run on the copy too, and when
one fails on it the run reads Emarsys again before it reports anything. A run that hears
from Emarsys that a field or list is invalid (2004/2006/2020/3004, or a value it rejects
with 2007) drops the copy, so the next run reads afresh.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from magsync.config import Config
from magsync.emarsys.client import EmarsysClient
from magsync.emarsys.contacts import ContactList
from magsync.emarsys.fields import Choice, EmarsysField
from magsync.state import StateStore
from magsync.state.binding import accounts_of
from magsync.util.countries import known_tables, remember_tables, table_key
from magsync.util.logs import get_logger
from magsync.util.timeutil import from_iso, to_iso, utcnow

log = get_logger("sync")

META_KEY = "emarsys_metadata"
LIFETIME = timedelta(hours=1)
_SKEW = timedelta(minutes=5)  # a copy stamped further in the future is not trusted
_VERSION = 1
_CHOICES = "choices:"


def _account(cfg: Config) -> str:
    """The Emarsys account the copy belongs to (the API user only as its fingerprint)."""
    b = accounts_of(cfg)
    return f"{b.emarsys_url.rstrip('/')}|{b.auth_method}|{b.api_user}"


class MetadataCache:
    """The copy of one account's Emarsys metadata in a state file."""

    def __init__(self, store: StateStore, cfg: Config, *,
                 now: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.account = _account(cfg)
        self.now = now
        self.loaded_at: datetime | None = None  # when the copy in use was read from Emarsys
        self._seeded: set[str] = set()
        self._countries: set[str] = set()  # the country tables the copy held

    def seed(self, client: EmarsysClient) -> bool:
        """Give ``client`` the stored copy when it is fresh and this account's; True
        when it did."""
        data = self._read()
        if data is None:
            return False
        try:
            values = _decode(data)
            countries = data.get("countries") or {}
            remember_tables(countries)
            self._countries = set(countries)
        except (ValueError, KeyError, TypeError):
            log.debug("the stored Emarsys metadata cannot be read; reading Emarsys")
            return False
        for key, value in values.items():
            client.remember(key, value)
            self._seeded.add(key)
        self.loaded_at = from_iso(data["fetched_at"])
        return True

    def save(self, client: EmarsysClient) -> None:
        """Store what ``client`` holds now, unless it is exactly the copy it was given
        (an idle run writes nothing). The stamp stays that of the oldest part."""
        held = {k: v for k, v in client.remembered().items() if _cacheable(k)}
        if not held:
            return
        encoded = _encode(held)
        keys = {table_key([(str(i), str(label)) for i, label in choices])
                for choices in encoded["choices"].values()}
        countries = {k: v for k, v in known_tables().items() if k in keys}
        if set(held) <= self._seeded and set(countries) <= self._countries:
            return
        stamp = self.loaded_at if self.loaded_at is not None else self.now()
        self.store.set_meta(META_KEY, json.dumps(
            {"version": _VERSION, "account": self.account, "fetched_at": to_iso(stamp),
             "countries": countries, **encoded}, sort_keys=True))

    def clear(self) -> None:
        """Drop the copy: the next run reads Emarsys."""
        with self.store.atomic() as c:
            c.execute("DELETE FROM meta WHERE key = ?", (META_KEY,))

    def _read(self) -> dict[str, Any] | None:
        raw = self.store.get_meta(META_KEY)
        if not raw:
            return None
        try:
            data = json.loads(raw)
            fetched = from_iso(data["fetched_at"])
            if data.get("version") != _VERSION or data.get("account") != self.account:
                return None
        except (ValueError, KeyError, TypeError):
            log.debug("the stored Emarsys metadata cannot be read; reading Emarsys")
            return None
        now = self.now()
        if not now - LIFETIME < fetched <= now + _SKEW:
            return None
        return dict(data)


def _cacheable(key: str) -> bool:
    return key in ("fields", "lists") or key.startswith(_CHOICES)


def _encode(held: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"choices": {}}
    for key, value in held.items():
        if key == "fields":
            out["fields"] = [[f.id, f.name, f.type] for f in value]
        elif key == "lists":
            out["lists"] = [[x.id, x.name] for x in value]
        else:
            out["choices"][key[len(_CHOICES):]] = [[c.id, c.label] for c in value]
    return out


def _decode(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "fields" in data:
        out["fields"] = [EmarsysField(int(i), str(n), str(t)) for i, n, t in data["fields"]]
    if "lists" in data:
        out["lists"] = [ContactList(int(i), str(n)) for i, n in data["lists"]]
    for fid, choices in (data.get("choices") or {}).items():
        out[_CHOICES + str(fid)] = [Choice(int(i), str(label)) for i, label in choices]
    return out


def bind_lists(store: StateStore, cfg: Config, list_ids: dict[str, int | None]) -> None:
    """Record the list id of each role; a role whose list is not the recorded one (the
    list was deleted and created again, or the config names another) is dropped from
    every contact, so the next ``sync-background`` adds them all to the list."""
    for role, list_id in list_ids.items():
        if list_id is None:
            continue
        bound = store.list_binding(role)
        if bound == list_id:
            continue
        dropped = store.bind_list(role, list_id, drop_members=bound is not None)
        if bound is not None:
            log.warning("the Emarsys contact list %r is now id %s (the state file knew id "
                        "%s): sync-background adds the %d contact(s) recorded in the old one",
                        list_name(cfg, role), list_id, bound, dropped)


def list_name(cfg: Config, role: str) -> str:
    """The configured name of the contact list of ``role`` (customers or subscribers)."""
    return cfg.contacts.customers.list if role == "customers" else cfg.contacts.subscribers.list
