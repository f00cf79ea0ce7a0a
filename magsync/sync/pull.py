"""``magsync pull-optin``: opt-in changes made in Emarsys, written back into Magento.

A getchanges export (both key fields and the opt-in, ``[window start - 1 day, today +
1 day]`` in CET dates) is read in two passes. While the CSV streams, rows are classified
from the state file alone: no key (not a Magento contact) or no change (empty, or what
magsync last sent or applied: its own upserts come back this way). Only changes are
kept, so the download is not held open while Magento is written. Each change is then
decided against Magento's current opt-in (``consent.decide_pull``), written (customer
PUT, or the Emarsys module for guests), an opt-out goes back to Emarsys when both sides
changed, and the decision is recorded so that the next sync sends nothing back.

- *unknown*: the key matches nothing in Magento (no such customer, subscriber not in the
  subscriber list). Reported and skipped; it never holds the watermark.
- *failed*: Magento (or Emarsys, for a conflict's opt-out) refused this one row's write.
  Queued with kind ``pull``; while a failed row is not dead the watermark stays. A row
  whose attempts reach ``sync.max_attempts`` is dead and no longer holds it.
- An outage (retries used up), refused credentials or a configuration error stops the
  run (exit 3 or 2) with the watermark where it was; nothing is queued for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from magsync.config import Config
from magsync.consent import PullDecision, apply_record, decide_pull
from magsync.emarsys.contacts import upsert_batch
from magsync.emarsys.exports import DEFAULT_WAIT, ExportWait, fetch_changes
from magsync.emarsys.fields import list_fields
from magsync.errors import AuthError, ConfigError, FatalRemoteError
from magsync.magento.customers import get_customer
from magsync.mapping import customer_contact, guest_contact
from magsync.model import OPTIN, OPTIN_FIELD, Contact, ContactRecord
from magsync.state import StateStore
from magsync.sync.feed import mirror_refresher
from magsync.sync.optin_writer import MagentoOptinWriter
from magsync.sync.readiness import CUSTOMERS, KINDS, SUBSCRIBERS, allowed_kinds, stop_if_missing
from magsync.sync.run import ProgressHook, RunReport, finish_counts, recorded_run
from magsync.sync.runtime import DEFAULT_RETRY, Runtime
from magsync.sync.tracking import RunCounts

COMMAND = WATERMARK = "pull-optin"
QUEUE_KIND = "pull"
FIRST_RUN_LOOKBACK = timedelta(days=1)
MARGIN = timedelta(days=1)
CET = ZoneInfo("Europe/Berlin")  # getchanges' time_range is in Emarsys's CET dates
EXPORT_POLL_ENV = "MAGSYNC_EXPORT_POLL"
MAX_NOTED_FAILURES = 10

Report = tuple[str, str | None, str]


@dataclass(frozen=True)
class PullOptions:
    """``since`` widens the window (never narrows it); ``wait`` overrides how the export
    is polled (default: ``$MAGSYNC_EXPORT_POLL`` seconds between polls, else 1 s up to
    30 s)."""

    since: datetime | None = None
    dry_run: bool = False
    verbose: int = 0
    wait: ExportWait | None = None


@dataclass(frozen=True)
class ChangeRow:
    """One getchanges row: the ids it carries and its opt-in as exported."""

    customer_id: int | None
    subscriber_id: int | None
    optin: str
    bad_key: str | None = None  # a key value that is not a Magento id


@dataclass(frozen=True)
class Columns:
    """The CSV headers of the customer key, subscriber key and opt-in columns."""

    customer: str | None
    subscriber: str | None
    optin: str


def pull_optin(cfg: Config, store: StateStore, opts: PullOptions,
               progress: ProgressHook | None = None) -> RunReport:
    """Write Emarsys opt-in changes since the last run into Magento (SPEC section 4)."""
    with recorded_run(store, COMMAND, dry_run=opts.dry_run) as (report, run_id):
        allowed = allowed_kinds(cfg, store, COMMAND)
        start = report.started_at
        begin = window_start(store, start, opts.since)
        counts = RunCounts()
        with Runtime.open(cfg, dry_run=opts.dry_run, retry=DEFAULT_RETRY,
                          verbose=opts.verbose,
                          alongside=mirror_refresher(store, counts)) as rt:
            puller = Puller(rt, store, counts, run_id, progress, kinds=allowed)
            first, last = changes_dates(begin, start)
            fields = [rt.mapping.customer_key_field, rt.mapping.subscriber_key_field,
                      OPTIN_FIELD]
            rows = fetch_changes(rt.emarsys, first, last, fields, export_wait(opts))
            try:
                pending = puller.classify(rows)
                _close(rows)
                puller.apply(pending)
            finally:
                _close(rows)  # an error mid-stream must not leave the download open
                finish_counts(report, counts, store, run_id)
        report.notes += [n for n in puller.notes() if n not in report.notes]
        report.samples = puller.samples
        if puller.holding:
            report.notes.append(f"{len(puller.holding)} row(s) failed: the watermark stays, "
                                "the next run reads this window again")
        elif puller.waiting:
            report.notes.append(f"{puller.waiting} row(s) wait for their export: the "
                                "watermark stays, a run after the export reads them again")
        elif not opts.dry_run:
            store.set_watermark(WATERMARK, start)
        stop_if_missing(report, cfg, allowed)
    return report


def _close(rows: Iterator[Any]) -> None:
    close = getattr(rows, "close", None)
    if close is not None:
        close()


def window_start(store: StateStore, start: datetime, since: datetime | None) -> datetime:
    """The watermark (first run: one day back), or ``since`` when that is earlier."""
    mark = store.get_watermark(WATERMARK)
    begin = mark if mark is not None else start - FIRST_RUN_LOOKBACK
    return min(begin, since) if since is not None else begin


def changes_dates(begin: datetime, now: datetime) -> tuple[date, date]:
    """getchanges' ``[begin - 1 day, today + 1 day]`` as CET dates (a day of margin on
    each side covers the zone and Emarsys's own delay)."""
    return (begin - MARGIN).astimezone(CET).date(), (now + MARGIN).astimezone(CET).date()


