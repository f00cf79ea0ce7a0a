"""Writing an opt-in into Magento: a customer by customer PUT, a guest through the
subscriber source (the Emarsys module, or Magento's database); the mirror follows, so the
next sync does not mistake it for a Magento change."""

from __future__ import annotations

from dataclasses import replace

from magsync.errors import AuthError, FatalRemoteError, RemoteError
from magsync.magento.subscriber_source import GuestWrite
from magsync.magento.subscribers import set_customer_subscription
from magsync.model import Contact
from magsync.state import StateStore
from magsync.sync.runtime import Runtime

SUBSCRIBED, UNSUBSCRIBED = 1, 3
NOT_APPLIED = "not applied: "  # how a write the configuration does not allow is described


class MagentoOptinWriter:
    """Callable ``(contact, optin) -> problem or None``; safe to call from workers.

    With ``refusals_only`` only Magento's refusal of this one write (a 4xx) becomes a
    problem; outages, credentials and configuration errors propagate and stop the run.
    """

    def __init__(self, rt: Runtime, store: StateStore, *, refusals_only: bool = False
                 ) -> None:
        self.rt = rt
        self.store = store
        self.refusals_only = refusals_only

    def __call__(self, contact: Contact, optin: int, *,
                 expect_updated_at: str | None = None) -> str | None:
        """Write it; ``expect_updated_at``: see ``set_customer_subscription`` (its
        ``CustomerChanged`` goes to the caller)."""
        subscribed = optin == 1
        try:
            if contact.customer_id is not None:
                saved = set_customer_subscription(self.rt.magento, contact.customer_id,
                                                  subscribed,
                                                  expect_updated_at=expect_updated_at)
                if saved is None:
                    return f"customer {contact.customer_id} no longer exists in Magento"
            else:
                problem = self._write_guest(contact, subscribed)
                if problem:
                    return problem
        except RemoteError as exc:
            if self.refusals_only and not _is_refusal(exc):
                raise
            return f"Magento refused the opt-in change: {exc.message}"
        self._follow_mirror(contact, subscribed)
        return None

    def guest_refusal(self, optin: int) -> str | None:
        """Why the configuration does not let a guest's opt-in ``optin`` be written into
        Magento (reported as not applied, never retried), or None when it does."""
        source = self.rt.subscribers
        return source.guest_write_refusal(optin == 1) if source is not None else None

    def _write_guest(self, contact: Contact, subscribed: bool) -> str | None:
        row = self.store.mirror_get(contact.subscriber_id or 0)
        source = self.rt.subscribers
        if row is None or not contact.email or source is None:
            return f"subscriber {contact.subscriber_id} is not in the subscriber list"
        result: GuestWrite = source.write_guest_optin(replace(row, email=contact.email),
                                                      subscribed)
        if result.status == "not_applied":
            return NOT_APPLIED + result.detail
        if result.status == "refused":
            return result.detail or "Magento refused the write"
        return None

    def _follow_mirror(self, contact: Contact, subscribed: bool) -> None:
        if contact.subscriber_id is None:
            return
        row = self.store.mirror_get(contact.subscriber_id)
        if row is not None:
            status = SUBSCRIBED if subscribed else UNSUBSCRIBED
            self.store.upsert_mirror([replace(row, status=status)])


def _is_refusal(exc: RemoteError) -> bool:
    """Magento refused this one request (validation, 404), not every request."""
    return isinstance(exc, FatalRemoteError) and not isinstance(exc, AuthError)
