"""Newsletter subscribers: read through the Emarsys module, opt-in written back.

Core Magento cannot list subscribers over REST; the Emarsys Magento 2 module's
``/V1/emarsys/subscriptions`` can (offset pages, no change filter). Writing a customer's
opt-in goes through the customer PUT, writing a guest's through the module's POST.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from magsync.errors import FatalRemoteError
from magsync.magento.client import SERVICE, MagentoClient
from magsync.magento.customers import Customer, get_customer
from magsync.model import MirrorRow

SUBSCRIPTIONS_PATH = "emarsys/subscriptions"
SUBSCRIBER_PAGE_SIZE = 1000
GUEST_BATCH = 100
MAX_PAGES = 1_000_000  # a guard against a module whose last_page never arrives


@dataclass(frozen=True)
class GuestOptIn:
    """A guest subscriber's new status: subscribed (status 1) or not (status 3)."""

    email: str
    website_id: int
    subscribed: bool


@dataclass(frozen=True)
class GuestError:
    """A guest the module refused, with its message."""

    email: str
    website_id: int | None
    message: str


def iter_subscribers(client: MagentoClient, totals: list[int] | None = None
                     ) -> Iterator[MirrorRow]:
    """Every subscriber row (per configured website, or all websites when none are
    configured); nothing with ``magento.subscribers: none``. Each website's
    ``total_count`` is appended to ``totals`` as its first page arrives (for progress)."""
    if client.cfg.subscribers == "none":
        return
    for website in client.cfg.website_ids or (None,):
        # Offset pages over a changing table can repeat a row. The mirror is keyed by
        # subscriber id and keeps the last one; remembering every id here would make
        # memory grow with the shop.
        yield from _iter_website(client, website, totals)


def _iter_website(client: MagentoClient, website: int | None,
                  totals: list[int] | None = None) -> Iterator[MirrorRow]:
    """One website's rows, page by page; after page 1 (which tells ``last_page``) up to
    ``magento.concurrency`` pages are read at once, and yielded in page order."""
    first = _read_page(client, website, 1)
    if totals is not None:
        totals.append(first.total if first.total is not None else len(first.rows))
    yield from first.rows
    last_page = min(first.last_page, MAX_PAGES)
    if not first.rows or last_page <= 1:
        return
    workers = max(1, client.cfg.concurrency)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="subscribers") as pool:
        ahead: deque[Future[_SubscriberPage]] = deque()
        next_page = 2
        while next_page <= last_page or ahead:
            while next_page <= last_page and len(ahead) < workers:
                ahead.append(pool.submit(_read_page, client, website, next_page))
                next_page += 1
            page = ahead.popleft().result()
            yield from page.rows
            if not page.rows:  # the module ran out early: stop asking
                for rest in ahead:
                    rest.cancel()
                return


@dataclass(frozen=True)
class _SubscriberPage:
    rows: list[MirrorRow]
    last_page: int
    total: int | None = None


def _read_page(client: MagentoClient, website: int | None, page: int) -> _SubscriberPage:
    params: dict[str, Any] = {"page": page, "page_size": SUBSCRIBER_PAGE_SIZE}
    if website is not None:
        params["website_id"] = website
    reply = client.call("GET", SUBSCRIPTIONS_PATH, params=params)
    if not isinstance(reply, dict) or not isinstance(reply.get("subscriptions"), list):
        raise FatalRemoteError("the Emarsys module answered GET /V1/emarsys/"
                               "subscriptions with an unexpected body", service=SERVICE)
    return _SubscriberPage([parse_subscriber(raw) for raw in reply["subscriptions"]],
                           _as_int(reply.get("last_page"), page),
                           _as_int(reply.get("total_count"), None))