def export_wait(opts: PullOptions) -> ExportWait:
    """How to poll the export: ``opts.wait``, ``$MAGSYNC_EXPORT_POLL`` or the default."""
    if opts.wait is not None:
        return opts.wait
    raw = os.environ.get(EXPORT_POLL_ENV, "").strip()
    if not raw:
        return DEFAULT_WAIT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 300:
        raise ConfigError(f"${EXPORT_POLL_ENV} must be a number of seconds (0..300), "
                          f"not {raw!r}")
    return replace(DEFAULT_WAIT, first=seconds, most=seconds)


def find_columns(header: Iterable[str], names: dict[int, str], customer_field: int,
                 subscriber_field: int) -> Columns:
    """Which headers hold the key fields and the opt-in (exports name columns by field
    label; a numeric header is taken as a field id)."""
    header = list(header)
    folded = {h.strip().casefold(): h for h in header}

    def column(fid: int) -> str | None:
        name = names.get(fid) or str(fid)
        return name if name in header else folded.get(name.strip().casefold(),
                                                      folded.get(str(fid)))

    optin = column(OPTIN_FIELD)
    customer, subscriber = column(customer_field), column(subscriber_field)
    if optin is None or (customer is None and subscriber is None):
        raise FatalRemoteError(
            f"the getchanges export has no opt-in or key column (columns: {header})",
            service="Emarsys", hint="check emarsys.key_fields with `magsync check`")
    return Columns(customer, subscriber, optin)


def parse_row(row: dict[str, str], cols: Columns) -> ChangeRow:
    """A CSV row as a ``ChangeRow`` (empty keys are None)."""
    values = [(row.get(c) or "").strip() if c else "" for c in (cols.customer,
                                                                 cols.subscriber)]
    ids: list[int | None] = []
    bad = None
    for text in values:
        number = _as_id(text)
        if text and number is None:
            bad = text
        ids.append(number)
    return ChangeRow(ids[0], ids[1], (row.get(cols.optin) or "").strip(), bad)


