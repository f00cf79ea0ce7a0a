"""``magsync export-initial``: every customer and guest subscriber into Emarsys, resumable.

A checkpoint (the unfinished id ranges, how far the guests got, the first run's start
time) is saved each time a batch commits, so a re-run after a crash, Ctrl-C or SIGKILL
carries on where the committed work ends; contacts committed past that point are read
again and found unchanged. When the export completes, the kinds it exported are recorded
as exported (``readiness.py``: the syncs wait for that); an export that included
customers sets the customer change watermarks to its start time and records the mapping
as done; and ``pull-optin``'s watermark goes back to the export's start, so opt-outs made
in Emarsys while a long export ran are read back.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from magsync.config import Config
from magsync.errors import UsageError
from magsync.magento.client import MagentoClient
from magsync.magento.customers import (
    ExportProgress,
    IdRange,
    Page,
    count_customers,
    iter_all_customers,
    plan_ranges,
    read_customers_ahead,
)
from magsync.magento.prefetch import ReadAhead
from magsync.magento.subscriber_source import SubscriberSource
from magsync.state import StateStore
from magsync.sync.engine import Engine
from magsync.sync.feed import (
    CUSTOMER_PHASE,
    GUEST_PHASE,
    chunked,
    customer_items,
    guest_items,
    mirror_refresher,
    new_engine,
)
from magsync.sync.lists import join_owed_lists
from magsync.sync.readiness import CUSTOMERS, SUBSCRIBERS, enabled_kinds, mark_exported
from magsync.sync.run import ProgressHook, RunReport, finish_counts, recorded_run
from magsync.sync.runtime import DEFAULT_RETRY, Runtime, fields_filter
from magsync.sync.tracking import PageTracker, RunCounts
from magsync.util.timeutil import from_iso, to_iso

COMMAND = "export-initial"
CHECKPOINT = "export-initial"
GUEST_LANE = "guests"
WATERMARKS = ("sync-realtime", "sync-background")  # customer change windows
PULL_WATERMARK = "pull-optin"


@dataclass(frozen=True)
class ExportOptions:
    customers: bool = True
    subscribers: bool = True
    restart: bool = False
    dry_run: bool = False
    verbose: int = 0


def export_initial(cfg: Config, store: StateStore, opts: ExportOptions,
                   progress: ProgressHook | None = None) -> RunReport:
    """Run (or resume) the initial export; returns the report."""
    kinds = selected_kinds(cfg, opts)
    if opts.restart and not opts.dry_run:
        store.clear_checkpoint(CHECKPOINT)
    saved = None if opts.dry_run else store.get_checkpoint(CHECKPOINT)
    with recorded_run(store, COMMAND, dry_run=opts.dry_run) as (report, run_id):
        counts = RunCounts()
        checkpoint = saved or {"started_at": to_iso(report.started_at),
                               "restart": opts.restart}
        if saved:
            report.notes.append(f"resumed the export started {saved['started_at']}")
        planned: list[list[IdRange]] = []
        early: list[ReadAhead[Page]] = []  # customer pages read during start-up
        plan_ranges_early = opts.customers and cfg.contacts.customers.enabled \
            and "ranges" not in checkpoint and not checkpoint.get("customers_done")
        try:
            with Runtime.open(cfg, store=store, dry_run=opts.dry_run, retry=DEFAULT_RETRY,
                              verbose=opts.verbose,
                              alongside=_startup_reads(
                                  store, counts, plan_ranges_early, planned, progress,
                                  # with a progress display the ranges are counted first
                                  # (magento.concurrency requests at most at any time)
                                  early if progress is None else None,
                                  fields_filter(cfg))) as rt:
                checkpoint.setdefault("mapping_hash", rt.mapping.hash)
                run = _Export(rt, store, counts, run_id, checkpoint, opts, progress)
                run.planned = planned[0] if planned else None
                run.early = early[0] if early else None
                try:
                    run.customers()
                    run.guests()
                    run.engine.drain()
                    join_owed_lists(rt, store, counts)  # the second list of customers...
                finally:
                    run.engine.close(cancel=True)
                    finish_counts(report, counts, store, run_id)
                report.samples = run.engine.samples
        finally:
            for pages in early:
                pages.close()
        if not opts.dry_run:
            _complete(store, checkpoint, rt.mapping.hash, kinds)
    return report


def selected_kinds(cfg: Config, opts: ExportOptions) -> tuple[str, ...]:
    """The kinds this export sends: those asked for that the config enables; none is a
    usage error (exit 2, before anything is read)."""
    asked = {CUSTOMERS: opts.customers, SUBSCRIBERS: opts.subscribers}
    kinds = tuple(k for k in enabled_kinds(cfg) if asked[k])
    if not kinds:
        enabled = enabled_kinds(cfg)
        why = (f"the config enables only {' and '.join(enabled)}" if enabled else
               "the config enables neither customers nor subscribers")
        raise UsageError(f"export-initial: nothing to export ({why}, and the options "
                         "select none of it)",
                         hint="run `magsync export-initial` without --no-customers / "
                              "--no-subscribers to export every enabled kind")
    return kinds


def _startup_reads(store: StateStore, counts: RunCounts, plan: bool,
                   planned: list[list[IdRange]], progress: ProgressHook | None = None,
                   early: list[ReadAhead[Page]] | None = None, fields: str | None = None
                   ) -> Callable[[MagentoClient, SubscriberSource | None], None]:
    """What Magento can answer while Emarsys resolves fields and lists: the subscriber
    scan, and beside it (``plan``) the id ranges of a fresh customer export, appended to
    ``planned``; then (``early``) the first customer pages of those ranges start to be
    read, so that Magento is not idle while Emarsys is still starting up."""
    refresh = mirror_refresher(store, counts, progress)

    def reads(magento: MagentoClient, source: SubscriberSource | None) -> None:
        if not plan:
            refresh(magento, source)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="startup-ranges") as pool:
            ranges = pool.submit(plan_ranges, magento)
            refresh(magento, source)
            planned.append(ranges.result())
        if early is not None:  # after the scan: at most magento.concurrency at once
            early.append(read_customers_ahead(magento, planned[0], fields=fields))
    return reads



def _complete(store: StateStore, checkpoint: dict[str, Any], mapping_hash: str,
              kinds: tuple[str, ...]) -> None:
    started = from_iso(checkpoint["started_at"])
    with store.atomic():
        mark_exported(store, kinds, started)
        if CUSTOMERS in kinds:
            # Only customers have change windows (subscribers are found by the mirror);
            # an export without them lets no sync skip a customer.
            for name in WATERMARKS:
                store.set_watermark(name, started)
            # A mapping changed between a crash and the resume reached only the contacts
            # sent after it: leave it unrecorded, so the next sync-background reads every
            # customer.
            if checkpoint.get("mapping_hash", mapping_hash) == mapping_hash:
                store.set_meta("mapping_hash", mapping_hash)
        # Emarsys opt-outs made while the export ran are read back by the next pull; a
        # pull watermark already older than that stays (its window is not yet read).
        pulled = store.get_watermark(PULL_WATERMARK)
        if pulled is None or pulled > started:
            store.set_watermark(PULL_WATERMARK, started)
        store.clear_checkpoint(CHECKPOINT)


class _Export:
    """One export run's moving parts."""

    def __init__(self, rt: Runtime, store: StateStore, counts: RunCounts, run_id: int,
                 checkpoint: dict[str, Any], opts: ExportOptions,
                 progress: ProgressHook | None) -> None:
        self.rt, self.store, self.counts = rt, store, counts
        self.checkpoint = checkpoint
        self.opts = opts
        self.progress_hook = progress
        self.tracker = PageTracker()
        self.ranges: ExportProgress | None = None
        self.planned: list[IdRange] | None = None  # read during start-up
        self.early: ReadAhead[Page] | None = None  # the planned ranges, read from then on
        self.customers_read = 0
        self.customer_total: int | None = None
        self._seq = itertools.count()
        self.engine: Engine = new_engine(rt, store, counts, run_id,
                                         restart=bool(checkpoint.get("restart")),
                                         tracker=self.tracker, on_progress=self._committed,
                                         defer_lists=True)

    # -- customers ----------------------------------------------------------------------
    def customers(self) -> None:
        if not (self.opts.customers and self.rt.cfg.contacts.customers.enabled):
            return
        if self.checkpoint.get("customers_done"):
            return
        saved = self.checkpoint.get("ranges")
        if saved is not None:
            ranges = [IdRange(*r) for r in saved]
        else:
            ranges = self.planned if self.planned is not None else plan_ranges(self.rt.magento)
        self.ranges = ExportProgress(ranges)
        if self.progress_hook:  # what is left to read: a resumed export skips the rest
            self.customer_total = sum(count_customers(self.rt.magento, rng=r) for r in ranges)
            self.progress_hook(CUSTOMER_PHASE, 0, self.customer_total)
        if not self.opts.dry_run:  # keeps the first run's start time from the outset
            self.checkpoint["ranges"] = [[r.index, r.after_id, r.upto_id] for r in ranges]
            self.store.set_checkpoint(CHECKPOINT, self.checkpoint)
        if not ranges:
            self.checkpoint["customers_done"] = True
            return
        pages: Iterable[Page] = self.early if self.early is not None and \
            ranges is self.planned else iter_all_customers(self.rt.magento, ranges=ranges,
                                                           fields=self.rt.customer_fields)
        for page in pages:
            self._customer_page(page)

    def _customer_page(self, page: Page) -> None:
        token = ("c", page.range_index, next(self._seq))  # an empty last page repeats last_id
        # The tracker keeps only the page's position: holding its customers until the
        # frontier passes would keep thousands of raw records alive (memory not flat).
        self.tracker.open_page(page.range_index, token, len(page.items),
                               replace(page, items=[]))
        if not page.items:
            self._committed()
            return
        items = customer_items(self.rt, self.store, page.items, lane=page.range_index,
                               token=token)
        self.engine.submit(items)
        self.customers_read += len(page.items)
        if self.progress_hook:
            self.progress_hook(CUSTOMER_PHASE, self.customers_read,
                               max(self.customer_total or 0, self.customers_read))

    # -- guests -------------------------------------------------------------------------
    def guests(self) -> None:
        if not (self.opts.subscribers and self.rt.cfg.contacts.subscribers.enabled):
            return
        if self.rt.subscribers is None or self.checkpoint.get("guests_done"):
            return
        after = int(self.checkpoint.get("guests_after") or 0)
        rows = self.store.mirror_rows(guests_only=True, after=after)
        size = self.rt.cfg.emarsys.batch_size
        total = self.store.mirror_count(guests_only=True, after=after) \
            if self.progress_hook else None
        any_rows = False
        done = 0
        for chunk in chunked(rows, size):
            any_rows = True
            if self.progress_hook:
                self.progress_hook(GUEST_PHASE, done, total)
                done += len(chunk)
            token = ("s", chunk[-1].subscriber_id)
            self.tracker.open_page(GUEST_LANE, token, len(chunk), chunk[-1].subscriber_id)
            self.engine.submit(guest_items(self.rt, self.store, chunk, lane=GUEST_LANE,
                                           token=token))
        self.engine.flush()
        if self.progress_hook and any_rows:
            self.progress_hook(GUEST_PHASE, done, max(done, total or 0))
        if not any_rows:
            self.checkpoint["guests_done"] = True

    # -- checkpoints ----------------------------------------------------------------------
    def _committed(self) -> None:
        """After a commit: move the checkpoint to what is now safely stored."""
        if self.opts.dry_run:
            return
        changed = False
        if self.ranges is not None:
            for lane, page in self.tracker.frontiers().items():
                if lane != GUEST_LANE and isinstance(page, Page):
                    self.ranges.commit(page)
                    changed = True
            self.checkpoint["ranges"] = [[r.index, r.after_id, r.upto_id]
                                         for r in self.ranges.remaining()]
            self.checkpoint["customers_done"] = self.ranges.complete
        guest_frontier = self.tracker.frontier(GUEST_LANE)
        if guest_frontier is not None:
            self.checkpoint["guests_after"] = guest_frontier
            changed = True
        if changed:
            self.store.set_checkpoint(CHECKPOINT, self.checkpoint)
