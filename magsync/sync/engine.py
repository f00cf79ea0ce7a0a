"""The send pipeline: contacts in, Emarsys requests out, results committed batch by batch.

The main thread diffs each contact against the state file and groups what must be sent
into jobs of at most ``batch_size`` contacts of one key kind. ``emarsys.concurrency``
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
from magsync.model import Contact
from magsync.state import StateStore
from magsync.sync.items import Item, Job, JobResult, Outcome
from magsync.sync.jobs import run_job
from magsync.sync.runtime import Runtime
from magsync.sync.tracking import PageTracker, RunCounts
from magsync.util.logs import get_logger
from magsync.util.signals import signals_held

log = get_logger("sync")


class Engine:
    """Feeds items to workers and commits their results; use as a context manager."""

    def __init__(self, rt: Runtime, store: StateStore, counts: RunCounts, *,
                 run_id: int | None, restart: bool = False, tracker: PageTracker | None = None,
                 on_progress: Callable[[], None] | None = None,
                 magento_writer: Callable[[Contact, int], str | None] | None = None) -> None:
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
        self._pending: dict[int, list[Item]] = {}
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
            group = self._pending.setdefault(item.contact.key_field, [])
            group.append(item)
            if len(group) >= self.batch_size:
                self._dispatch(self._pending.pop(item.contact.key_field))
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
        """Send the partial batches."""
        for key_field in list(self._pending):
            group = self._pending.pop(key_field)
            if group:
                self._dispatch(group)

    def _dispatch(self, items: list[Item]) -> None:
        keys = {it.contact.key for it in items}
        while len(self._inflight) >= self._max_inflight or keys & self._keys_in_flight:
            self.collect(block=True)
        job = Job(items=items, key_field=items[0].contact.key_field, restart=self.restart)
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
            job = self._inflight.pop(future)
            self._keys_in_flight -= {it.contact.key for it in job.items}
            try:
                result = future.result()
            except BaseException as exc:  # commit the other finished jobs first
                error = error or exc
                continue
            # Emarsys has applied what the job sent: an interrupt in the middle of its
            # commit would roll it back and the next run would send it again.
            with signals_held():
                self._commit(result)
            error = error or result.error  # committed what it did, then stop
        if error is not None:
            raise error

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
            del self._inflight[future]
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
        outcomes = result.outcomes
        tally: Counter[str] = Counter()
        for o in outcomes:
            tally[o.status] += 1
            for extra in o.extra_counts:
                tally[extra] += 1
        self.counts.update(tally)
        if self.rt.dry_run:
            self.samples.extend(result.samples[: max(0, 3 - len(self.samples))])
            self._page_done([o.item for o in outcomes])
            return
        self._write(outcomes)
        self._page_done([o.item for o in outcomes if o.done])

    def _write(self, outcomes: list[Outcome]) -> None:
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
                self._queued.difference_update(ok_keys)
            reports: list[tuple[str, str | None, str]] = []
            for o in outcomes:
                if o.item.reports:
                    reports += o.item.reports
                if o.reports:
                    reports += o.reports
                if o.error is not None:
                    self.counts.add("queued")
                    self._queued.add(o.item.contact.key)
                    dead = self.store.enqueue(o.item.contact.key, o.item.contact.email,
                                              o.error, max_attempts=self.max_attempts)
                    if dead:
                        self.counts.add("dead")
            if reports:
                self.store.add_reports(self.run_id, reports)

    def _page_done(self, items: list[Item]) -> None:
        # A job's items come from a few pages: one tracker call per page, not per item.
        pages: Counter[tuple[Hashable, Hashable]] = Counter(
            (it.lane, it.token) for it in items if it.token is not None)
        for (lane, token), n in pages.items():
            self.tracker.done(lane, token, n)
        if self.on_progress is not None:
            self.on_progress()


