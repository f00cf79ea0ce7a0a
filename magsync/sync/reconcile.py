"""``magsync reconcile`` (also the end of ``sync-background``): find the people magsync
sent whom Magento no longer holds and apply ``sync.deletions`` to them (SPEC 7).

Customers: Magento's customer ids (an id-only keyset scan) and the customer ids magsync
sent (the state file, in id order) are merged as two sorted streams in one pass, so
memory stays flat; an id Magento no longer lists is a candidate, confirmed by
``GET /V1/customers/{id}``. Guests: a guest subscriber that consecutive complete
subscriber reads missed (``StateStore.note_complete_read``). The safety valve counts the
new candidates, and the people marked earlier whom a stronger mode now reaches, before any
is confirmed; ``keep`` needs no valve. With ``subscribers: none`` the same scan reads
``is_subscribed`` and sends the customers whose flag differs from what was last synced.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from magsync.config import Config
from magsync.consent import parse_optin
from magsync.errors import EXIT_CONFIG, UsageError
from magsync.magento.customers import (
    CustomerId,
    customer_deleted,
    iter_customer_ids,
    iter_customers_by_ids,
)
from magsync.state import StateStore
from magsync.state.deletions import SentCustomer
from magsync.sync.deletions import (
    DELETE_KIND,
    DeletionApplier,
    applier_for,
    retry_deletions,
)
from magsync.sync.feed import Sync, chunked, mirror_refresher, new_engine
from magsync.sync.readiness import missing_kinds, missing_note
from magsync.sync.run import ProgressHook, RunReport, finish_counts, recorded_run
from magsync.sync.runtime import DEFAULT_RETRY, Runtime
from magsync.sync.tracking import RunCounts

CONFIRM_CHUNK = 100  # candidates confirmed (GET each) and applied at a time
EXAMPLES = 5  # keys a valve stop names
DRY_RUN_LIST = 20  # keys a dry run lists per line
MAX_REPORTS = 20  # "still in Magento" reports per run
DOING = {"keep": "opt-in set to 2, data and lists kept (sync.deletions: keep)",
         "unsubscribe": "opt-in set to 2 and taken off magsync's contact lists "
                        "(sync.deletions: unsubscribe)",
         "delete": "deleted in Emarsys and erased from the state file "
                   "(sync.deletions: delete)"}


@dataclass(frozen=True)
class ReconcileOptions:
    dry_run: bool = False
    allow_deletions: int | None = None
    verbose: int = 0


@dataclass
class Outcome:
    """What a reconcile adds to its run's report: notes, and whether the valve stopped."""

    notes: list[str] = field(default_factory=list)
    stop: str | None = None  # the safety valve's note
    # (who, mode) -> people it was applied to (or, in a dry run, the first keys and count)
    done: dict[tuple[str, str], int] = field(default_factory=dict)
    would: dict[tuple[str, str], tuple[list[str], int]] = field(default_factory=dict)

    def into(self, report: RunReport) -> None:
        for (who, mode), (keys, n) in self.would.items():
            shown = ", ".join(keys) + (" …" if n > len(keys) else "")
            report.notes.append(f"would apply sync.deletions: {mode} to {n} {who}: {shown}")
        report.notes.extend(f"{n} {who}: {DOING[mode]}" for (who, mode), n in self.done.items())
        report.notes.extend(self.notes)
        if self.stop is not None:
            report.notes.insert(0, self.stop)  # first: stderr shows the first notes
            report.exit_code = EXIT_CONFIG


@dataclass
class Found:
    """New deletion candidates (the first few keys, and how many in all)."""

    customers: list[int] = field(default_factory=list)
    customer_total: int = 0
    guests: list[str] = field(default_factory=list)
    guest_total: int = 0
    upgrades: list[str] = field(default_factory=list)
    upgrade_total: int = 0

    @property
    def total(self) -> int:
        return self.customer_total + self.guest_total + self.upgrade_total

    def examples(self) -> list[str]:
        return ([f"c:{c}" for c in self.customers] + self.guests + self.upgrades)[:EXAMPLES]


