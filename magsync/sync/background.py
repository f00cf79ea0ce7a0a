"""``magsync sync-background`` (daily): the changes of background-only mode, a full read
after a mapping change, a full subscriber scan, the failsafe queue drained, every contact
added to the lists it belongs on but is not recorded in (``lists.py``), then
``reconcile``'s deletions."""

from __future__ import annotations

from magsync.config import Config
from magsync.magento.customers import Window, count_customers, iter_changed_customers
from magsync.state import StateStore
from magsync.sync.feed import Sync, mirror_refresher, new_engine
from magsync.sync.lists import join_owed_lists
from magsync.sync.queue import drain_queue
from magsync.sync.readiness import CUSTOMERS, allowed_kinds, enabled_kinds, stop_if_missing
from magsync.sync.realtime import SyncOptions, window_start
from magsync.sync.reconcile import ReconcileOptions, reconcile_deletions
from magsync.sync.run import ProgressHook, RunReport, finish_counts, recorded_run
from magsync.sync.runtime import DEFAULT_RETRY, Runtime
from magsync.sync.tracking import RunCounts
from magsync.util.timeutil import utcnow


def sync_background(cfg: Config, store: StateStore, opts: SyncOptions,
                    progress: ProgressHook | None = None) -> RunReport:
    """The daily run: changes (background-only mode), a full read after a mapping change,
    a full subscriber scan, the failsafe queue drained, then the deletions."""
    with recorded_run(store, "sync-background", dry_run=opts.dry_run) as (report, run_id):
        ready = allowed_kinds(cfg, store, "sync-background")
        start = utcnow()
        counts = RunCounts()
        with Runtime.open(cfg, store=store, dry_run=opts.dry_run, retry=DEFAULT_RETRY,
                          verbose=opts.verbose,
                          alongside=mirror_refresher(store, counts, progress)) as rt, \
                new_engine(rt, store, counts, run_id, defer_lists=True) as engine:
            sync = Sync(rt, store, engine, counts, progress, kinds=ready)
            mapping_changed = store.get_meta("mapping_hash") != rt.mapping.hash
            if cfg.contacts.customers.enabled and CUSTOMERS in ready:
                if mapping_changed:
                    report.notes.append("the mapping changed: every customer was read")
                    sync.all_customers()
                elif cfg.sync.mode == "background-only" or opts.since is not None:
                    since = window_start(store, "sync-background", cfg, start, opts.since)
                    if progress:
                        sync.customer_total = count_customers(rt.magento,
                                                              Window(since, start))
                    changed = iter_changed_customers(rt.magento, since, start,
                                                     fields=rt.customer_fields)
                    sync.customers(p.items for p in changed)
            sync.subscribers()
            engine.drain()
            drain_queue(sync)
            engine.drain()
            join_owed_lists(rt, store, counts)
            sync.mark_diffed()
            if not opts.dry_run and CUSTOMERS in ready:
                # without customers read, neither their window nor the mapping is done
                with store.atomic():
                    store.set_watermark("sync-background", start)
                    store.set_meta("mapping_hash", rt.mapping.hash)
            # deletions last: a safety stop (exit 2) comes after the run's other work;
            # only once every enabled kind was exported (what was never sent is no loss)
            outcome = reconcile_deletions(sync, ReconcileOptions(dry_run=opts.dry_run)) \
                if ready.issuperset(enabled_kinds(cfg)) else None
            engine.drain()
            finish_counts(report, counts, store, run_id)
            report.samples = engine.samples
            if outcome is not None:
                outcome.into(report)
        stop_if_missing(report, cfg, ready)
    return report
