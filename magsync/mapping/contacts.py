"""Turning one Magento person into a ``Contact``: the Emarsys values magsync wants that
contact to hold, its key and its Magento-side opt-in. Pure code; inputs never modified."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from magsync.mapping.resolve import ResolvedMapping
from magsync.model import OPTIN, STATUS_OPTIN, Contact, MirrorRow

# Shared, not built per customer: frozensets are immutable.
_CUSTOMER_LISTS = frozenset({"customers"})
_SUBSCRIBED_CUSTOMER_LISTS = frozenset({"customers", "subscribers"})




def customer_contact(customer: Mapping[str, Any], subscriber_rows: list[MirrorRow],
                     m: ResolvedMapping) -> Contact:
    """The contact of one Magento customer (with its subscriber row, if any)."""
    customer_id = int(customer["id"])
    id_text = str(customer_id)
    fields, problems = _mapped_fields(customer, m)
    email = customer.get("email")
    if not m.maps_email:
        fields[m.email_key] = email or None
    row = choose_subscriber_row(customer, subscriber_rows) if subscriber_rows else None
    if m.subscribers_mode == "none":
        row = None
        optin = is_subscribed_optin(customer)
    else:
        optin = STATUS_OPTIN.get(row.status) if row is not None else 2
    fields[m.customer_key] = id_text
    lists = _CUSTOMER_LISTS
    if row is not None:
        fields[m.subscriber_key] = str(row.subscriber_id)
        lists = _SUBSCRIBED_CUSTOMER_LISTS
    if optin is not None:
        fields[OPTIN] = optin
    return Contact(
        "c:" + id_text, m.customer_key_field, id_text, customer_id,
        row.subscriber_id if row is not None else None, email, fields, optin, lists,
        tuple(problems) if problems else (), (m.customer_key_field, m.subscriber_key_field))


def guest_contact(row: MirrorRow, m: ResolvedMapping) -> Contact:
    """The contact of a subscriber without a customer account: email, opt-in, key."""
    optin = STATUS_OPTIN.get(row.status)
    fields: dict[str, Any] = {str(m.email_field): row.email or None,
                              str(m.subscriber_key_field): str(row.subscriber_id)}
    if optin is not None:
        fields[OPTIN] = optin
    return Contact(
        key=f"s:{row.subscriber_id}", key_field=m.subscriber_key_field,
        key_value=str(row.subscriber_id), customer_id=None, subscriber_id=row.subscriber_id,
        email=row.email, fields=fields, optin=optin, lists=frozenset({"subscribers"}),
        key_fields=(m.customer_key_field, m.subscriber_key_field))


def choose_subscriber_row(customer: Mapping[str, Any], rows: list[MirrorRow]
                          ) -> MirrorRow | None:
    """The customer's subscriber row for the customer's own website.

    A row without a website id is taken only when no row names the website; among
    several, the lowest subscriber id wins so that the choice is stable.
    """
    if not rows:  # most customers have no subscription at all
        return None
    customer_id = int(customer["id"])
    website = customer.get("website_id")
    own = [r for r in rows if r.customer_id == customer_id]
    exact = [r for r in own if website is not None and r.website_id is not None
             and int(r.website_id) == int(website)]
    candidates = exact or [r for r in own if r.website_id is None or website is None]
    return min(candidates, key=lambda r: r.subscriber_id) if candidates else None


def is_subscribed_optin(customer: Mapping[str, Any]) -> int | None:
    """Magento's ``extension_attributes.is_subscribed`` as an Emarsys opt-in: 1, 2, or
    None when the customer carries no flag."""
    ext = customer.get("extension_attributes")
    flag = ext.get("is_subscribed") if isinstance(ext, Mapping) else None
    # Without the flag Magento told us nothing; sending 2 could unsubscribe someone.
    if flag is None:
        return None
    return 1 if flag is True or str(flag).lower() in ("1", "true") else 2


def _mapped_fields(customer: Mapping[str, Any], m: ResolvedMapping
                   ) -> tuple[dict[str, Any], list[str]]:
    fields: dict[str, Any] = {}
    problems: list[str] = []
    addresses: dict[str, Any] = {}
    get = customer.get
    # Runs for every entry of every customer: one tuple per entry (see ``steps``).
    for key, top, read, value, path in m.steps:
        try:
            fields[key] = value(get(top) if top is not None else read(customer, addresses))
        except ValueError as exc:
            problems.append(f"{path}: {exc}")
    return fields, problems