def reconcile(cfg: Config, store: StateStore, opts: ReconcileOptions,
              progress: ProgressHook | None = None) -> RunReport:
    """The ``reconcile`` command: a complete subscriber read, then the deletions."""
    with recorded_run(store, "reconcile", dry_run=opts.dry_run) as (report, run_id):
        missing = missing_kinds(cfg, store)
        if missing:  # a person never sent is no deletion to find
            raise UsageError(f"reconcile: {missing_note(cfg, missing)}")
        counts = RunCounts()
        with Runtime.open(cfg, store=store, dry_run=opts.dry_run, retry=DEFAULT_RETRY,
                          verbose=opts.verbose,
                          alongside=mirror_refresher(store, counts, progress)) as rt, \
                new_engine(rt, store, counts, run_id) as engine:
            sync = Sync(rt, store, engine, counts, progress)
            outcome = reconcile_deletions(sync, opts)
            engine.drain()
            finish_counts(report, counts, store, run_id)
            report.samples = engine.samples
            outcome.into(report)
    return report


def reconcile_deletions(sync: Sync, opts: ReconcileOptions) -> Outcome:
    """Retry unconfirmed deletions, find new ones and apply the configured mode (the
    mirror must have been refreshed by this run already)."""
    rt, store, counts = sync.rt, sync.store, sync.counts
    mode = rt.cfg.sync.deletions
    out = Outcome()
    applier = None if rt.dry_run else applier_for(rt, store, counts)
    retry_deletions(rt, store, counts, applier)
    if rt.dry_run and (pending := store.pending_marks()):
        out.notes.append(f"would retry {len(pending)} queued deletion(s)")
    if mode == "keep":
        _keep(sync, applier, out)
    else:
        limit = opts.allow_deletions if opts.allow_deletions is not None \
            else rt.cfg.sync.max_deletions
        found = _find(sync, mode, limit + 1)
        if found.total > limit:
            _stop(out, found, limit, opts.allow_deletions is not None)
        else:
            deleted = [f"c:{c}" for chunk in chunked(found.customers, CONFIRM_CHUNK)
                       for c in _confirm(sync, chunk)]
            _act(sync, applier, deleted + found.guests, mode, out)
            _act(sync, applier, found.upgrades, mode, out, earlier=True)
    counts.add("guest_suspects", store.count_suspects())
    return out


def _keep(sync: Sync, applier: DeletionApplier | None, out: Outcome) -> None:
    """``keep`` needs no valve: candidates are confirmed and marked as the scan finds
    them, a chunk at a time."""
    for chunk in chunked(_missing_customers(sync), CONFIRM_CHUNK):
        sync.counts.add("deletion_candidates", len(chunk))
        _act(sync, applier, [f"c:{c}" for c in _confirm(sync, chunk)], "keep", out)
    if sync.rt.cfg.magento.subscribers == "none":
        return
    while True:
        total, guests = sync.store.guest_candidates(CONFIRM_CHUNK)
        sync.counts.add("deletion_candidates", len(guests))
        _act(sync, applier, guests, "keep", out)
        if not guests or applier is None or total <= len(guests):
            return


def _find(sync: Sync, mode: str, cap: int) -> Found:
    """Count every new candidate, keeping the first ``cap`` of each kind."""
    found = Found()
    if sync.rt.cfg.magento.subscribers != "none":
        found.guest_total, found.guests = sync.store.guest_candidates(cap)
    found.upgrade_total, found.upgrades = sync.store.marks_weaker_than(mode, cap)
    for cid in _missing_customers(sync):
        found.customer_total += 1
        if len(found.customers) < cap:
            found.customers.append(cid)
    sync.counts.add("deletion_candidates", found.total)
    return found


def _stop(out: Outcome, found: Found, limit: int, allowed: bool) -> None:
    what = f"--allow-deletions {limit}" if allowed else f"sync.max_deletions ({limit})"
    out.stop = (
        f"safety valve: {found.total} deletion(s) to apply exceed {what}; none was "
        f"confirmed or applied (e.g. {', '.join(found.examples())}). If Magento really "
        f"lost them, run `magsync reconcile --allow-deletions {found.total}`")


def _act(sync: Sync, applier: DeletionApplier | None, keys: list[str], mode: str,
         out: Outcome, *, earlier: bool = False) -> None:
    """Mark confirmed deletions (or strengthen earlier marks) and apply ``mode``."""
    if not keys:
        return
    sync.counts.add("mode_changes" if earlier else "deletions_found", len(keys))
    who = "person(s) marked deleted earlier" if earlier else "person(s) deleted in Magento"
    if applier is None:
        shown, n = out.would.get((who, mode), ([], 0))
        out.would[(who, mode)] = (shown + keys[:DRY_RUN_LIST - len(shown)], n + len(keys))
        return
    sync.store.mark_deleted(keys, mode)
    failed = applier.apply(keys, mode)
    if len(keys) > len(failed):
        out.done[(who, mode)] = out.done.get((who, mode), 0) + len(keys) - len(failed)


