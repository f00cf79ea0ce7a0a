"""What a sync reads from the subscriber mirror: the subscribers that differ from what
magsync last sent, and the failsafe queue's keys."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from magsync.consent import parse_optin
from magsync.model import MAGENTO_OPTIN, STATUS_OPTIN, Customer, MirrorRow
from magsync.state import StateStore


def mirror_says_subscribed(rows: list[MirrorRow]) -> bool:
    return any(r.status == 1 for r in rows)


def subscription_disagrees(customer: Customer, rows: list[MirrorRow]) -> bool:
    """Magento's ``is_subscribed`` hint differs from the mirror: the mirror is stale."""
    ext = customer.get("extension_attributes") or {}
    if "is_subscribed" not in ext:
        return False
    return bool(ext["is_subscribed"]) != mirror_says_subscribed(rows)


def iter_subscriber_changes(store: StateStore, *, skip_customers: set[int] | None = None,
                            skip_all_customers: bool = False, chunk: int = 1000,
                            among: Iterable[MirrorRow] | None = None
                            ) -> Iterator[tuple[list[MirrorRow], set[int]]]:
    """The mirror compared with the per-contact records (SPEC 3, "Finding what changed"),
    a chunk of subscriber rows at a time so memory stays flat: (guest rows to diff, ids of
    customers whose subscriber row differs from what was sent). ``among``: only these
    mirror rows (a change read's), instead of the whole mirror. Last, after a look at the
    whole mirror, the customers whose row vanished from it (deleted in the newsletter
    grid): an opt-out to send."""
    skip = skip_customers or set()
    rows: list[MirrorRow] = []
    for row in store.mirror_rows() if among is None else among:
        rows.append(row)
        if len(rows) >= chunk:
            yield _changes_in(store, rows, skip, skip_all_customers)
            rows = []
    if rows:
        yield _changes_in(store, rows, skip, skip_all_customers)
    if not skip_all_customers and among is None:  # a change read tells nothing is gone
        vanished = vanished_customers(store) - skip
        if vanished:
            yield [], vanished


def vanished_customers(store: StateStore) -> set[int]:
    """Customers sent with a subscriber row that the (complete) mirror no longer holds,
    unless magsync already sent their opt-out. A mirror without a single row is not
    trusted for this: a module answering an empty list must not unsubscribe everyone."""
    if store.mirror_count() == 0:
        return set()
    return {cid for cid, sent in store.customers_missing_from_mirror()
            if parse_optin(sent) != 2}


def _changes_in(store: StateStore, rows: list[MirrorRow], skip: set[int], skip_all: bool
                ) -> tuple[list[MirrorRow], set[int]]:
    guests = [r for r in rows if r.customer_id == 0]
    linked: dict[int, list[MirrorRow]] = {}
    if not skip_all:
        for r in rows:
            if r.customer_id != 0 and r.customer_id not in skip:
                linked.setdefault(r.customer_id, []).append(r)
    changed: set[int] = set()
    if linked:
        # A customer's other rows may sit in another chunk; then it is read once more
        # and found unchanged, never sent wrongly: its contact uses the whole mirror.
        records = store.get_contacts(f"c:{cid}" for cid in linked)
        for cid, own in linked.items():
            record = records.get(f"c:{cid}")
            if record is None or _row_differs(own, record.subscriber_id,
                                              record.sent.get(MAGENTO_OPTIN)):
                changed.add(cid)
    return guests, changed


def _row_differs(rows: list[MirrorRow], sent_sid: int | None, sent_m31: Any) -> bool:
    ids = {r.subscriber_id for r in rows}
    if sent_sid not in ids:
        return True
    row = next(r for r in rows if r.subscriber_id == sent_sid)
    optin = STATUS_OPTIN.get(row.status)
    return optin is not None and optin != parse_optin(sent_m31)


def split_queue_keys(keys: Iterable[str]) -> tuple[set[int], set[int]]:
    """Queue keys ``c:ID`` / ``s:ID`` into customer ids and subscriber ids."""
    customers: set[int] = set()
    guests: set[int] = set()
    for key in keys:
        kind, _, value = key.partition(":")
        if value.isdigit():
            (customers if kind == "c" else guests).add(int(value))
    return customers, guests
