"""``magsync pull-optin``: opt-in changes made in Emarsys, written back into Magento.

Two exports of the window are started together (``pull_sources``): getchanges, and the
campaign unsubscribes (getresponses, confirmed by getdata). Their rows are classified
while they stream, from the state file alone: no key (not a Magento contact), a key that
is not a Magento id, or no change (empty, or what magsync last sent or applied: its own
upserts come back this way). Only changes are kept, so no download is held open while
Magento is written; a malformed export stops the run (exit 3) before anything is
written. Each change is then checked against the person it points at (``pull_rows``:
only a row that provably belongs there is written), decided against Magento's current
opt-in (``consent.decide_pull``), written (customer PUT, or the subscriber source for
guests), an opt-out goes back to Emarsys when both sides changed, and the decision is
recorded so that the next sync sends nothing back.

- *unknown*: the key matches nothing in Magento. *mismatched*: the row does not prove
  it belongs to the person its keys name. Both are reported and skipped; they never
  hold the watermark.
- *failed*: Magento (or Emarsys, for a conflict's opt-out) refused this one row's write,
  or the customer changed in Magento during each of 3 tries. Queued with kind ``pull``;
  while a failed row is not dead the watermark stays. A row whose attempts reach
  ``sync.max_attempts`` is dead and no longer holds it.
- *not applied*: a guest's change the configuration does not let magsync write (with
  ``subscribers: database``: any opt-in, and opt-outs unless ``write_optin``). Reported;
  Emarsys's value is recorded so it is neither sent back nor reported again.
- *waiting*: a row of a kind no export has completed yet (``readiness``): the
  watermark stays, so the run after that export reads it again.
- An outage (retries used up), refused credentials, a malformed export or a
  configuration error stops the run (exit 3 or 2) with the watermark where it was.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from magsync.config import Config
from magsync.consent import PullDecision, apply_record, decide_pull, unapplied_record
from magsync.emarsys.contacts import error_text, upsert_batch
from magsync.emarsys.exports import ExportWait
from magsync.errors import AuthError, FatalRemoteError
from magsync.magento.customers import get_customer
from magsync.magento.subscribers import CustomerChanged
from magsync.mapping import customer_contact, guest_contact
from magsync.model import OPTIN, Contact, ContactRecord, Customer
from magsync.state import StateStore
from magsync.sync.feed import mirror_refresher
from magsync.sync.optin_writer import MagentoOptinWriter
from magsync.sync.pull_book import PullBook, Report
from magsync.sync.pull_rows import ChangeRow, Person, ownership_problem, subscriber_problem
from magsync.sync.pull_sources import (
    EXPORT_POLL_ENV,
    WATERMARK,
    changes_dates,
    iter_campaign_optouts,
    iter_changes,
    start_exports,
    window_start,
)
from magsync.sync.pull_sources import export_wait as _export_wait
from magsync.sync.readiness import CUSTOMERS, KINDS, SUBSCRIBERS, allowed_kinds, stop_if_missing
from magsync.sync.run import ProgressHook, RunReport, finish_counts, recorded_run
from magsync.sync.runtime import DEFAULT_RETRY, Runtime
from magsync.sync.tracking import RunCounts

COMMAND = "pull-optin"
WRITE_TRIES = 3  # reads of a customer that keeps changing before its row is queued

__all__ = ["EXPORT_POLL_ENV", "PullOptions", "changes_dates", "export_wait", "pull_optin",
           "window_start"]


@dataclass(frozen=True)
class PullOptions:
    """``since`` widens the window (never narrows it); ``wait`` overrides how the exports
    are polled (default: ``$MAGSYNC_EXPORT_POLL`` seconds between polls, else 1 s up to
    30 s)."""

    since: datetime | None = None
    dry_run: bool = False
    verbose: int = 0
    wait: ExportWait | None = None


def pull_optin(cfg: Config, store: StateStore, opts: PullOptions,
               progress: ProgressHook | None = None) -> RunReport:
    """Write Emarsys opt-in changes since the last run into Magento (SPEC section 4)."""
    with recorded_run(store, COMMAND, dry_run=opts.dry_run) as (report, run_id):
        allowed = allowed_kinds(cfg, store, COMMAND)
        start = report.started_at
        first, last = changes_dates(window_start(store, start, opts.since), start)
        wait = export_wait(opts)
        counts = RunCounts()
        with Runtime.open(cfg, store=store, dry_run=opts.dry_run, retry=DEFAULT_RETRY,
                          verbose=opts.verbose,
                          alongside=mirror_refresher(store, counts, progress)) as rt:
            puller = Puller(rt, store, counts, run_id, progress, kinds=allowed)
            try:
                exports = start_exports(rt, first, last, wait)
                pending = puller.classify(iter_changes(rt, exports.changes, wait))
                pending += puller.classify(iter_campaign_optouts(rt, exports.responses,
                                                                 wait, counts))
                puller.apply(pending)
            finally:
                finish_counts(report, counts, store, run_id)
        report.notes += [n for n in puller.book.notes() if n not in report.notes]
        report.samples = puller.book.samples
        if puller.book.holding:
            report.notes.append(f"{len(puller.book.holding)} row(s) failed: the watermark "
                                "stays, the next run reads this window again")
        elif puller.waiting:
            report.notes.append(f"{puller.waiting} row(s) wait for their export: the "
                                "watermark stays, a run after the export reads them again")
        elif not opts.dry_run:
            store.set_watermark(WATERMARK, start)
        stop_if_missing(report, cfg, allowed)
    return report


def export_wait(opts: PullOptions) -> ExportWait:
    """How to poll the exports: ``opts.wait``, ``$MAGSYNC_EXPORT_POLL`` or the default."""
    return _export_wait(opts.wait)


@dataclass
class Pending:
    """A row that is a change, waiting for Magento."""

    row: ChangeRow
    key: str  # the state record the decision is recorded in
    customer_id: int | None  # written as this customer; None: as the guest of ``row``


class Puller:
    """One run's rows: classified while streaming, then applied."""

    def __init__(self, rt: Runtime, store: StateStore, counts: RunCounts, run_id: int,
                 progress: ProgressHook | None = None, *,
                 kinds: frozenset[str] = frozenset(KINDS)) -> None:
        self.rt, self.store, self.counts = rt, store, counts
        self.progress = progress
        self.dry_run = rt.dry_run
        self.kinds = kinds  # rows of a kind not exported yet wait (readiness.py)
        self.waiting = 0
        self.writer = MagentoOptinWriter(rt, store, refusals_only=True)
        self.book = PullBook(store, counts, run_id, dry_run=rt.dry_run,
                             max_attempts=rt.cfg.sync.max_attempts)
        self.modules = rt.cfg.magento.subscribers != "none"  # subscriber ids mean something

    # -- pass 1: while an export streams ----------------------------------------------------
    def classify(self, rows: Generator[ChangeRow, None, None]) -> list[Pending]:
        """Count and skip what needs no Magento read; return the changes. Closes
        ``rows`` (a generator over a download) whatever happens."""
        pending: list[Pending] = []
        try:
            for row in rows:
                self.counts.add("read")
                found = self._classify_one(row)
                if found is not None:
                    pending.append(found)
                if self.progress:
                    self.progress("opt-in changes", self.counts.get("read"), None)
        finally:
            rows.close()
        return pending

    def _classify_one(self, row: ChangeRow) -> Pending | None:
        if row.bad_key is not None:
            self.book.mismatch(None, f"key value {row.bad_key!r} is not a plain Magento id "
                                     "(a decimal integer up to 4294967295)")
            return None
        if row.customer_id is None and row.subscriber_id is None:
            self.counts.add("ignored")  # not a Magento contact
            return None
        found = self._route(row)
        if (CUSTOMERS if found.customer_id is not None else SUBSCRIBERS) not in self.kinds:
            self.waiting += 1
            self.counts.add("waiting")
            return None
        if not decide_pull(row.optin, self.store.get_contact(found.key), None).changed:
            self.counts.add("unchanged")
            self.book.leave_queue(found.key)
            return None
        return found

    def _route(self, row: ChangeRow) -> Pending:
        """Which Magento person a row names, and which state record holds its opt-in."""
        sid = row.subscriber_id if self.modules else None
        mirror = self.store.mirror_get(sid) if sid is not None else None
        cid = row.customer_id or (mirror.customer_id if mirror is not None else 0) or None
        if cid is None:
            return Pending(row, f"s:{row.subscriber_id}", None)
        key = f"c:{cid}"
        if sid is not None and self.store.get_contact(key) is None:
            guest = self.store.get_contact(f"s:{sid}")
            if guest is not None and guest.customer_id is None:
                # A guest who registered since the last sync: that sync takes the guest
                # record over (SPEC 3, rule 4), so the decision belongs in it.
                key = guest.key
        return Pending(row, key, cid)

    # -- pass 2: Magento ----------------------------------------------------------------------
    def apply(self, pending: list[Pending]) -> None:
        """Check, decide and write each change."""
        for item in pending:
            if item.customer_id is None:
                self._apply_guest(item)
            else:
                self._apply_customer(item, item.customer_id)

    def _apply_guest(self, item: Pending) -> None:
        sid = item.row.subscriber_id or 0
        mirror = self.store.mirror_get(sid)
        if mirror is None:
            self.book.unknown(item.key, f"subscriber {sid} is not in Magento's subscriber "
                                        "list")
            return
        person = Person(item.key, None, mirror.email, mirror.website_id,
                        self.store.get_contact(item.key))
        problem = subscriber_problem(item.row, None, mirror) or self._problem(item, person)
        if problem is not None:
            self.book.mismatch(item.key, problem)
            return
        self._decide_and_write(item, person, guest_contact(mirror, self.rt.mapping), None)

    def _apply_customer(self, item: Pending, cid: int) -> None:
        """Read, check, decide and write; a customer saved in Magento between the read
        and the write is read again (``WRITE_TRIES`` in all), then the row is queued."""
        customer = self._read_customer(item, cid)
        for _ in range(WRITE_TRIES):
            if customer is None:
                return
            person = Person(item.key, cid, customer.get("email"),
                            _as_int(customer.get("website_id")),
                            self.store.get_contact(item.key))
            sid = item.row.subscriber_id if self.modules else None
            problem = (subscriber_problem(item.row, cid, self.store.mirror_get(sid))
                       if sid is not None else None) or self._problem(item, person)
            if problem is not None:
                self.book.mismatch(item.key, problem)
                return
            rows = self.store.mirror_for_customers([cid]).get(cid, [])
            contact = customer_contact(customer, rows, self.rt.mapping)
            try:
                self._decide_and_write(item, person, contact,
                                       str(customer.get("updated_at") or ""))
                return
            except CustomerChanged as changed:
                customer = changed.customer
        self.book.fail(item.key, customer.get("email") if customer else None,
                       f"customer {cid} was saved in Magento during each of {WRITE_TRIES} "
                       "tries to write the opt-in (not written, so no edit was reverted)")

    def _problem(self, item: Pending, person: Person) -> str | None:
        return ownership_problem(item.row, person, self.rt.cfg.magento.website_ids or ())

    def _read_customer(self, item: Pending, cid: int) -> Customer | None:
        """The customer as Magento holds it now; None (reported) when unknown or failed."""
        try:
            customer = get_customer(self.rt.magento, cid)
        except FatalRemoteError as exc:
            if isinstance(exc, AuthError):
                raise
            self.book.fail(item.key, None,
                           f"Magento refused to read the customer: {exc.message}")
            return None
        if customer is None:
            self.book.unknown(item.key, f"customer {cid} does not exist in Magento")
        return customer

    def _decide_and_write(self, item: Pending, person: Person, contact: Contact,
                          updated_at: str | None) -> None:
        record = person.record
        decision = decide_pull(item.row.optin, record, contact.optin)
        if not decision.changed:  # an earlier row of these exports applied it
            self.counts.add("unchanged")
            return
        if decision.write_magento is not None and item.customer_id is None:
            refusal = self.writer.guest_refusal(decision.write_magento)
            if refusal is not None:
                self.book.not_applied(item.key, refusal, apply_record(record, unapplied_record(
                    item.row.optin, contact.optin)) if record is not None else None)
                return
        if self.dry_run:
            self.book.plan(item.key, decision)
            return
        error = None
        if decision.write_magento is not None:
            # CustomerChanged (the customer was saved since ``updated_at``) goes up
            error = self.writer(contact, decision.write_magento,
                                expect_updated_at=updated_at)
        if error is None and decision.send_emarsys is not None:
            error = self._send_optout(item.row, decision.send_emarsys)
        if error is not None:
            self.book.fail(item.key, contact.email, error)
            return
        self._record(item, contact, record, decision)

    def _record(self, item: Pending, contact: Contact, record: ContactRecord | None,
                decision: PullDecision) -> None:
        base = record or ContactRecord(key=item.key, customer_id=contact.customer_id,
                                       subscriber_id=contact.subscriber_id,
                                       email=contact.email)
        if base.emarsys_id is None and item.row.user_id:
            # Proven by its email just now: the contact's id from here on.
            base.emarsys_id = item.row.user_id
        reports: list[Report] = []
        if decision.conflict:
            self.counts.add("conflicts")
            reports.append(("consent_conflict", item.key, decision.conflict))
        self.book.applied(apply_record(base, decision.record), reports)
        self.book.count_writes(decision)

    def _send_optout(self, row: ChangeRow, optin: int) -> str | None:
        """Both sides changed: the opt-out goes to Emarsys too, keyed on the key the
        exported contact carries (update only)."""
        m = self.rt.mapping
        field, value = ((m.customer_key_field, row.customer_id) if row.customer_id else
                        (m.subscriber_key_field, row.subscriber_id))
        key = str(field)
        result = upsert_batch(self.rt.emarsys, key, [{key: str(value), OPTIN: optin}],
                              create=False)
        errors = result.errors.get(str(value))
        if not errors:
            return None
        return "Emarsys refused the opt-out: " + error_text(errors)


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
