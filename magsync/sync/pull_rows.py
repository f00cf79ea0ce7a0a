"""The rows ``pull-optin`` reads, and whether a row may be written where its keys point
(SPEC 4). Pure code: no request, no state file.

A row names a Magento person by its key fields, which anyone can edit in Emarsys; before
anything is written the row must prove it belongs to that person: plain decimal keys in
Magento's id range, the Emarsys contact magsync recorded for that key (or, where none is
recorded yet, the same email), a website magsync syncs, a subscriber id that is that
person's, and an opt-in only for a contact magsync has sent or adopted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from magsync.consent import parse_optin
from magsync.errors import FatalRemoteError
from magsync.model import EMAIL_FIELD, OPTIN_FIELD, ContactRecord, MirrorRow

MAX_MAGENTO_ID = 4294967295  # Magento's entity ids are unsigned 32-bit integers
# ASCII digits only ([0-9], not \d), no sign, exponent, underscore or leading zero; a
# numeric field may come back as "12.0".
_KEY = re.compile(r"[1-9][0-9]{0,9}(?:\.0+)?")
USER_ID = "user_id"  # the export's first column: the contact's internal Emarsys id


@dataclass(frozen=True)
class ChangeRow:
    """One row: the ids it carries, its Emarsys contact and email, its opt-in as exported
    (by getchanges, or a campaign unsubscribe confirmed by getdata)."""

    customer_id: int | None
    subscriber_id: int | None
    optin: str
    bad_key: str | None = None  # a key value that is not a Magento id
    user_id: str = ""
    email: str = ""


@dataclass(frozen=True)
class Columns:
    """The CSV headers of the key fields, opt-in, email and the internal id."""

    customer: str | None
    subscriber: str | None
    optin: str
    email: str | None = None
    user_id: str | None = None


def parse_key(text: str) -> int | None:
    """A key field value as a Magento id, or None when it is not a plain decimal integer
    within Magento's id range (``1e1``, ``6_0``, ``٣``, ``-4``, ``012`` are not)."""
    if _KEY.fullmatch(text) is None:
        return None
    number = int(text.partition(".")[0])
    return number if number <= MAX_MAGENTO_ID else None


def find_columns(header: Iterable[str], names: Mapping[int, str], customer_field: int,
                 subscriber_field: int) -> Columns:
    """Which headers hold the key fields, opt-in and email (exports name columns by
    field label; a numeric header is taken as a field id)."""
    header = list(header)
    folded = {h.strip().casefold(): h for h in header}

    def column(fid: int) -> str | None:
        name = names.get(fid) or str(fid)
        return name if name in header else folded.get(name.strip().casefold(),
                                                      folded.get(str(fid)))

    optin = column(OPTIN_FIELD)
    customer, subscriber = column(customer_field), column(subscriber_field)
    if optin is None or (customer is None and subscriber is None):
        raise FatalRemoteError(
            f"the Emarsys export has no opt-in or key column (columns: {header})",
            service="Emarsys", hint="check emarsys.key_fields with `magsync check`")
    return Columns(customer, subscriber, optin, column(EMAIL_FIELD),
                   folded.get(USER_ID))


def parse_row(row: Mapping[str, str], cols: Columns) -> ChangeRow:
    """A CSV row as a ``ChangeRow`` (empty keys are None)."""
    (customer_id, subscriber_id), bad = parse_keys(
        (row.get(col) or "").strip() if col else "" for col in (cols.customer, cols.subscriber))
    return ChangeRow(customer_id, subscriber_id, (row.get(cols.optin) or "").strip(), bad,
                     user_id=_cell(row, cols.user_id), email=_cell(row, cols.email))


def parse_keys(texts: Iterable[str]) -> tuple[list[int | None], str | None]:
    """The key fields' values as Magento ids (None when empty), and the last value that is
    not one."""
    ids: list[int | None] = []
    bad = None
    for text in texts:
        number = parse_key(text) if text else None
        if text and number is None:
            bad = text
        ids.append(number)
    return ids, bad


def _cell(row: Mapping[str, str], col: str | None) -> str:
    return (row.get(col) or "").strip() if col else ""


# -- ownership -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Person:
    """The Magento person a row points at, as magsync knows them: ``key`` names the state
    record (``record``) the row's decision goes in; ``email`` and ``website_id`` are
    Magento's; ``customer_id`` None is a guest subscriber."""

    key: str
    customer_id: int | None
    email: str | None
    website_id: int | None
    record: ContactRecord | None


def subscriber_problem(row: ChangeRow, customer_id: int | None,
                       mirror: MirrorRow | None) -> str | None:
    """Why the row's subscriber id is not that person's in the mirror (None: it is, or
    the row carries none). A guest's must be a guest row."""
    sid = row.subscriber_id
    if sid is None:
        return None
    if mirror is None:
        return f"subscriber {sid} is not in Magento's subscriber list"
    owner = mirror.customer_id or None
    if owner != customer_id:
        whose = f"customer {owner}'s" if owner else "a guest's"
        return (f"subscriber {sid} is {whose} in Magento, not "
                + (f"customer {customer_id}'s" if customer_id else "a guest's"))
    return None


def ownership_problem(row: ChangeRow, person: Person, websites: Iterable[int]) -> str | None:
    """Why ``row`` may not be written to ``person`` (SPEC 4), or None when it may."""
    sites = tuple(websites)
    if sites and person.website_id not in sites:
        return (f"{person.key} belongs to website {person.website_id}, not to "
                f"magento.website_ids {list(sites)}")
    recorded = person.record.emarsys_id if person.record is not None else None
    if recorded:
        if row.user_id != recorded:
            return (f"Emarsys contact {row.user_id or '(no id)'} is not the contact "
                    f"magsync recorded for {person.key} ({recorded}): its key field was "
                    "edited in Emarsys, or it is another contact")
    elif not row.email or not person.email \
            or row.email.strip().lower() != person.email.strip().lower():
        return (f"the Emarsys contact's email {row.email or '(none)'} is not "
                f"{person.key}'s email in Magento, and magsync has no Emarsys id recorded "
                "for it yet")
    if person.record is None and parse_optin(row.optin) == 1:
        return (f"an opt-in for {person.key}, which magsync never sent or adopted: "
                "opt-ins are only taken for contacts magsync knows")
    return None
