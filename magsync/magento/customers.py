"""Reading customers: keyset pages on ``entity_id``, in parallel id ranges, prefetched.

Every read sorts by ``entity_id`` ASC and asks for ``entity_id gt <last id>``, so a
customer created, edited or deleted during the read cannot shift a page (offset paging
would repeat or skip). A change window is fixed (``updated_at`` in ``[since, until)``):
a customer edited during the read moves out of the window, and the next window, which
starts at this one's end, reads it. The next page is fetched while the caller works on
the current one (a bounded queue), and an export splits the ids into ranges read by
``magento.concurrency`` threads.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import requests

from magsync.errors import FatalRemoteError, RetriableError
from magsync.magento.client import (
    SERVICE,
    MagentoClient,
    explain_gave_up,
    fill_placeholders,
)
from magsync.magento.prefetch import ReadAhead, fan_in
from magsync.magento.search import MAX_PAGE_SIZE, SearchCriteria
from magsync.mapping.contacts import is_subscribed_optin
from magsync.model import Customer
from magsync.util.timeutil import to_magento

SEARCH_PATH = "customers/search"


@dataclass(frozen=True)
class IdRange:
    """Customer ids ``after_id < id <= upto_id`` (``upto_id`` None: no upper bound)."""

    index: int
    after_id: int
    upto_id: int | None = None


@dataclass(frozen=True)
class Window:
    """A fixed UTC change window ``[since, until)`` on ``updated_at``."""

    since: datetime
    until: datetime

    def __post_init__(self) -> None:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("a change window needs UTC-aware datetimes")
        if self.since >= self.until:
            raise ValueError(f"empty change window: {self.since} >= {self.until}")


@dataclass(frozen=True)
class Page:
    """One page of customers from one id range.

    ``last_id`` is the range's keyset position after this page: once the caller has
    safely stored ``items`` it may record that range ``range_index`` is read up to
    ``last_id``. ``done`` marks the range's last page (``items`` may then be empty).
    """

    items: list[Customer]
    range_index: int
    last_id: int
    done: bool


class ExportProgress:
    """Per-range positions of committed pages, and the one id a resume may start after.

    Pages of several ranges arrive interleaved; ``commit`` each page only after its
    customers are safe. ``safe_after_id`` is the highest id below which every customer
    is committed: pass it as ``after_id`` to resume (later ranges' committed customers
    are then read again, which a diff against the last-sent values absorbs). For an
    exact resume, store ``remaining()`` and pass it as ``ranges``.
    """

    def __init__(self, ranges: Sequence[IdRange]) -> None:
        self.ranges = sorted(ranges, key=lambda r: r.after_id)
        self.position = {r.index: r.after_id for r in ranges}
        self.finished: set[int] = set()

    def commit(self, page: Page) -> None:
        """Record that ``page`` is stored."""
        self.position[page.range_index] = max(self.position[page.range_index], page.last_id)
        if page.done:
            self.finished.add(page.range_index)

    @property
    def complete(self) -> bool:
        """True when every range's last page is committed."""
        return len(self.finished) == len(self.ranges)

    @property
    def safe_after_id(self) -> int:
        """Every customer with an id up to this one is committed."""
        safe = self.ranges[0].after_id if self.ranges else 0
        for r in self.ranges:
            if r.index not in self.finished:
                return self.position[r.index]
            safe = r.upto_id if r.upto_id is not None else self.position[r.index]
        return safe

    def remaining(self) -> list[IdRange]:
        """The unfinished ranges, each starting after its committed position."""
        return [IdRange(r.index, self.position[r.index], r.upto_id) for r in self.ranges
                if r.index not in self.finished]


def iter_all_customers(client: MagentoClient, *, after_id: int = 0,
                       ranges: Sequence[IdRange] | None = None, fields: str | None = None
                       ) -> Generator[Page, None, None]:
    """Every customer with an id above ``after_id`` (or in ``ranges``), page by page.

    With ``magento.concurrency`` > 1 the ids are split into that many ranges read in
    parallel; pages of different ranges interleave. Use ``plan_ranges`` first and pass
    its result to keep the plan for an ``ExportProgress``. ``fields`` is the response
    filter of every page (see ``MagentoClient.search``).
    """
    if ranges is None:
        ranges = plan_ranges(client, after_id)
    readers, workers = _range_readers(client, ranges, fields)
    return fan_in(readers, workers=workers, depth=workers)


def read_customers_ahead(client: MagentoClient, ranges: Sequence[IdRange], *,
                         fields: str | None = None) -> ReadAhead[Page]:
    """``iter_all_customers`` over ``ranges`` whose readers start at once; ``close()``
    it when done (also when its pages are never used)."""
    readers, workers = _range_readers(client, ranges, fields)
    return ReadAhead(readers, workers=workers, depth=workers)


