"""Draining the failsafe queue: each queued contact re-read from Magento and sent again.

One drain is one attempt: a contact that fails again counts up, and is dead once its
attempts reach ``sync.max_attempts`` (kept and listed, no longer retried). A queued
contact that no longer exists in Magento leaves the queue and is reported.
"""

from __future__ import annotations

from magsync.config import Config
from magsync.magento.customers import iter_customers_by_ids
from magsync.state import StateStore
from magsync.sync.deletions import retry_deletions
from magsync.sync.feed import Sync, chunked, guest_items, new_engine, refresh_mirror
from magsync.sync.readiness import CUSTOMERS, SUBSCRIBERS
from magsync.sync.run import ProgressHook, RunReport, finish_counts, recorded_run
from magsync.sync.runtime import DEFAULT_RETRY, Runtime
from magsync.sync.sources import split_queue_keys
from magsync.sync.tracking import RunCounts


def drain_queue(sync: Sync, *, include_seen: bool = False) -> None:
    """Send every live queued contact once more."""
    store, rt = sync.store, sync.rt
    queued = store.queue_items(dead=False)
    if not queued:
        return
    sync.counts.add("drained", len(queued))
    customer_ids, guest_ids = split_queue_keys(q.key for q in queued)
    if CUSTOMERS not in sync.kinds:  # not exported yet: the export sends them
        customer_ids = set()
    if SUBSCRIBERS not in sync.kinds:
        guest_ids = set()
    if not include_seen:
        # sent earlier in this run: that send was this drain's attempt
        customer_ids = set() if sync.read_everyone else customer_ids - sync.seen
        guest_ids -= sync.seen_guests
    gone: list[tuple[str, str | None, str]] = []
    found: set[int] = set()
    for page in iter_customers_by_ids(rt.magento, customer_ids,
                                      fields=rt.customer_fields):
        found.update(int(c["id"]) for c in page)
        sync.customers([page])
    gone += [("removed", f"c:{cid}", "customer no longer exists in Magento; left the queue")
             for cid in sorted(customer_ids - found)]
    rows = []
    for sid in sorted(guest_ids):
        row = store.mirror_get(sid)
        if row is None or row.customer_id != 0:
            why = ("subscriber no longer exists in Magento" if row is None else
                   f"subscriber registered as customer {row.customer_id}; sent with it")
            gone.append(("removed", f"s:{sid}", f"{why}; left the queue"))
        else:
            rows.append(row)
    for chunk in chunked(rows, rt.cfg.emarsys.batch_size):
        sync.engine.submit(guest_items(rt, store, chunk))
    if gone and not rt.dry_run:
        store.dequeue(key for _, key, _ in gone if key)
        store.add_reports(sync.engine.run_id, gone)
    sync.counts.add("removed", len(gone))


def retry_queue(cfg: Config, store: StateStore, *, dead: bool = False,
                progress: ProgressHook | None = None) -> RunReport:
    """``magsync queue retry [--dead]``: drain the queue now, as sync-background would,
    and retry the queued deletions."""
    from magsync.sync.feed import Sync

    with recorded_run(store, "queue retry") as (report, run_id):
        counts = RunCounts()
        if dead:
            counts.add("revived", store.revive_dead())
        with Runtime.open(cfg, store=store, retry=DEFAULT_RETRY) as rt, \
                new_engine(rt, store, counts, run_id) as engine:
            sync = Sync(rt, store, engine, counts, progress)
            refresh_mirror(rt, store, counts, progress)
            drain_queue(sync, include_seen=True)
            engine.drain()
            retry_deletions(rt, store, counts)
            finish_counts(report, counts, store, run_id)
    return report