def _confirm(sync: Sync, ids: list[int]) -> list[int]:
    """The ids whose ``GET /V1/customers/{id}`` is Magento's 404 for a deleted customer
    (read side by side); the others are reported as still in Magento."""
    magento = sync.rt.magento
    workers = max(1, min(magento.cfg.concurrency, len(ids)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="confirm") as pool:
        answers = list(pool.map(lambda cid: customer_deleted(magento, cid), ids))
    still = [cid for cid, gone in zip(ids, answers, strict=True) if not gone]
    if still:
        reported = sync.counts.get("still_in_magento")
        sync.counts.add("still_in_magento", len(still))
        if not sync.rt.dry_run and reported < MAX_REPORTS:
            sync.store.add_reports(sync.engine.run_id, [
                ("not_deleted", f"c:{cid}", "not listed by the customer search, but "
                 "GET /V1/customers finds it: not deleted")
                for cid in still[:MAX_REPORTS - reported]])
    return [cid for cid, gone in zip(ids, answers, strict=True) if gone]


def _missing_customers(sync: Sync) -> Iterator[int]:
    """The sent customer ids Magento no longer lists and that are not marked deleted;
    on the way, marked customers Magento lists again are unmarked, and with
    ``subscribers: none`` the customers whose ``is_subscribed`` changed are sent."""
    rt, store = sync.rt, sync.store
    with_optin = rt.cfg.magento.subscribers == "none"
    sent = store.iter_sent_customers(with_optin=with_optin)
    first = next(sent, None)
    if first is None:
        return
    pages = iter_customer_ids(rt.magento, with_subscription=with_optin)
    back: list[str] = []
    differ: list[int] = []
    try:
        for s, m in merge_sorted(_ids(sync, pages), _chain(first, sent)):
            if m is None:
                if s.marked is None:
                    yield s.customer_id
            elif s.marked is not None:
                back.append(f"c:{s.customer_id}")
            elif with_optin and _flag_differs(m, s):
                differ.append(s.customer_id)
                if len(differ) >= rt.magento.cfg.page_size:
                    _send_differences(sync, differ)
                    differ = []
    finally:
        pages.close()
    _send_differences(sync, differ)
    _reappeared(sync, back)


def merge_sorted(magento: Iterable[CustomerId], sent: Iterable[SentCustomer]
                 ) -> Iterator[tuple[SentCustomer, CustomerId | None]]:
    """Each sent customer with Magento's entry of the same id, or None when Magento
    does not list it; both streams in ascending id order. Magento's ids past the last
    sent one are not read."""
    listed = iter(magento)
    m = next(listed, None)
    for s in sent:
        while m is not None and m.id < s.customer_id:
            m = next(listed, None)
        yield s, (m if m is not None and m.id == s.customer_id else None)


def _ids(sync: Sync, pages: Iterable[list[CustomerId]]) -> Iterator[CustomerId]:
    for page in pages:
        sync.counts.add("customers_scanned", len(page))
        if sync.progress:
            sync.progress("reconcile", sync.counts.get("customers_scanned"), None)
        yield from page


def _chain(first: SentCustomer, rest: Iterator[SentCustomer]) -> Iterator[SentCustomer]:
    yield first
    yield from rest


def _flag_differs(m: CustomerId, s: SentCustomer) -> bool:
    if m.is_subscribed is None:
        return False
    return (1 if m.is_subscribed else 2) != parse_optin(s.magento_optin)


def _send_differences(sync: Sync, ids: list[int]) -> None:
    """Send customers whose newsletter flag changed without moving ``updated_at``."""
    if ids:
        sync.counts.add("subscription_differences", len(ids))
        sync.customers(iter_customers_by_ids(sync.rt.magento, ids,
                                             fields=sync.rt.customer_fields), track=False)


def _reappeared(sync: Sync, keys: list[str]) -> None:
    """Customers marked deleted that Magento lists again are no longer marked."""
    if not keys:
        return
    sync.counts.add("reappeared", len(keys))
    if sync.rt.dry_run:
        return
    with sync.store.atomic():
        sync.store.unmark(keys)
        sync.store.dequeue(keys, kind=DELETE_KIND)
        sync.store.add_reports(sync.engine.run_id, [
            ("reappeared", k, "marked deleted earlier, listed by Magento again: no longer "
                              "marked") for k in keys])