def _as_id(text: str) -> int | None:
    try:
        number = float(text)  # a numeric field may come back as "12.0"
    except ValueError:
        return None
    return int(number) if number.is_integer() and number > 0 else None


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
        self.rt, self.store, self.counts, self.run_id = rt, store, counts, run_id
        self.progress = progress
        self.kinds = kinds  # rows of a kind not exported yet wait (readiness.py)
        self.waiting = 0
        self.dry_run = rt.dry_run
        self.writer = MagentoOptinWriter(rt, store, refusals_only=True)
        self.queued = store.queued_keys(QUEUE_KIND)
        self.dead_before = {q.key for q in store.queue_items(dead=True, kind=QUEUE_KIND)}
        self.holding: list[str] = []  # failed keys that are not dead
        self.failures: list[str] = []
        self.planned: list[Report] = []  # reports a dry run would have written
        self.samples: list[dict[str, Any]] = []

    # -- pass 1: while the export streams -------------------------------------------------
    def classify(self, rows: Iterator[dict[str, str]]) -> list[Pending]:
        """Count and skip what needs no Magento read; return the changes."""
        pending: list[Pending] = []
        cols: Columns | None = None
        for raw in rows:
            if cols is None:
                cols = self._columns(raw)
            self.counts.add("read")
            row = parse_row(raw, cols)
            found = self._classify_one(row)
            if found is not None:
                pending.append(found)
            if self.progress:
                self.progress("rows", self.counts.get("read"), None)
        return pending

    def _columns(self, first: dict[str, str]) -> Columns:
        names = {f.id: f.name for f in list_fields(self.rt.emarsys)}
        m = self.rt.mapping
        return find_columns(first.keys(), names, m.customer_key_field, m.subscriber_key_field)

    def _classify_one(self, row: ChangeRow) -> Pending | None:
        if row.bad_key is not None:
            self._unknown(None, f"key value {row.bad_key!r} is not a Magento id")
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
            self._leave_queue(found.key)
            return None
        return found

    def _route(self, row: ChangeRow) -> Pending:
        """Which Magento person a row is, and which state record holds its opt-in."""
        sid = row.subscriber_id
        mirror = self.store.mirror_get(sid) if sid is not None else None
        cid = row.customer_id or (mirror.customer_id if mirror is not None else 0) or None
        if cid is None:
            return Pending(row, f"s:{sid}", None)
        key = f"c:{cid}"
        if sid is not None and self.store.get_contact(key) is None:
            guest = self.store.get_contact(f"s:{sid}")
            if guest is not None and guest.customer_id is None:
                # A guest who registered since the last sync: that sync takes the guest
                # record over (SPEC 3, rule 4), so the decision belongs in it.
                key = guest.key
        return Pending(row, key, cid)

    # -- pass 2: Magento ------------------------------------------------------------------
    def apply(self, pending: list[Pending]) -> None:
        """Decide and write each change."""
        for item in pending:
            contact = self._read_contact(item)
            if contact is None:
                continue
            record = self.store.get_contact(item.key)
            decision = decide_pull(item.row.optin, record, contact.optin)
            if not decision.changed:  # an earlier row of this export applied it
                self.counts.add("unchanged")
                continue
            self._apply_one(item, contact, record, decision)

    def _read_contact(self, item: Pending) -> Contact | None:
        """The contact as Magento holds it now; None (reported) when unknown or failed."""
        cid = item.customer_id
        if cid is None:
            sid = item.row.subscriber_id or 0
            row = self.store.mirror_get(sid)
            if row is None:
                self._unknown(item.key, f"subscriber {sid} is not in Magento's "
                                        "subscriber list")
                return None
            return guest_contact(row, self.rt.mapping)
        try:
            customer = get_customer(self.rt.magento, cid)
        except FatalRemoteError as exc:
            if isinstance(exc, AuthError):
                raise
            self._fail(item.key, None, f"Magento refused to read the customer: {exc.message}")
            return None
        if customer is None:
            self._unknown(item.key, f"customer {cid} does not exist in Magento")
            return None
        rows = self.store.mirror_for_customers([cid]).get(cid, [])
        return customer_contact(customer, rows, self.rt.mapping)

    def _apply_one(self, item: Pending, contact: Contact, record: ContactRecord | None,
                   decision: PullDecision) -> None:
        if self.dry_run:
            self._plan(item.key, decision)
            return
        error = None
        if decision.write_magento is not None:
            error = self.writer(contact, decision.write_magento)
        if error is None and decision.send_emarsys is not None:
            error = self._send_optout(item.row, decision.send_emarsys)
        if error is not None:
            self._fail(item.key, contact.email, error)
            return
        base = record or ContactRecord(key=item.key, customer_id=contact.customer_id,
                                       subscriber_id=contact.subscriber_id,
                                       email=contact.email)
        reports: list[Report] = []
        if decision.conflict:
            self.counts.add("conflicts")
            reports.append(("consent_conflict", item.key, decision.conflict))
        with self.store.atomic():
            self.store.save_contacts([apply_record(base, decision.record)])
            if reports:
                self.store.add_reports(self.run_id, reports)
            self._leave_queue(item.key)
        self._count_writes(decision)

    def _count_writes(self, decision: PullDecision) -> None:
        if decision.write_magento is not None:
            self.counts.add("applied")
        if decision.send_emarsys is not None:
            self.counts.add("sent")
        if decision.write_magento is None and decision.send_emarsys is None:
            self.counts.add("unchanged")  # Magento already held it: only recorded

    def _plan(self, key: str, decision: PullDecision) -> None:
        """Dry run: count what would be written, keep a few samples."""
        self._count_writes(decision)
        if decision.conflict:
            self.counts.add("conflicts")
            self.planned.append(("consent_conflict", key, decision.conflict))
        if len(self.samples) < 3:
            self.samples.append({"key": key, "magento_optin": decision.write_magento,
                                 "emarsys_optin": decision.send_emarsys})

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
        return "Emarsys refused the opt-out: " + "; ".join(
            f"{code}: {text}" for code, text in errors.items())

    # -- bookkeeping ----------------------------------------------------------------------
    def _unknown(self, key: str | None, detail: str) -> None:
        self.counts.add("unknown")
        report: Report = ("unknown_key", key, detail)
        if self.dry_run:
            self.planned.append(report)
            return
        with self.store.atomic():
            self.store.add_reports(self.run_id, [report])
            if key is not None:
                self._leave_queue(key)  # nothing left to retry for it

    def _fail(self, key: str, email: str | None, error: str) -> None:
        self.failures.append(f"{key}: {error}")
        if self.dry_run:
            self.counts.add("failed")
            self.holding.append(key)
            return
        with self.store.atomic():
            dead = self.store.enqueue(key, email, error, kind=QUEUE_KIND,
                                      max_attempts=self.rt.cfg.sync.max_attempts)
            self.store.add_reports(self.run_id, [("pull_failed", key, error)])
        self.queued.add(key)
        if key in self.dead_before:
            self.counts.add("dead")  # dead already: it neither holds nor fails the run
            return
        self.counts.add("failed")
        self.counts.add("queued")
        if dead:
            self.counts.add("dead")
        else:
            self.holding.append(key)

    def _leave_queue(self, key: str) -> None:
        if key in self.queued and not self.dry_run:
            self.store.dequeue([key], kind=QUEUE_KIND)
            self.queued.discard(key)

    def notes(self) -> list[str]:
        """Failed rows (as ``finish_counts`` notes reports, so the caller can drop the
        ones it already has), and what a dry run would have reported."""
        out = [f"pull_failed {f}" for f in self.failures[:MAX_NOTED_FAILURES]]
        if len(self.failures) > MAX_NOTED_FAILURES:
            out.append(f"... and {len(self.failures) - MAX_NOTED_FAILURES} more failed row(s)")
        out += [f"{kind} {key or ''}: {detail}" for kind, key, detail in self.planned[:5]]
        return out
