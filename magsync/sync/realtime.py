"""``magsync sync-realtime`` (cron, every minute) and ``sync-background`` (daily): send
what changed, keep the failsafe queue.

A run fixes its change window when it starts, ``[watermark - overlap, start)``, reads it
by keyset, and moves the watermark to ``start`` only after everything in it was sent or
queued. A request that still fails after its retries ends the run (exit 3) with the
watermark held, so the next run sends it. Per-contact rejections are queued (exit 1).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from magsync.config import Config
from magsync.magento.customers import iter_all_customers, iter_changed_customers
from magsync.state import StateStore
from magsync.sync.common import (
    ProgressHook,
    RunReport,
    customer_items,
    finish_counts,
    guest_items,
    mirror_refresher,
    new_engine,
    recorded_run,
    refresh_mirror,
)
from magsync.sync.engine import Engine
from magsync.sync.runtime import DEFAULT_RETRY, REALTIME_RETRY, Runtime
from magsync.sync.sources import (
    iter_customers_by_ids,
    iter_subscriber_changes,
    subscription_disagrees,
)
from magsync.sync.tracking import RunCounts
from magsync.util.timeutil import from_magento, utcnow


@dataclass(frozen=True)
class SyncOptions:
    dry_run: bool = False
    since: datetime | None = None
    verbose: int = 0


class Sync:
    """The parts every sync run shares: reading customers and subscribers into the engine."""

    def __init__(self, rt: Runtime, store: StateStore, engine: Engine, counts: RunCounts,
                 progress: ProgressHook | None = None) -> None:
        self.rt, self.store, self.engine, self.counts = rt, store, engine, counts
        self.progress = progress
        self.seen: set[int] = set()  # customers sent (or found unchanged) in this run
        self.seen_guests: set[int] = set()  # guest subscriber ids sent in this run
        self.held: list[dict[str, Any]] = []  # customers waiting for a fresh mirror
        # sync-realtime leaves queued contacts to the drain (see _without_queued)
        self.defer_queued = False
        # After a full read every customer was sent with a fresh mirror; remembering each
        # id in ``seen`` would make memory grow with the shop.
        self.read_everyone = False

    def all_customers(self) -> None:
        """Every customer once (after a mapping change)."""
        pages = iter_all_customers(self.rt.magento, fields=self.rt.customer_fields)
        self.customers((p.items for p in pages), track=False)
        self.read_everyone = True

    def customers(self, pages: Iterable[list[dict[str, Any]]], *, hold_stale: bool = False,
                  track: bool = True) -> None:
        """Diff and send pages of customers; with ``hold_stale``, customers whose
        ``is_subscribed`` disagrees with the mirror wait for ``rescan()``."""
        for page in pages:
            page = [c for c in page if int(c["id"]) not in self.seen]
            if self.defer_queued:
                page = self._without_queued(page)
            if hold_stale and self.rt.cfg.magento.subscribers != "none":
                stale = self._stale(page)
                self.held += stale
                stale_ids = {id(c) for c in stale}
                page = [c for c in page if id(c) not in stale_ids]
            if track:
                self.seen.update(int(c["id"]) for c in page)
            if page:
                self.engine.submit(customer_items(self.rt, self.store, page))
            if self.progress:
                self.progress("customers", self.counts.get("read"), None)

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

    def subscribers(self) -> None:
        """Send guests and customers whose subscriber row differs from what was sent."""
        if self.rt.cfg.magento.subscribers == "none":
            return
        changed: set[int] = set()
        for guests, customer_ids in iter_subscriber_changes(
                self.store, skip_customers=self.seen, skip_all_customers=self.read_everyone):
            changed |= customer_ids
            guests = [g for g in guests if g.subscriber_id not in self.seen_guests]
            if self.defer_queued:
                # a guest has no change time: a queued one waits for the drain
                queued = self.store.queue_attempted_at(f"s:{g.subscriber_id}" for g in guests)
                self.counts.add("left_queued", len(queued))
                guests = [g for g in guests if f"s:{g.subscriber_id}" not in queued]
            if self.rt.cfg.contacts.subscribers.enabled and guests:
                self.seen_guests.update(g.subscriber_id for g in guests)
                self.engine.submit(guest_items(self.rt, self.store, guests))
        if self.rt.cfg.contacts.customers.enabled and changed:
            self.customers(iter_customers_by_ids(self.rt.magento, changed,
                                                 fields=self.rt.customer_fields))

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


def window_start(store: StateStore, name: str, cfg: Config, start: datetime,
                 since: datetime | None) -> datetime:
    """``watermark - overlap`` (first run: ``start - lookback``), widened by ``--since``."""
    mark = store.get_watermark(name)
    begin = mark - cfg.sync.overlap if mark is not None else start - cfg.sync.lookback
    if since is not None and since < begin:
        begin = since
    return min(begin, start - timedelta(seconds=1))


def sync_realtime(cfg: Config, store: StateStore, opts: SyncOptions,
                  progress: ProgressHook | None = None) -> RunReport:
    """Send every contact changed since the last run; see module docstring."""
    with recorded_run(store, "sync-realtime", dry_run=opts.dry_run) as (report, run_id):
        start = utcnow()
        since = window_start(store, "sync-realtime", cfg, start, opts.since)
        counts = RunCounts()
        scan = _scan_due(cfg, store, start)
        with Runtime.open(cfg, dry_run=opts.dry_run, retry=REALTIME_RETRY,
                          verbose=opts.verbose,
                          alongside=mirror_refresher(store, counts) if scan else None) as rt, \
                new_engine(rt, store, counts, run_id) as engine:
            sync = Sync(rt, store, engine, counts, progress)
            sync.defer_queued = True
            if cfg.contacts.customers.enabled:
                changed = iter_changed_customers(rt.magento, since, start,
                                                 fields=rt.customer_fields)
                sync.customers((p.items for p in changed), hold_stale=not scan)
            if scan:
                sync.subscribers()
            elif sync.held:
                sync.rescan()
            engine.drain()
            finish_counts(report, counts, store, run_id)
            report.samples = engine.samples
        if not opts.dry_run:
            store.set_watermark("sync-realtime", start)
    return report


def _scan_due(cfg: Config, store: StateStore, now: datetime) -> bool:
    if cfg.magento.subscribers == "none":
        return False
    last = store.mirror_read_at()
    return last is None or now - last >= timedelta(minutes=cfg.sync.subscriber_scan_minutes)


def sync_background(cfg: Config, store: StateStore, opts: SyncOptions,
                    progress: ProgressHook | None = None) -> RunReport:
    """The daily run: changes (background-only mode), a full read after a mapping change,
    a full subscriber scan, then the failsafe queue drained."""
    from magsync.sync.queue_drain import drain_queue

    with recorded_run(store, "sync-background", dry_run=opts.dry_run) as (report, run_id):
        start = utcnow()
        counts = RunCounts()
        with Runtime.open(cfg, dry_run=opts.dry_run, retry=DEFAULT_RETRY,
                          verbose=opts.verbose,
                          alongside=mirror_refresher(store, counts)) as rt, \
                new_engine(rt, store, counts, run_id) as engine:
            sync = Sync(rt, store, engine, counts, progress)
            mapping_changed = store.get_meta("mapping_hash") != rt.mapping.hash
            if cfg.contacts.customers.enabled:
                if mapping_changed:
                    report.notes.append("the mapping changed: every customer was read")
                    sync.all_customers()
                elif cfg.sync.mode == "background-only" or opts.since is not None:
                    since = window_start(store, "sync-background", cfg, start, opts.since)
                    changed = iter_changed_customers(rt.magento, since, start,
                                                     fields=rt.customer_fields)
                    sync.customers(p.items for p in changed)
            sync.subscribers()
            engine.drain()
            drain_queue(sync)
            engine.drain()
            finish_counts(report, counts, store, run_id)
            report.samples = engine.samples
        if not opts.dry_run:
            with store.atomic():
                store.set_watermark("sync-background", start)
                store.set_meta("mapping_hash", rt.mapping.hash)
    return report
