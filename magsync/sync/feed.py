"""What feeds the send pipeline: pages of customers and subscriber changes turned into
items (``Sync``), the subscriber mirror refreshed, and the engine built for a run."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from magsync.magento.client import MagentoClient
from magsync.magento.customers import count_customers, iter_all_customers, iter_customers_by_ids
from magsync.magento.subscriber_source import SubscriberSource
from magsync.mapping import customer_contact, guest_contact
from magsync.model import Contact, MirrorRow
from magsync.state import StateStore
from magsync.sync.readiness import CUSTOMERS, KINDS, SUBSCRIBERS
from magsync.sync.run import ProgressHook
from magsync.sync.runtime import Runtime
from magsync.sync.sources import iter_subscriber_changes, subscription_disagrees
from magsync.sync.tracking import RunCounts
from magsync.util.timeutil import from_magento

if TYPE_CHECKING:
    from magsync.sync.engine import Engine
    from magsync.sync.items import Item

MIRROR_CHUNK = 1000  # change-read rows merged into the mirror per transaction
CHANGED_ROWS_KEPT = 50_000  # more changes in one window: the whole mirror is diffed
# The phases a progress hook sees.
CUSTOMER_PHASE = "customers"
SUBSCRIBER_PHASE = "subscriber list"
GUEST_PHASE = "guest subscribers"


class Sender(Protocol):
    """What ``Sync`` hands its items to: an ``Engine``, or an ``OnDemandEngine``."""

    run_id: int | None

    def submit(self, items: Iterable[Item]) -> None: ...


class Sync:
    """The parts every sync run shares: reading customers and subscribers into the engine."""

    def __init__(self, rt: Runtime, store: StateStore, engine: Sender, counts: RunCounts,
                 progress: ProgressHook | None = None, *,
                 kinds: frozenset[str] = frozenset(KINDS)) -> None:
        self.rt, self.store, self.engine, self.counts = rt, store, engine, counts
        self.progress = progress
        # The kinds whose export completed (readiness.py): no work on the others.
        self.kinds = kinds
        self.seen: set[int] = set()  # customers sent (or found unchanged) in this run
        self.seen_guests: set[int] = set()  # guest subscriber ids sent in this run
        self.held: list[dict[str, Any]] = []  # customers waiting for a fresh mirror
        # sync-realtime leaves queued contacts to the drain (see _without_queued)
        self.defer_queued = False
        # After a full read every customer was sent with a fresh mirror; remembering each
        # id in ``seen`` would make memory grow with the shop.
        self.read_everyone = False
        # progress: customers handed to the engine, and how many the window holds
        self.customers_read = 0
        self.customer_total: int | None = None
        # The mirror generation the last ``subscribers()`` diffed (None: not diffed)
        self.diffed: int | None = None

    def all_customers(self) -> None:
        """Every customer once (after a mapping change)."""
        if CUSTOMERS not in self.kinds:
            return
        if self.progress:
            self.customer_total = count_customers(self.rt.magento)
        pages = iter_all_customers(self.rt.magento, fields=self.rt.customer_fields)
        self.customers((p.items for p in pages), track=False)
        self.read_everyone = True

    def customers(self, pages: Iterable[list[dict[str, Any]]], *, hold_stale: bool = False,
                  track: bool = True) -> None:
        """Diff and send pages of customers; with ``hold_stale``, customers whose
        ``is_subscribed`` disagrees with the mirror wait for ``rescan()``."""
        if CUSTOMERS not in self.kinds:
            return
        for page in pages:
            page = [c for c in page if int(c["id"]) not in self.seen]
            if self.defer_queued:
                page = self._without_queued(page)
            if hold_stale and self.rt.subscribers is not None:
                stale = self._stale(page)
                self.held += stale
                stale_ids = {id(c) for c in stale}
                page = [c for c in page if id(c) not in stale_ids]
            if track:
                self.seen.update(int(c["id"]) for c in page)
            if page:
                self.customers_read += len(page)
                self.engine.submit(customer_items(self.rt, self.store, page))
            if self.progress:
                total = self.customer_total
                self.progress(CUSTOMER_PHASE, self.customers_read,
                              None if total is None else max(total, self.customers_read))

    def _without_queued(self, page: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drop queued customers that Magento did not change since their last attempt.

        The overlap re-reads a rejected customer in every run for ``sync.overlap``; each
        send would count an attempt (dead within minutes) and fail the run again. The
        drain re-reads it anyway, so only a change after the attempt is sent at once.
        """
        attempted = self.store.queue_attempted_at(f"c:{c['id']}" for c in page)
        if not attempted:
            return page
        keep = [c for c in page if f"c:{c['id']}" not in attempted
                or _changed_after(c, attempted[f"c:{c['id']}"])]
        self.counts.add("left_queued", len(page) - len(keep))
        return keep

    def _stale(self, page: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Customers the mirror may describe wrongly: ``is_subscribed`` disagrees, or a
        new customer shares an email with a guest (a guest who registered, rule 4)."""
        ids = [int(c["id"]) for c in page]
        mirror = self.store.mirror_for_customers(ids)
        known = self.store.get_contacts(f"c:{i}" for i in ids)
        guests = self.store.mirror_guest_emails(
            str(c.get("email") or "") for c in page if f"c:{c['id']}" not in known)
        return [c for c in page
                if subscription_disagrees(c, mirror.get(int(c["id"]), []))
                or str(c.get("email") or "").lower() in guests]

    def subscribers(self, among: Iterable[MirrorRow] | None = None) -> None:
        """Send guests and customers whose subscriber row differs from what was sent;
        ``among``: look only at these mirror rows (a change read's)."""
        if self.rt.subscribers is None:
            return
        if among is None:  # only a diff of the whole mirror settles its generation
            self.diffed = self.store.mirror_generation()
        changed: set[int] = set()
        for guests, customer_ids in iter_subscriber_changes(
                self.store, skip_customers=self.seen, skip_all_customers=self.read_everyone,
                among=among):
            changed |= customer_ids
            guests = [g for g in guests if g.subscriber_id not in self.seen_guests]
            if self.defer_queued:
                # a guest has no change time: a queued one waits for the drain
                queued = self.store.queue_attempted_at(f"s:{g.subscriber_id}" for g in guests)
                self.counts.add("left_queued", len(queued))
                guests = [g for g in guests if f"s:{g.subscriber_id}" not in queued]
            if self.rt.cfg.contacts.subscribers.enabled and guests \
                    and SUBSCRIBERS in self.kinds:
                self.seen_guests.update(g.subscriber_id for g in guests)
                self.engine.submit(guest_items(self.rt, self.store, guests))
        if self.rt.cfg.contacts.customers.enabled and changed:
            self.customers(iter_customers_by_ids(self.rt.magento, changed,
                                                 fields=self.rt.customer_fields))

    def mirror_pending(self) -> bool:
        """Whether the mirror holds a generation no sync diffed yet (refreshed by another
        command, or by a run killed before it sent the differences)."""
        return self.store.mirror_generation() != self.store.mirror_diffed()

    def mark_diffed(self) -> None:
        """After the run sent everything: the generation it diffed is done, when the
        diff covered every enabled kind."""
        if self.diffed is not None and not self.rt.dry_run \
                and self.kinds >= {CUSTOMERS, SUBSCRIBERS}:
            self.store.mark_mirror_diffed(self.diffed)

    def rescan(self) -> None:
        """Refresh the mirror, then send the held customers and every subscriber change."""
        refresh_mirror(self.rt, self.store, self.counts)
        held, self.held = self.held, []
        if held:
            self.customers([held])
        self.subscribers()




def _changed_after(customer: dict[str, Any], moment: datetime) -> bool:
    stamp = customer.get("updated_at")
    return bool(stamp) and from_magento(str(stamp)) > moment


def refresh_mirror(rt: Runtime, store: StateStore, counts: RunCounts,
                   progress: ProgressHook | None = None) -> int:
    """Read every subscriber into the mirror (none with ``subscribers: none``)."""
    return mirror_refresher(store, counts, progress)(rt.magento, rt.subscribers)


def mirror_refresher(store: StateStore, counts: RunCounts,
                     progress: ProgressHook | None = None
                     ) -> Callable[[MagentoClient, SubscriberSource | None], int]:
    """``refresh_mirror`` as a task for ``Runtime.open(alongside=...)``; ``progress``
    sees the subscriber list's phase (its total where the source knows it).

    The mirror is replaced in one transaction once the full read ended without an error:
    a read that fails mid-way leaves the previous mirror as it was.
    """

    def refresh(magento: MagentoClient, source: SubscriberSource | None) -> int:
        if source is None:
            return 0
        totals: list[int] = []
        rows = source.iter_all(totals)
        if progress is not None:
            rows = _reporting(rows, totals, progress)
        n = store.replace_mirror(rows)
        counts.add("subscribers_read", n)
        return n

    return refresh


class ChangedRows:
    """The rows a change read merged into the mirror, kept to be diffed after the
    customers; past ``limit`` rows only the fact that there were more is kept (the whole
    mirror is then diffed), so memory stays flat whatever a mass action changed."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = CHANGED_ROWS_KEPT if limit is None else limit
        self.rows: list[MirrorRow] = []
        self.overflow = False

    def keep(self, rows: list[MirrorRow]) -> None:
        if self.overflow:
            return
        self.rows += rows
        if len(self.rows) > self.limit:
            self.rows, self.overflow = [], True


def change_reader(store: StateStore, counts: RunCounts, since: datetime, until: datetime,
                  changed: ChangedRows
                  ) -> Callable[[MagentoClient, SubscriberSource | None], int]:
    """A task for ``Runtime.open(alongside=...)``: the rows the source says changed in
    ``[since, until)`` merged into the mirror (a partial read: it removes no row and does
    not count as a full read) and kept in ``changed``. Nothing without a change filter."""

    def read(magento: MagentoClient, source: SubscriberSource | None) -> int:
        rows = source.iter_changed(since, until) if source is not None else None
        if rows is None:
            return 0
        n = 0
        for chunk in chunked(rows, MIRROR_CHUNK):
            store.upsert_mirror(chunk)
            changed.keep(chunk)
            n += len(chunk)
        counts.add("subscribers_changed", n)
        return n

    return read


def _reporting(rows: Iterable[MirrorRow], totals: list[int], progress: ProgressHook,
               every: int = 500) -> Iterator[MirrorRow]:
    """``rows`` as they are, telling ``progress`` how far the subscriber list got."""
    n = 0
    progress(SUBSCRIBER_PHASE, 0, None)
    for row in rows:
        n += 1
        if n % every == 0:
            progress(SUBSCRIBER_PHASE, n, max(n, sum(totals)) if totals else None)
        yield row
    progress(SUBSCRIBER_PHASE, n, n)


def customer_items(rt: Runtime, store: StateStore, customers: list[dict[str, Any]], *,
                   lane: Hashable = None, token: Hashable = None) -> list[Item]:
    """Pipeline items for a page of Magento customers (with their mirror rows)."""
    ids = [int(c["id"]) for c in customers]
    mirror = store.mirror_for_customers(ids)
    m = rt.mapping
    contacts = [customer_contact(c, mirror.get(cid, _NO_ROWS), m)
                for c, cid in zip(customers, ids, strict=True)]
    return plan_items(contacts, store, lane=lane, token=token)


_NO_ROWS: list[MirrorRow] = []  # most customers have no subscriber row (never mutated)


def guest_items(rt: Runtime, store: StateStore, rows: Iterable[MirrorRow], *,
                lane: Hashable = None, token: Hashable = None) -> list[Item]:
    """Pipeline items for guest subscribers."""
    contacts = [guest_contact(r, rt.mapping) for r in rows]
    return plan_items(contacts, store, lane=lane, token=token)


def chunked(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def new_engine(rt: Runtime, store: StateStore, counts: RunCounts, run_id: int, **kw: Any
               ) -> Engine:
    """The run's engine (``defer_lists=True``: the run ends with ``join_owed_lists``)."""
    from magsync.sync.engine import Engine
    from magsync.sync.optin_writer import MagentoOptinWriter

    writer = None if rt.dry_run else MagentoOptinWriter(rt, store)
    return Engine(rt, store, counts, run_id=run_id, magento_writer=writer, **kw)


class OnDemandEngine:
    """The run's engine, built when the first item comes: a run with nothing to send
    (most minutely ``sync-realtime`` runs) never loads the send pipeline's modules nor
    starts its workers. A context manager, as ``Engine`` is."""

    def __init__(self, rt: Runtime, store: StateStore, counts: RunCounts, run_id: int
                 ) -> None:
        self._args = (rt, store, counts, run_id)
        self.run_id: int | None = run_id
        self.engine: Engine | None = None

    def submit(self, items: Iterable[Item]) -> None:
        batch = list(items)
        if not batch:
            return
        if self.engine is None:
            self.engine = new_engine(*self._args)
        self.engine.submit(batch)

    def drain(self) -> None:
        if self.engine is not None:
            self.engine.drain()

    @property
    def samples(self) -> list[dict[str, object]]:
        return self.engine.samples if self.engine is not None else []

    def __enter__(self) -> OnDemandEngine:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.engine is not None:
            self.engine.__exit__(exc_type, *exc)


def plan_items(contacts: list[Contact], store: StateStore, *, lane: Hashable = None,
               token: Hashable = None) -> list[Item]:
    """Items with their records; a registered guest inherits its guest record (rule 4)."""
    from magsync.sync.items import Item  # a run with nothing to send makes no item

    records = store.get_contacts([c.key for c in contacts])
    # Only a customer magsync never sent can be a guest who registered.
    guest_keys = [f"s:{c.subscriber_id}" for c in contacts if c.key not in records
                  and c.customer_id is not None and c.subscriber_id is not None]
    guests = store.get_contacts(guest_keys) if guest_keys else {}
    items = []
    for c in contacts:
        record = records.get(c.key)
        inherit = None
        if record is None and c.customer_id is not None and c.subscriber_id is not None:
            guest = guests.get(f"s:{c.subscriber_id}")
            if guest is not None and guest.customer_id is None:
                inherit = guest
        items.append(Item(contact=c, record=record, lane=lane, token=token, inherit=inherit))
    return items