def parse_subscriber(raw: dict[str, Any]) -> MirrorRow:
    """A module row (status as a string) as a ``MirrorRow``."""
    try:
        return MirrorRow(subscriber_id=int(raw["subscriber_id"]),
                         customer_id=int(raw.get("customer_id") or 0),
                         email=str(raw["subscriber_email"]),
                         status=int(raw["subscriber_status"]),
                         website_id=_as_int(raw.get("website_id"), None),
                         store_id=_as_int(raw.get("store_id"), None))
    except (KeyError, TypeError, ValueError):
        raise FatalRemoteError(f"the Emarsys module returned a malformed subscriber row: "
                               f"{sorted(raw)}", service=SERVICE) from None


class CustomerChanged(Exception):
    """The customer was saved in Magento since the caller read it: a PUT of the earlier
    reading would revert that edit. ``customer`` is the fresh reading."""

    def __init__(self, customer: Customer) -> None:
        super().__init__(f"customer {customer.get('id')} changed in Magento")
        self.customer = customer


def set_customer_subscription(client: MagentoClient, customer_id: int, subscribed: bool,
                              *, expect_updated_at: str | None = None) -> Customer | None:
    """Set a customer's newsletter opt-in; the saved customer, or None when deleted.

    Sends the whole customer as read just before (a partial body can blank attributes
    on some 2.4 releases) without its ``addresses`` key (an address list replaces the
    address book). With ``expect_updated_at`` (the ``updated_at`` of the reading the
    caller decided on), a customer saved since raises ``CustomerChanged`` instead, so
    the window for reverting a concurrent edit is the PUT itself.
    """
    customer = get_customer(client, customer_id)
    if customer is None:
        return None
    if expect_updated_at is not None \
            and str(customer.get("updated_at") or "") != expect_updated_at:
        raise CustomerChanged(customer)
    body = build_subscription_body(customer, subscribed)
    saved = client.call("PUT", f"customers/{int(customer_id)}", body={"customer": body})
    return saved if isinstance(saved, dict) else None


def build_subscription_body(customer: Customer, subscribed: bool) -> Customer:
    """The PUT body's customer: a copy without ``addresses``, ``is_subscribed`` set."""
    body = {k: v for k, v in customer.items() if k != "addresses"}
    extension = dict(body.get("extension_attributes") or {})
    extension["is_subscribed"] = bool(subscribed)
    body["extension_attributes"] = extension
    return body


def set_guest_subscriptions(client: MagentoClient, guests: Iterable[GuestOptIn], *,
                            batch_size: int = GUEST_BATCH) -> list[GuestError]:
    """Set guests' status through the module (matched by email and website), several
    per call; the module's per-guest errors. Guests without a row are skipped by the
    module silently."""
    errors: list[GuestError] = []
    batch: list[GuestOptIn] = []
    for guest in guests:
        batch.append(guest)
        if len(batch) >= batch_size:
            errors += _post_guests(client, batch)
            batch = []
    if batch:
        errors += _post_guests(client, batch)
    return errors


def _post_guests(client: MagentoClient, batch: Sequence[GuestOptIn]) -> list[GuestError]:
    body = {"subscriptions": [
        {"subscriber_email": g.email, "subscriber_status": g.subscribed,
         "website_id": g.website_id, "customer_id": 0} for g in batch]}
    reply = client.call("POST", SUBSCRIPTIONS_PATH, body=body)
    if not isinstance(reply, dict):
        raise FatalRemoteError("the Emarsys module answered POST /V1/emarsys/subscriptions "
                               "with an unexpected body", service=SERVICE)
    if reply.get("status") == "ok" and not reply.get("errors"):
        return []
    sites = {g.email.lower(): g.website_id for g in batch}
    out = []
    for e in reply.get("errors") or []:
        email = str(e.get("email") or e.get("subscriber_email") or "")
        out.append(GuestError(email, _as_int(e.get("website_id"), sites.get(email.lower())),
                              str(e.get("message") or "rejected")))
    if not out:  # "status": "error" with nothing itemised: the whole batch failed
        msg = str(reply.get("message") or reply.get("status") or "rejected")
        out = [GuestError(g.email, g.website_id, msg) for g in batch]
    return out


def _as_int(value: Any, default: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