def _range_readers(client: MagentoClient, ranges: Sequence[IdRange], fields: str | None
                   ) -> tuple[Sequence[Callable[[], Iterator[Page]]], int]:
    """A reader per range, and how many threads run them: ``magento.concurrency``, but
    never more than there are ranges."""
    readers = [functools.partial(read_range, client, r, fields=fields) for r in ranges]
    return readers, max(1, min(client.cfg.concurrency, len(readers)))


def iter_changed_customers(client: MagentoClient, since: datetime, until: datetime, *,
                           after_id: int = 0, fields: str | None = None
                           ) -> Generator[Page, None, None]:
    """Customers whose ``updated_at`` lies in ``[since, until)`` (UTC), by keyset on
    ``entity_id`` from ``after_id``, the next page prefetched."""
    window = Window(since, until)
    rng = IdRange(0, after_id, None)
    return fan_in([functools.partial(read_range, client, rng, window, fields=fields)],
                  workers=1, depth=1)


def plan_ranges(client: MagentoClient, after_id: int = 0, parts: int | None = None
                ) -> list[IdRange]:
    """Split ``(after_id, max id]`` into ``parts`` (default: concurrency) id ranges.

    The last range has no upper bound, so customers created during the export are read
    too.
    """
    parts = max(1, parts if parts is not None else client.cfg.concurrency)
    if parts == 1:
        return [IdRange(0, after_id, None)]
    top = find_max_customer_id(client)
    span = top - after_id
    if span <= parts:
        return [IdRange(0, after_id, None)]
    width = -(-span // parts)  # ceiling division
    bounds = [after_id + i * width for i in range(parts)] + [top]
    return [IdRange(i, bounds[i], bounds[i + 1] if i < parts - 1 else None)
            for i in range(parts)]


def find_max_customer_id(client: MagentoClient) -> int:
    """The highest customer id (within ``website_ids``), 0 in an empty shop."""
    criteria = _website_filter(client, SearchCriteria()).order_by("entity_id", "DESC")
    items = client.search(SEARCH_PATH, criteria.page(1), fields="items[id]").get("items")
    return int(items[0]["id"]) if items else 0


def count_customers(client: MagentoClient, window: Window | None = None,
                    rng: IdRange | None = None) -> int:
    """Magento's ``total_count`` for all customers, a change window or an id range (for
    progress)."""
    criteria = _window_filter(window, _website_filter(client, SearchCriteria()))
    if rng is not None:
        criteria.where("entity_id", "gt", rng.after_id)
        if rng.upto_id is not None:
            criteria.where("entity_id", "lteq", rng.upto_id)
    return int(client.search(SEARCH_PATH, criteria.page(1), fields="total_count")
               .get("total_count") or 0)


def get_customer(client: MagentoClient, customer_id: int) -> Customer | None:
    """One customer as ``GET /V1/customers/{id}`` returns it; None when deleted."""
    reply = client.call("GET", f"customers/{int(customer_id)}", missing_ok=True)
    if reply is not None and not isinstance(reply, dict):
        raise FatalRemoteError(f"Magento answered customer {customer_id} with an "
                               "unexpected body", service=SERVICE)
    return reply


def read_range(client: MagentoClient, rng: IdRange, window: Window | None = None, *,
               fields: str | None = None) -> Iterator[Page]:
    """Keyset pages of one id range, in id order, until a short page."""
    size = max(1, min(client.cfg.page_size, MAX_PAGE_SIZE))
    last = rng.after_id
    while True:
        criteria = _website_filter(client, _window_filter(window, SearchCriteria()))
        criteria.where("entity_id", "gt", last)
        if rng.upto_id is not None:
            criteria.where("entity_id", "lteq", rng.upto_id)
        criteria.order_by("entity_id", "ASC").page(size)
        items = client.search(SEARCH_PATH, criteria, fields=fields)["items"]
        last = check_keyset(items, last, rng)
        done = len(items) < size
        yield Page(items, rng.index, last, done)
        if done:
            return


def check_keyset(items: list[Customer], last: int, rng: IdRange) -> int:
    """The page's last id; an error when ids repeat, go backwards or leave the range
    (the read would otherwise loop or skip customers)."""
    for item in items:
        try:
            cid = int(item["id"])
        except (KeyError, TypeError, ValueError):
            raise FatalRemoteError("Magento returned a customer without an id",
                                   service=SERVICE) from None
        if cid <= last or (rng.upto_id is not None and cid > rng.upto_id):
            raise FatalRemoteError(
                f"Magento returned customer {cid} out of keyset order (after {last}); "
                "the customer search ignored the entity_id filter or sort order",
                service=SERVICE, hint="a search plugin may rewrite searchCriteria; report "
                                      "this with the Magento version")
        last = cid
    return last


def _website_filter(client: MagentoClient, criteria: SearchCriteria) -> SearchCriteria:
    ids = client.cfg.website_ids
    return criteria.where("website_id", "in", list(ids)) if ids else criteria


def _window_filter(window: Window | None, criteria: SearchCriteria) -> SearchCriteria:
    if window is None:
        return criteria
    # Both ends truncate to whole seconds, as updated_at is stored: consecutive windows
    # [a, b) and [b, c) then neither overlap nor leave a gap.
    return criteria.where("updated_at", "gteq", to_magento(window.since)) \
        .where("updated_at", "lt", to_magento(window.until))


def iter_customers_by_ids(client: MagentoClient, ids: Iterable[int], *,
                          fields: str | None = None) -> Iterator[list[Customer]]:
    """Pages of the customers with these ids (deleted ones are simply absent)."""
    wanted = sorted(set(ids))
    size = max(1, min(client.cfg.page_size, MAX_PAGE_SIZE))
    for start in range(0, len(wanted), size):
        chunk = wanted[start:start + size]
        criteria = SearchCriteria().where("entity_id", "in", chunk) \
            .order_by("entity_id", "ASC").page(size)
        yield list(client.search(SEARCH_PATH, criteria, fields=fields)["items"])


# -- finding deletions (SPEC 7) ---------------------------------------------------------------

ID_FIELDS = "items[id]"
ID_OPTIN_FIELDS = "items[id,extension_attributes[is_subscribed]]"
_NO_SUCH_CUSTOMER = re.compile(r"^No such entity with customerId = ")


@dataclass(frozen=True, slots=True)
class CustomerId:
    """A customer id from the id-only scan, with ``is_subscribed`` when asked for."""

    id: int
    is_subscribed: bool | None = None


def iter_customer_ids(client: MagentoClient, *, with_subscription: bool = False
                      ) -> Generator[list[CustomerId], None, None]:
    """Every customer id in Magento (every website) in ascending order, page by page,
    the next page read ahead.

    Keyset on ``entity_id`` with only the ids in the reply (plus ``is_subscribed`` with
    ``with_subscription``). An empty page ends it: ``total_count`` counts only the rows
    after the keyset, so it never says when to stop.
    """
    fields = ID_OPTIN_FIELDS if with_subscription else ID_FIELDS
    size = max(1, min(client.cfg.page_size, MAX_PAGE_SIZE))

    def pages() -> Iterator[list[CustomerId]]:
        last = 0
        while True:
            criteria = SearchCriteria().where("entity_id", "gt", last) \
                .order_by("entity_id", "ASC").page(size)
            items = client.search(SEARCH_PATH, criteria, fields=fields)["items"]
            if not items:
                return
            last = check_keyset(items, last, IdRange(0, last))
            yield [CustomerId(int(c["id"]), _subscribed(c) if with_subscription else None)
                   for c in items]

    return fan_in([pages], workers=1, depth=1)


def find_customer_ids_by_email(client: MagentoClient, email: str) -> list[int]:
    """The ids of every customer (any website) whose email is ``email``."""
    criteria = SearchCriteria().where("email", "eq", email.strip()).page(MAX_PAGE_SIZE)
    items = client.search(SEARCH_PATH, criteria, fields=ID_FIELDS)["items"]
    return sorted(int(c["id"]) for c in items)


def _subscribed(customer: Customer) -> bool | None:
    optin = is_subscribed_optin(customer)
    return None if optin is None else optin == 1


def customer_deleted(client: MagentoClient, customer_id: int) -> bool:
    """Whether ``GET /V1/customers/{id}`` says the customer was deleted.

    Only Magento's own 404 "No such entity with customerId" counts: an existing customer
    (perhaps outside ``website_ids``) is not deleted, and any other 404 (a proxy, an
    unknown route) raises, so that nobody is ever deleted on a misleading answer.
    """
    path = f"customers/{int(customer_id)}?fields=id"
    try:
        resp = client.http.request("GET", path, headers={"Accept": "application/json"})
    except RetriableError as exc:
        raise explain_gave_up(exc, path) from None
    except requests.RequestException as exc:
        raise FatalRemoteError(client.http.redact(f"Magento request failed: {exc}"),
                               service=SERVICE) from None
    try:
        if resp.status_code == 404:
            if is_no_such_customer(resp):
                return True
            raise FatalRemoteError(
                f"Magento answered GET /V1/customers/{int(customer_id)} with a 404 that is "
                f"not its own \"No such entity\" ({client.http.describe(resp)}); no "
                "deletion was confirmed", service=SERVICE, status=404,
                hint="check magento.base_url and any proxy in front of Magento")
        if resp.status_code >= 400:
            raise client.error_for(resp, path)
        return False
    finally:
        resp.close()


def is_no_such_customer(resp: requests.Response) -> bool:
    """A 404 whose body is Magento's "No such entity with %fieldName = %fieldValue"
    for ``customerId``."""
    try:
        body = resp.json()
    except ValueError:
        return False
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return False
    params = body.get("parameters")
    if isinstance(params, dict) and "%fieldName" in body["message"]:
        return str(params.get("fieldName")) == "customerId" and \
            body["message"].startswith("No such entity with")
    return _NO_SUCH_CUSTOMER.match(fill_placeholders(body["message"], params)) is not None
