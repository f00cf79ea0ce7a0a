"""Value types every layer shares: the contact magsync wants, what it last sent, a
subscriber row, a check result, and the Emarsys field ids with a fixed meaning.

Nothing here imports another magsync module, so the pure planning modules (mapping,
diff, consent) and the clients can use these types without reaching the state file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EMAIL_FIELD = 3  # Emarsys system field ids
OPTIN_FIELD = 31
EMAIL = str(EMAIL_FIELD)  # the same ids as keys of a contact's field values
OPTIN = str(OPTIN_FIELD)
# In ``ContactRecord.sent``: the Magento opt-in magsync last synced (see consent.py).
MAGENTO_OPTIN = "_m31"
# The contact lists by role, in the order an upsert picks the one it carries.
LIST_ROLES = ("customers", "subscribers")
# Magento subscriber status -> Emarsys opt-in; 2 (not active) and 4 (unconfirmed) send
# nothing so they never overwrite a confirmed state.
STATUS_OPTIN: dict[int, int | None] = {1: 1, 2: None, 3: 2, 4: None}

Customer = dict[str, Any]  # a Magento customer as the REST API returns it


# Not frozen: one is built per contact per run, and a frozen __init__ costs about
# three times as much. Treat it as immutable all the same.
@dataclass(slots=True)
class Contact:
    """What magsync wants one Emarsys contact to hold.

    ``fields`` maps field ids (strings) to converted values; a mapped value that is
    empty in Magento is present as None (``on_empty`` decides what that does); one that
    could not be converted is absent and described in ``problems``. ``optin`` is the
    Magento-side opt-in (1, 2, or None when Magento has no definite state).
    ``key_fields`` holds (customer key field, subscriber key field) so that identity
    checks can tell whether an Emarsys row carries either.
    """

    key: str
    key_field: int
    key_value: str
    customer_id: int | None
    subscriber_id: int | None
    email: str | None
    fields: dict[str, Any]
    optin: int | None
    lists: frozenset[str]
    problems: tuple[str, ...] = ()
    key_fields: tuple[int, int] = (0, 0)


@dataclass
class ContactRecord:
    """What magsync last sent (or applied) for one Emarsys contact.

    ``key`` is ``c:<customer id>`` or ``s:<subscriber id>``; ``sent`` maps Emarsys field
    ids (as strings) to the value last sent; ``lists`` holds the list roles joined
    (``customers``, ``subscribers``).
    """

    key: str
    customer_id: int | None = None
    subscriber_id: int | None = None
    email: str | None = None
    emarsys_id: str | None = None
    sent: dict[str, Any] = field(default_factory=dict)
    lists: frozenset[str] = frozenset()


@dataclass(frozen=True)
class MirrorRow:
    """One Magento newsletter subscriber, as last read."""

    subscriber_id: int
    customer_id: int
    email: str
    status: int
    website_id: int | None = None
    store_id: int | None = None


@dataclass(frozen=True)
class CheckResult:
    """One line of ``magsync check``: what was checked, whether it passed, and why."""

    name: str
    ok: bool
    detail: str
    # What a failure means for `magsync check`'s exit code: 2 a configuration or setup
    # problem, 3 a remote system unreachable or refusing the credentials (SPEC exit codes).
    exit_code: int = 2
    warning: bool = False  # passed, but something deserves a look (WARN)

    @property
    def mark(self) -> str:
        """OK, WARN or FAIL."""
        return "FAIL" if not self.ok else ("WARN" if self.warning else "OK")
