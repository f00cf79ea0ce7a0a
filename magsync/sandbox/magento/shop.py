"""The sandbox shop: Magento customers and newsletter subscribers, held in memory.

No HTTP here. Customers are stored as dicts in the shape Magento's REST API returns them
(minus ``extension_attributes``, which is derived from the subscriber rows when a
customer is serialised), so the simulator can filter on the same field names a client
sends. Indexes keep keyset reads cheap on 100,000 customers: an id-sorted list (one per
website too) and an ``(updated_at, id)``-sorted list. Every mutation goes through a
method here so the indexes and the pre-serialised JSON stay consistent.
"""

from __future__ import annotations

import bisect
import copy
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from magsync.sandbox.magento.records import (
    ADDRESS_KEYS,
    CUSTOMER_KEYS,
    STATUS_NOT_ACTIVE,
    STATUS_SUBSCRIBED,
    STATUS_UNSUBSCRIBED,
    STORE_OF_WEBSITE,
    ShopError,
    Subscriber,
    format_time,
    utc_now,
)
from magsync.util import jsoncodec


class Shop:
    """Customers and subscribers with the indexes the simulator needs; thread-safe."""

    def __init__(self, *, now: Callable[[], datetime] | None = None) -> None:
        self.now: Callable[[], datetime] = now or utc_now
        self.lock = threading.RLock()
        self.customers: dict[int, dict[str, Any]] = {}
        self.subscribers: dict[int, Subscriber] = {}
        self._ids: list[int] = []
        self._ids_by_website: dict[int, list[int]] = {}
        self._by_updated: list[tuple[str, int]] = []
        self._customers_by_email: dict[str, set[int]] = {}
        self._subs_by_email: dict[str, set[int]] = {}
        self._json: dict[int, bytes] = {}
        self._next_customer_id = 1
        self._next_address_id = 1
        self._next_subscriber_id = 1

    # -- loading ---------------------------------------------------------------------
    def load(self, customers: Iterable[dict[str, Any]], subscribers: Iterable[Subscriber]
             ) -> None:
        """Bulk-load records (the generator's path); rebuilds every index once."""
        with self.lock:
            for c in customers:
                self.customers[c["id"]] = c
            for s in subscribers:
                self.subscribers[s.subscriber_id] = s
            self._rebuild_indexes()

    def _rebuild_indexes(self) -> None:
        self._ids = sorted(self.customers)
        self._ids_by_website = {}
        self._customers_by_email = {}
        for cid in self._ids:
            c = self.customers[cid]
            self._ids_by_website.setdefault(c["website_id"], []).append(cid)
            self._customers_by_email.setdefault(c["email"].lower(), set()).add(cid)
        self._by_updated = sorted((c["updated_at"], cid) for cid, c in self.customers.items())
        self._subs_by_email = {}
        for s in self.subscribers.values():
            self._subs_by_email.setdefault(s.subscriber_email.lower(), set()).add(
                s.subscriber_id)
        self._json.clear()
        addr_ids = [a["id"] for c in self.customers.values() for a in c.get("addresses", [])]
        self._next_customer_id = max(self._ids, default=0) + 1
        self._next_address_id = max(addr_ids, default=0) + 1
        self._next_subscriber_id = max(self.subscribers, default=0) + 1

    # -- reading ---------------------------------------------------------------------
    def timestamp(self) -> str:
        """The shop clock as Magento writes it into ``updated_at``."""
        return format_time(self.now())

    def is_subscribed(self, email: str) -> bool:
        """True when ANY subscriber row with this email is subscribed (any website)."""
        rows = self._subs_by_email.get(email.lower(), ())
        return any(self.subscribers[s].subscriber_status == STATUS_SUBSCRIBED for s in rows)

    def customer_dict(self, cid: int) -> dict[str, Any]:
        """The customer as the REST API shows it (a deep copy)."""
        return copy.deepcopy(self.customer_view(cid))

    def customer_view(self, cid: int) -> dict[str, Any]:
        """The customer as the REST API shows it, sharing the stored values: to read (or
        serialise) under the shop lock, never to change."""
        record = self.customers[cid]
        return {**record, "extension_attributes": {
            "is_subscribed": self.is_subscribed(record["email"])}}

    def customer_json(self, cid: int) -> bytes:
        """The customer's REST JSON, serialised once and cached until it changes."""
        body = self._json.get(cid)
        if body is None:
            with self.lock:
                body = jsoncodec.dumps(self.customer_view(cid))
                self._json[cid] = body
        return body

    def id_span(self, low: int, high: int, website_id: int | None = None
                ) -> tuple[list[int], int, int]:
        """``(ids, start, stop)``: ``ids[start:stop]`` are the ids in ``[low, high]``
        (of one website, if given), ascending; found by bisection, nothing copied."""
        ids = self._ids if website_id is None else self._ids_by_website.get(website_id, [])
        start = bisect.bisect_left(ids, low)
        return ids, start, max(start, bisect.bisect_right(ids, high))  # empty if low > high

    def ids_between(self, low: int, high: int, website_id: int | None = None) -> list[int]:
        """Customer ids with ``low <= id <= high`` in ascending order, by bisection."""
        ids, start, stop = self.id_span(low, high, website_id)
        return ids[start:stop]

    def ids_updated_between(self, low: str, high: str, *, low_strict: bool = False,
                            high_strict: bool = False) -> list[int]:
        """Ids whose ``updated_at`` lies between ``low`` and ``high`` (inclusive unless
        strict; text comparison, which is UTC order), in updated_at order."""
        index = self._by_updated
        lo = bisect.bisect_right(index, (low, 1 << 62)) if low_strict \
            else bisect.bisect_left(index, (low, -1))
        hi = bisect.bisect_left(index, (high, -1)) if high_strict \
            else bisect.bisect_right(index, (high, 1 << 62))
        return [cid for _, cid in index[lo:hi]]

    def subscribers_of(self, email: str) -> list[Subscriber]:
        """Every subscriber row with this email, in id order."""
        rows = self._subs_by_email.get(email.lower(), ())
        return sorted((self.subscribers[s] for s in rows), key=lambda s: s.subscriber_id)

    def find_subscriber(self, email: str, website_id: int) -> Subscriber | None:
        """The row for this email on this website (Magento keeps at most one)."""
        for sub in self.subscribers_of(email):
            if sub.website_id == website_id:
                return sub
        return None

    def find_customer(self, email: str, website_id: int) -> int | None:
        """The id of the customer with this email on this website, if any."""
        for cid in self._customers_by_email.get(email.lower(), ()):
            if self.customers[cid]["website_id"] == website_id:
                return cid
        return None

    def stats(self) -> dict[str, Any]:
        """Counts for the control plane and demos."""
        by_status: dict[str, int] = {}
        for s in self.subscribers.values():
            by_status[str(s.subscriber_status)] = by_status.get(str(s.subscriber_status), 0) + 1
        return {"customers": len(self.customers), "subscribers": len(self.subscribers),
                "subscribers_by_status": by_status,
                "max_customer_id": self._ids[-1] if self._ids else 0}

    # -- customer mutations ------------------------------------------------------------
    def create_customer(self, *, email: str, firstname: str, lastname: str,
                        website_id: int = 1, **fields: Any) -> int:
        """Register a new customer (no addresses unless given); returns its id."""
        with self.lock:
            self._check_email_free(email, website_id, None)
            cid = self._next_customer_id
            self._next_customer_id += 1
            stamp = self.timestamp()
            record: dict[str, Any] = {
                "id": cid, "group_id": 1, "created_at": stamp, "updated_at": stamp,
                "created_in": "Default Store View", "email": email, "firstname": firstname,
                "lastname": lastname, "store_id": STORE_OF_WEBSITE.get(website_id, 1),
                "website_id": website_id, "addresses": [], "disable_auto_group_change": 0,
                "custom_attributes": [],
            }
            addresses = fields.pop("addresses", [])
            record.update({k: v for k, v in fields.items() if k in CUSTOMER_KEYS})
            self._set_addresses(record, addresses)
            self.customers[cid] = record
            self._ids.append(cid)
            self._ids_by_website.setdefault(website_id, []).append(cid)
            self._customers_by_email.setdefault(email.lower(), set()).add(cid)
            bisect.insort(self._by_updated, (stamp, cid))
            return cid

    def edit_customer(self, cid: int, **changes: Any) -> None:
        """Change top-level attributes (an admin edit); bumps ``updated_at``."""
        with self.lock:
            record = self._customer(cid)
            if "email" in changes:
                self.change_email(cid, changes.pop("email"))
            addresses = changes.pop("addresses", None)
            record.update({k: v for k, v in changes.items() if k in CUSTOMER_KEYS})
            if addresses is not None:
                self._set_addresses(record, addresses)
            self._touch(cid)

    def change_email(self, cid: int, email: str) -> None:
        """Change the login email; the customer's own subscriber rows follow it."""
        with self.lock:
            record = self._customer(cid)
            old = record["email"]
            self._check_email_free(email, record["website_id"], cid)
            self._customers_by_email.get(old.lower(), set()).discard(cid)
            self._customers_by_email.setdefault(email.lower(), set()).add(cid)
            record["email"] = email
            for sub in list(self.subscribers.values()):
                if sub.customer_id == cid:
                    self._set_subscriber_email(sub, email)
            self._invalidate_email(old)
            self._touch(cid)

    def register_guest(self, email: str, website_id: int = 1, *, firstname: str = "Guest",
                       lastname: str = "Shopper", **fields: Any) -> int:
        """A guest subscriber creates an account: their subscriber row gets the new id."""
        with self.lock:
            cid = self.create_customer(email=email, firstname=firstname, lastname=lastname,
                                       website_id=website_id, **fields)
            sub = self.find_subscriber(email, website_id)
            if sub is not None and sub.customer_id == 0:
                sub.customer_id = cid
            return cid

    def delete_customer(self, cid: int) -> None:
        """Delete a customer and (as Magento's plugin does) its subscriber rows."""
        with self.lock:
            record = self._customer(cid)
            del self.customers[cid]
            self._ids.pop(bisect.bisect_left(self._ids, cid))
            site = self._ids_by_website[record["website_id"]]
            site.pop(bisect.bisect_left(site, cid))
            self._by_updated.pop(bisect.bisect_left(self._by_updated, (record["updated_at"], cid)))
            self._customers_by_email.get(record["email"].lower(), set()).discard(cid)
            for sub in [s for s in self.subscribers.values() if s.customer_id == cid]:
                self.delete_subscriber(sub.subscriber_id)
            self._json.pop(cid, None)

    def save_customer(self, cid: int, incoming: dict[str, Any]) -> None:
        """Apply a REST PUT body: listed attributes overwrite, an ``addresses`` key
        replaces the address book (addresses not in it are deleted); bumps updated_at."""
        with self.lock:
            record = self._customer(cid)
            email = incoming.get("email", record["email"])
            if email != record["email"]:
                self.change_email(cid, email)
            record.update({k: v for k, v in incoming.items() if k in CUSTOMER_KEYS
                           and k not in ("email", "website_id")})
            if "addresses" in incoming:
                self._set_addresses(record, incoming["addresses"] or [],
                                    incoming.get("default_billing"),
                                    incoming.get("default_shipping"))
            self._touch(cid)

    # -- subscriber mutations ----------------------------------------------------------
    def add_subscriber(self, email: str, *, website_id: int = 1,
                       status: int = STATUS_SUBSCRIBED, customer_id: int = 0) -> int:
        """Add a subscriber row (a guest unless ``customer_id``); returns its id."""
        with self.lock:
            if self.find_subscriber(email, website_id) is not None:
                raise ShopError(f"{email} already has a subscriber row on website {website_id}")
            sid = self._next_subscriber_id
            self._next_subscriber_id += 1
            self.subscribers[sid] = Subscriber(sid, email, website_id,
                                               STORE_OF_WEBSITE.get(website_id, 1),
                                               customer_id, status, self.timestamp())
            self._subs_by_email.setdefault(email.lower(), set()).add(sid)
            self._invalidate_email(email)
            return sid

    def set_subscriber_status(self, sid: int, status: int) -> bool:
        """Set a row's status; stamps ``change_status_at`` when it changes. Does NOT
        bump the customer's ``updated_at`` (Magento does not either). True if changed."""
        with self.lock:
            sub = self.subscribers.get(sid)
            if sub is None:
                raise ShopError(f"no subscriber {sid}")
            if status not in (1, 2, 3, 4):
                raise ShopError(f"invalid subscriber status {status}")
            if sub.subscriber_status == status:
                return False
            sub.subscriber_status = status
            sub.change_status_at = self.timestamp()
            self._invalidate_email(sub.subscriber_email)
            return True

    def subscribe(self, sid: int) -> bool:
        """Status 1 (subscribed), as a shopper ticking the box; True if changed."""
        return self.set_subscriber_status(sid, STATUS_SUBSCRIBED)

    def unsubscribe(self, sid: int) -> bool:
        """Status 3 (unsubscribed), as the unsubscribe link does; True if changed."""
        return self.set_subscriber_status(sid, STATUS_UNSUBSCRIBED)

    def delete_subscriber(self, sid: int) -> None:
        """Remove a subscriber row."""
        with self.lock:
            sub = self.subscribers.pop(sid, None)
            if sub is None:
                raise ShopError(f"no subscriber {sid}")
            self._subs_by_email.get(sub.subscriber_email.lower(), set()).discard(sid)
            self._invalidate_email(sub.subscriber_email)

    def set_customer_subscription(self, cid: int, subscribed: bool, *,
                                  confirmation_required: bool = False) -> None:
        """What ``extension_attributes.is_subscribed`` in a PUT does: finds (or links or
        creates) the customer's row on its website; a subscribe needing confirmation
        lands in status 2."""
        with self.lock:
            record = self._customer(cid)
            website = record["website_id"]
            sub = next((s for s in self.subscribers.values()
                        if s.customer_id == cid and s.website_id == website), None)
            if sub is None:
                sub = self.find_subscriber(record["email"], website)
                if sub is not None and sub.customer_id == 0:
                    sub.customer_id = cid
            target = STATUS_UNSUBSCRIBED
            if subscribed:
                target = STATUS_NOT_ACTIVE if confirmation_required else STATUS_SUBSCRIBED
            if sub is None:
                if subscribed:
                    self.add_subscriber(record["email"], website_id=website, status=target,
                                        customer_id=cid)
                return
            if not (subscribed and sub.subscriber_status == STATUS_SUBSCRIBED):
                self.set_subscriber_status(sub.subscriber_id, target)

    # -- internals ---------------------------------------------------------------------
    def _customer(self, cid: int) -> dict[str, Any]:
        record = self.customers.get(cid)
        if record is None:
            raise ShopError(f"no customer {cid}")
        return record

    def _check_email_free(self, email: str, website_id: int, own_id: int | None) -> None:
        other = self.find_customer(email, website_id)
        if other is not None and other != own_id:
            raise ShopError("A customer with the same email address already exists in an "
                            "associated website.")

    def _touch(self, cid: int) -> None:
        """Bump ``updated_at`` to the shop clock and re-index."""
        record = self.customers[cid]
        old = (record["updated_at"], cid)
        pos = bisect.bisect_left(self._by_updated, old)
        if pos < len(self._by_updated) and self._by_updated[pos] == old:
            self._by_updated.pop(pos)
        record["updated_at"] = self.timestamp()
        bisect.insort(self._by_updated, (record["updated_at"], cid))
        self._json.pop(cid, None)

    def _invalidate_email(self, email: str) -> None:
        # is_subscribed is derived from every row with the email, so all its customers change
        for cid in self._customers_by_email.get(email.lower(), ()):
            self._json.pop(cid, None)

    def _set_subscriber_email(self, sub: Subscriber, email: str) -> None:
        self._subs_by_email.get(sub.subscriber_email.lower(), set()).discard(sub.subscriber_id)
        self._invalidate_email(sub.subscriber_email)
        sub.subscriber_email = email
        self._subs_by_email.setdefault(email.lower(), set()).add(sub.subscriber_id)
        self._invalidate_email(email)

    def _set_addresses(self, record: dict[str, Any], addresses: list[dict[str, Any]],
                       billing: Any = None, shipping: Any = None) -> None:
        """Replace the address book; unknown or foreign address ids get new ids."""
        own = {a["id"] for a in record.get("addresses", [])}
        kept: list[dict[str, Any]] = []
        for given in addresses:
            addr: dict[str, Any] = {k: copy.deepcopy(v) for k, v in given.items()
                                    if k in ADDRESS_KEYS}
            aid = given.get("id")
            if not isinstance(aid, int) or aid not in own:
                aid = self._next_address_id
                self._next_address_id += 1
            addr = {"id": aid, "customer_id": record["id"], **addr}
            for flag in ("default_billing", "default_shipping"):
                if given.get(flag) is True:
                    addr[flag] = True
            kept.append(addr)
        record["addresses"] = kept
        self._apply_defaults(record, billing, shipping)

    @staticmethod
    def _apply_defaults(record: dict[str, Any], billing: Any, shipping: Any) -> None:
        """``default_billing``/``default_shipping``: address ids as strings, pointing
        only at addresses that still exist; the address flags win."""
        ids = {str(a["id"]) for a in record["addresses"]}
        for key, given in (("default_billing", billing), ("default_shipping", shipping)):
            flagged = next((str(a["id"]) for a in record["addresses"] if a.get(key)), None)
            value = flagged or (str(given) if given is not None else record.get(key))
            if value is not None and str(value) in ids:
                record[key] = str(value)
            else:
                record.pop(key, None)
            for a in record["addresses"]:
                if str(a["id"]) == record.get(key):
                    a[key] = True
                else:
                    a.pop(key, None)
