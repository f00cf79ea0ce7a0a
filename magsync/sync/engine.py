"""The send pipeline: contacts in, Emarsys requests out, results committed batch by batch.

The main thread diffs each contact against the state file and groups what must be sent
into jobs of at most ``batch_size`` contacts of one key kind and one list joined (an
upsert carries one list, ``contact_list_id``). ``emarsys.concurrency``
worker threads run the jobs (getdata for first sends, attach/adopt, the upsert, the list
calls) while the main thread goes on reading Magento, so both sides work at once. The main
thread alone writes the state file: it commits each finished job in one transaction, and
only then counts the job's pages as done, which is what lets checkpoints and watermarks
move. A key is never in two requests at once: a job waits while any of its keys is in
flight.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from magsync.consent import NOT_READ, decide_send, needs_emarsys_read
from magsync.diff import plan_send
from magsync.model import LIST_ROLES
from magsync.state import StateStore
from magsync.sync.items import Item, Job, JobResult, Outcome
from magsync.sync.jobs import MagentoWriter, run_job
from magsync.sync.runtime import Runtime
from magsync.sync.tracking import PageTracker, RunCounts
from magsync.util.interrupts import critical
from magsync.util.logs import get_logger

log = get_logger("sync")


class Engine:
    """Feeds items to workers and commits their results; use as a context manager."""

    def __init__(self, rt: Runtime, store: StateStore, counts: RunCounts, *,
                 run_id: int | None, restart: bool = False, tracker: PageTracker | None = None,
                 on_progress: Callable[[], None] | None = None,
                 magento_writer: MagentoWriter | None = None,
                 defer_lists: bool = False) -> None:
        self.rt = rt
        self.store = store
        self.counts = counts
        self.run_id = run_id
        self.restart = restart
        self.tracker = tracker or PageTracker()
        self.on_progress = on_progress
        self.magento_writer = magento_writer
        self.batch_size = rt.cfg.emarsys.batch_size
        self.max_attempts = rt.cfg.sync.max_attempts
        self._pool = ThreadPoolExecutor(max_workers=rt.cfg.emarsys.concurrency,
                                        thread_name_prefix="emarsys")
        # One job waiting per worker keeps every worker busy; more only holds memory.
        self._max_inflight = rt.cfg.emarsys.concurrency + 1
        self._inflight: dict[Future[JobResult], Job] = {}
        self._keys_in_flight: set[str] = set()
        # pending items by (key field, the list their upsert carries, whether they need an
        # Emarsys read): those that do wait apart, so that a run's few opt-in checks
        # share one getdata instead of adding one to every job (see flush)
        self._pending: dict[tuple[int, str | None, bool], list[Item]] = {}
        # lists beyond the one an upsert carries are left to the run's end
        self.defer_lists = defer_lists
        # The queued keys, kept a superset of the queue table's (only this engine adds
        # to it while it runs), so that committing skips keys that are not queued.
        self._queued = store.queued_keys()
        self.samples: list[dict[str, object]] = []

    # -- feeding --------------------------------------------------------------------------
    def submit(self, items: Iterable[Item]) -> None:
        """Diff each item; queue what must be sent; count the rest as unchanged."""
        unsent: list[Item] = []
        read = 0
        for item in items:
            read += 1
            if item.contact.problems:
                self.counts.add("unconvertible", len(item.contact.problems))
                item.reports += [("unconvertible", item.contact.key, p)
                                 for p in item.contact.problems]
            # A first send (no record) is planned in its job, after the Emarsys reads.
            if item.record is not None and self._plan_locally(item):
                unsent.append(item)
                continue
            group_key = (item.contact.key_field, _carried_list(item), not item.decided)
            group = self._pending.setdefault(group_key, [])
            group.append(item)
            if len(group) >= self.batch_size:
                self._dispatch(self._pending.pop(group_key), group_key[1])
        self.counts.add("read", read)
        if unsent:
            self._finish_unsent(unsent)
        self.collect(block=False)

    def _plan_locally(self, item: Item) -> bool:
        """Plan an item that needs no Emarsys read; True when it needs no send at all."""
        if item.inherit is not None or item.record is None or self.restart:
            return False
        # A known contact with no definite Magento opt-in (status 2/4) sends none, so
        # nothing in Emarsys needs reading.
        if item.contact.optin is not None and needs_emarsys_read(item.contact, item.record):
            return False
        decision = decide_send(item.contact.optin, item.record, NOT_READ)
        item.decision = decision
        item.decided = True
        item.send = plan_send(item.contact, item.record, decision,
                              on_empty=self.rt.mapping.on_empty, restart=self.restart)
        return item.send is None and decision.write_magento is None and not decision.record

    def _finish_unsent(self, items: list[Item]) -> None:
        self.counts.add("unchanged", len(items))
        reports = [r for it in items for r in it.reports]
        if not self.rt.dry_run:
            with self.store.atomic():
                if reports:
                    self.store.add_reports(self.run_id, reports)
                # A queued contact that is now in sync has nothing left to retry.
                queued = self._queued & {it.contact.key for it in items}
                if queued:
                    self.store.dequeue(queued)
            self._queued -= queued
        self._page_done(items)

    def flush(self) -> None:
        """Send the partial batches: the items that need a read with those that do not,
        in as few jobs as ``batch_size`` allows (the reads all in the first)."""
        for key_field, carried in dict.fromkeys((k, c) for k, c, _ in self._pending):
            group = self._pending.pop((key_field, carried, True), []) \
                + self._pending.pop((key_field, carried, False), [])
            for start in range(0, len(group), self.batch_size):
                self._dispatch(group[start:start + self.batch_size], carried)

    def _dispatch(self, items: list[Item], list_role: str | None) -> None:
        keys = {it.contact.key for it in items}
        while len(self._inflight) >= self._max_inflight or keys & self._keys_in_flight:
            self.collect(block=True)
        job = Job(items=items, key_field=items[0].contact.key_field, restart=self.restart,
                  list_role=list_role, defer_lists=self.defer_lists)
        with critical():  # a job handed to a worker is tracked, whatever signal comes
            self._keys_in_flight |= keys
            future = self._pool.submit(run_job, self.rt, job, self.magento_writer)
            self._inflight[future] = job

    # -- committing -----------------------------------------------------------------------
    def collect(self, *, block: bool) -> None:
        """Commit finished jobs (waiting for at least one when ``block``)."""
        if not self._inflight:
            return
        done, _ = wait(list(self._inflight), timeout=None if block else 0,
                       return_when=FIRST_COMPLETED)
        error: BaseException | None = None
        for future in done:
            try:
                result = future.result()
            except BaseException as exc:  # commit the other finished jobs first
                self._forget(future)
                error = error or exc
                continue
            # Committed whole (Ctrl-C or SIGTERM wait for its end), and only then out of
            # the in-flight set: a commit that failed half-way is _settle's to finish.
            with critical():
                self._commit(result)
            self._forget(future)
            error = error or result.error  # committed what it did, then stop
        if error is not None:
            raise error

    def _forget(self, future: Future[JobResult]) -> None:
        job = self._inflight.pop(future)
        self._keys_in_flight -= {it.contact.key for it in job.items}

    def drain(self) -> None:
        """Send everything queued and commit it all."""
        self.flush()
        while self._inflight:
            self.collect(block=True)

    def close(self, *, cancel: bool = False) -> None:
        if cancel:
            for future in self._inflight:
                future.cancel()
            self._settle()
        self._pool.shutdown(wait=True, cancel_futures=cancel)

    def _settle(self) -> None:
        """On the way out after an error: commit the jobs that still finished, so the
        state knows what Emarsys has and the next run does not send it again."""
        if not self._inflight:
            return
        wait(list(self._inflight))
        for future in list(self._inflight):
            self._forget(future)
            if future.cancelled() or future.exception() is not None:
                continue
            try:
                self._commit(future.result())
            except Exception as exc:  # never mask the error that stopped the run
                log.debug("could not commit a finished job while stopping: %r", exc)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(cancel=exc_type is not None)

    def _commit(self, result: JobResult) -> None:
        """Save a finished job's records, then count it; each once (``_settle`` may
        finish a commit a signal interrupted)."""
        outcomes = result.outcomes
        if self.rt.dry_run:
            if not result.counted:
                self.samples.extend(result.samples[: max(0, 3 - len(self.samples))])
        elif not result.committed:
            try:
                with self.store.atomic():
                    result.queue_counts = self._write(outcomes)
                    result.committed = True
            except BaseException:
                result.committed = False  # rolled back
                raise
            self._queued.difference_update(o.item.contact.key for o in outcomes
                                           if o.error is None)
        if result.counted:
            return
        result.counted = True
        tally: Counter[str] = Counter(o.status for o in outcomes)
        for o in outcomes:
            if o.extra_counts:
                tally.update(o.extra_counts)
        tally.update(result.queue_counts)
        self.counts.update(tally)
        self._page_done([o.item for o in outcomes if o.done or self.rt.dry_run])

    def _write(self, outcomes: list[Outcome]) -> dict[str, int]:
        """The job's rows (in the caller's transaction); its queued and dead counts."""
        counts = {"queued": 0, "dead": 0}
        with self.store.atomic():
            saved = [o.record for o in outcomes if o.record is not None]
            if saved:
                self.store.save_contacts(saved)
            drops = [o.drop_key for o in outcomes if o.drop_key]
            if drops:
                self.store.delete_contacts(drops)
                self.store.dequeue(drops)
            # Only keys known to be queued need a DELETE: one per contact would cost as
            # much as saving it, and the queue is nearly always empty.
            ok_keys = [o.item.contact.key for o in outcomes
                       if o.error is None and o.item.contact.key in self._queued]
            if ok_keys:
                self.store.dequeue(ok_keys)
            reports: list[tuple[str, str | None, str]] = []
            for o in outcomes:
                if o.item.reports:
                    reports += o.item.reports
                if o.reports:
                    reports += o.reports
                if o.error is not None:
                    counts["queued"] += 1
                    self._queued.add(o.item.contact.key)
                    dead = self.store.enqueue(o.item.contact.key, o.item.contact.email,
                                              o.error, max_attempts=self.max_attempts)
                    counts["dead"] += int(dead)
            if reports:
                self.store.add_reports(self.run_id, reports)
        return {k: n for k, n in counts.items() if n}

    def _page_done(self, items: list[Item]) -> None:
        # A job's items come from a few pages: one tracker call per page, not per item.
        pages: Counter[tuple[Hashable, Hashable]] = Counter(
            (it.lane, it.token) for it in items if it.token is not None)
        for (lane, token), n in pages.items():
            self.tracker.done(lane, token, n)
        if self.on_progress is not None:
            self.on_progress()


def _carried_list(item: Item) -> str | None:
    """The list an item's upsert carries: the first it joins (None: it joins none)."""
    base = item.record if item.record is not None else item.inherit
    joins = item.contact.lists if base is None else item.contact.lists - base.lists
    return next((role for role in LIST_ROLES if role in joins), None) if joins else None
