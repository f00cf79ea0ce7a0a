"""What to send for one contact, given what magsync last sent. Pure code.

``plan_send`` diffs a ``Contact`` against its ``ContactRecord`` (only changed fields, plus
the key; list roles not yet joined), ``record_after_send`` gives the record to save once
Emarsys accepted the contact, and ``plan_identity`` decides, before a first send, whether
an existing Emarsys contact is attached to, adopted, or left alone (SPEC section 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from magsync.consent import OptinDecision, parse_optin
from magsync.model import OPTIN, Contact, ContactRecord

_ABSENT = object()  # never equal to a value, so a field not sent before is sent


# Not frozen: one is built per contact per run, and a frozen __init__ costs about
# three times as much. Treat it as immutable all the same.
@dataclass(slots=True)
class Send:
    """One contact's part of an upsert: ``payload`` is keyed on ``contact.key_field``."""

    payload: dict[str, Any]
    join_lists: frozenset[str] = frozenset()
    first_send: bool = False


def plan_send(contact: Contact, record: ContactRecord | None, decision: OptinDecision, *,
              on_empty: str, restart: bool = False) -> Send | None:
    """The fields to send for ``contact``, or None when nothing changed.

    Fields whose value differs from ``record.sent`` are sent (all of them on a first
    send or ``restart``); opt-in follows ``decision`` alone. With ``on_empty: skip`` an
    empty Magento value is never sent; with ``clear`` it is sent as "" when it differs
    from what was sent. The key field is always in the payload.
    """
    key_field = str(contact.key_field)
    clear = on_empty == "clear"
    payload: dict[str, Any]
    if (record is None or restart) and not clear:
        # A first send (an export is nearly all of them): every non-empty value. A
        # truthy value is kept at once; opt-in and key are taken out after the copy.
        payload = {fid: value for fid, value in contact.fields.items()
                   if value or (value is not None and value != "")}
        payload.pop(OPTIN, None)
        payload.pop(key_field, None)
    else:
        previous: Mapping[str, Any] = {} if record is None or restart else record.sent
        payload = {}
        # Runs for every contact of every sync: one dict lookup per field, no membership
        # test followed by an index.
        for fid, value in contact.fields.items():
            if value is None or value == "":
                if not clear:
                    continue
                value = ""
            if previous.get(fid, _ABSENT) != value and fid != OPTIN \
                    and fid != key_field:
                payload[fid] = value
    if decision.send is not None:
        payload[OPTIN] = decision.send
    joined = record.lists if record is not None else frozenset()
    join_lists = frozenset(contact.lists - joined)
    if not payload and not join_lists and not (restart or record is None):
        return None
    payload[key_field] = contact.key_value
    return Send(payload=payload, join_lists=join_lists, first_send=record is None)


def record_after_send(contact: Contact, record: ContactRecord | None, send: Send | None,
                      decision: OptinDecision, emarsys_id: str | None = None
                      ) -> ContactRecord:
    """The record to save for a contact Emarsys accepted (never for a rejected one)."""
    sent: dict[str, Any] = dict(record.sent) if record is not None else {}
    lists = record.lists if record is not None else frozenset()
    if send is not None:
        sent.update(send.payload)
        if send.join_lists:
            lists = lists | send.join_lists
    if decision.record:
        sent.update(decision.record)
    return ContactRecord(
        key=contact.key, customer_id=contact.customer_id,
        subscriber_id=contact.subscriber_id, email=contact.email,
        emarsys_id=emarsys_id or (record.emarsys_id if record is not None else None),
        sent=sent, lists=lists)


# ---------------------------------------------------------------------------------------
# First-send identity (SPEC section 3, rules 4 and 6)


# Not frozen: one is built per contact per run, and a frozen __init__ costs about
# three times as much. Treat it as immutable all the same.
@dataclass(slots=True)
class IdentityPlan:
    """What to do before a contact's first upsert.

    ``kind``: "attach" (update the contact found by subscriber id, keyed on
    ``key_id``, to carry the customer id), "adopt" (update the one key-less email match,
    keyed on its internal ``id``), "create" (just upsert), "ambiguous" (report and
    queue, do not send), "unanswered" (the lookup came back with an error: queue, do
    not send). ``update`` is the one-contact body of that update (None for
    create/ambiguous); ``emarsys_optin`` is the opt-in of the contact the upsert will
    land on ("1", "2" or None), for ``decide_send``.
    """

    kind: str
    key_id: str | None = None
    update: dict[str, Any] | None = None
    emarsys_id: str | None = None
    emarsys_optin: str | None = None
    reason: str | None = None
    ignored: tuple[str, ...] = field(default_factory=tuple)


