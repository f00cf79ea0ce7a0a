"""``magsync sync-realtime`` (cron, every minute): send what changed since the last run.

A run fixes its change window when it starts, ``[watermark - overlap, start)``, reads it
by keyset, and moves the watermark to ``start`` only after everything in it was sent or
queued. A request that still fails after its retries ends the run (exit 3) with the
watermark held, so the next run sends it. Per-contact rejections are queued (exit 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from magsync.config import Config
from magsync.magento.customers import Window, count_customers, iter_changed_customers
from magsync.state import StateStore
from magsync.sync.feed import ChangedRows, OnDemandEngine, Sync, change_reader, mirror_refresher
from magsync.sync.readiness import CUSTOMERS, allowed_kinds, stop_if_missing
from magsync.sync.run import ProgressHook, RunReport, finish_counts, recorded_run
from magsync.sync.runtime import REALTIME_RETRY, Runtime
from magsync.sync.tracking import RunCounts
from magsync.util.timeutil import utcnow


@dataclass(frozen=True)
class SyncOptions:
    dry_run: bool = False
    since: datetime | None = None
    verbose: int = 0


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
        ready = allowed_kinds(cfg, store, "sync-realtime")
        start = utcnow()
        since = window_start(store, "sync-realtime", cfg, start, opts.since)
        counts = RunCounts()
        scan = _scan_due(cfg, store, start)
        # Between full scans, a source with a change filter (the database) gives the
        # subscriber rows changed in the same window as the customers.
        changes = ChangedRows()
        startup = mirror_refresher(store, counts, progress) if scan else \
            change_reader(store, counts, since, start, changes)
        with Runtime.open(cfg, store=store, dry_run=opts.dry_run, retry=REALTIME_RETRY,
                          verbose=opts.verbose, alongside=startup,
                          cached_metadata=True) as rt, \
                OnDemandEngine(rt, store, counts, run_id) as engine:
            sync = Sync(rt, store, engine, counts, progress, kinds=ready)
            sync.defer_queued = True
            if cfg.contacts.customers.enabled and CUSTOMERS in ready:
                if progress:
                    sync.customer_total = count_customers(rt.magento, Window(since, start))
                changed = iter_changed_customers(rt.magento, since, start,
                                                 fields=rt.customer_fields)
                sync.customers((p.items for p in changed), hold_stale=not scan)
            if scan:
                sync.subscribers()
            elif sync.held:
                sync.rescan()  # a full read: the changed rows are in it
            elif sync.mirror_pending() or changes.overflow:
                # Refreshed by another command (or a run killed after its scan): what it
                # holds goes now, not at the next scheduled scan.
                sync.subscribers()
            elif changes.rows:
                sync.subscribers(among=changes.rows)
            engine.drain()
            sync.mark_diffed()
            finish_counts(report, counts, store, run_id)
            report.samples = engine.samples
        if not opts.dry_run and CUSTOMERS in ready:
            store.set_watermark("sync-realtime", start)
        stop_if_missing(report, cfg, ready)
    return report


def _scan_due(cfg: Config, store: StateStore, now: datetime) -> bool:
    if cfg.magento.subscribers == "none":
        return False
    last = store.mirror_read_at()
    return last is None or now - last >= timedelta(minutes=cfg.sync.subscriber_scan_minutes)