def plan_identity(contact: Contact, by_subscriber: list[dict[str, Any]] | None,
                  by_email: list[dict[str, Any]]) -> IdentityPlan:
    """Decide attach / adopt / create / ambiguous from what ``getdata`` returned.

    ``by_subscriber``: rows found by the contact's subscriber id (None when it has none
    or it was not looked up); ``by_email``: rows found by its email. Rows are getdata
    results: "id", the key field ids, "31", "3", all as strings.
    """
    if not by_subscriber and not by_email:  # nearly every first send of an export
        return _CREATE
    customer_key, subscriber_key = (str(f) for f in contact.key_fields)
    if by_subscriber:
        plan = _plan_by_subscriber(contact, by_subscriber, customer_key, subscriber_key)
        if plan is not None:
            return plan
    own = [r for r in by_email if _value(r, str(contact.key_field)) == contact.key_value]
    if own:
        return IdentityPlan("create", emarsys_id=_value(own[0], "id"),
                            emarsys_optin=_optin(own[0]))
    keyless = [r for r in by_email
               if not _value(r, customer_key) and not _value(r, subscriber_key)]
    others = tuple(_value(r, "id") or "?" for r in by_email if r not in keyless)
    if len(keyless) > 1:
        ids = ", ".join(_value(r, "id") or "?" for r in keyless)
        return IdentityPlan("ambiguous", ignored=others,
                            reason=f"email {contact.email} matches {len(keyless)} Emarsys "
                                   f"contacts without a Magento key (ids {ids})")
    if len(keyless) == 1:
        row = keyless[0]
        update = {"id": _value(row, "id"), **_key_values(contact)}
        return IdentityPlan("adopt", key_id="id", update=update, emarsys_id=_value(row, "id"),
                            emarsys_optin=_optin(row), ignored=others)
    return IdentityPlan("create", ignored=others)


# The plan of a contact that nothing in Emarsys matched: shared, as every plan is treated
# as immutable.
_CREATE = IdentityPlan("create")


def _plan_by_subscriber(contact: Contact, rows: list[dict[str, Any]], customer_key: str,
                        subscriber_key: str) -> IdentityPlan | None:
    """Rule 4: a guest who registered keeps the contact found by subscriber id."""
    if len(rows) > 1:
        return IdentityPlan("ambiguous", reason=f"subscriber id {contact.subscriber_id} "
                                                f"is on {len(rows)} Emarsys contacts")
    row = rows[0]
    holder = _value(row, customer_key)
    if contact.customer_id is None or holder == str(contact.customer_id):
        # Already ours: the upsert keyed on our own key lands on it.
        return IdentityPlan("create", emarsys_id=_value(row, "id"), emarsys_optin=_optin(row))
    if holder:
        return IdentityPlan("ambiguous", reason=f"subscriber id {contact.subscriber_id} is "
                                                f"on the Emarsys contact of customer {holder}")
    return IdentityPlan("attach", key_id=subscriber_key, update=_key_values(contact),
                        emarsys_id=_value(row, "id"), emarsys_optin=_optin(row))


def _key_values(contact: Contact) -> dict[str, str]:
    customer_key, subscriber_key = (str(f) for f in contact.key_fields)
    keys = {str(contact.key_field): contact.key_value}
    if contact.customer_id is not None:
        keys[customer_key] = str(contact.customer_id)
    if contact.subscriber_id is not None:
        keys[subscriber_key] = str(contact.subscriber_id)
    return keys


def _value(row: Mapping[str, Any], key: str) -> str | None:
    value = row.get(key)
    text = "" if value is None or value is False else str(value).strip()
    return text or None


def _optin(row: Mapping[str, Any]) -> str | None:
    value = parse_optin(row.get(OPTIN))
    return str(value) if value is not None else None
