"""What ``pull-optin`` writes into the state file about its rows: reports (unknown and
mismatched rows, conflicts), the ``pull`` queue of failed rows, and the records of what
it applied; under ``--dry-run`` only counts and the reports it would have written."""

from __future__ import annotations

from typing import Any

from magsync.consent import PullDecision
from magsync.model import ContactRecord
from magsync.state import StateStore
from magsync.sync.tracking import RunCounts

QUEUE_KIND = "pull"
MAX_NOTED_FAILURES = 10

Report = tuple[str, str | None, str]


class PullBook:
    """One run's bookkeeping."""

    def __init__(self, store: StateStore, counts: RunCounts, run_id: int, *,
                 dry_run: bool, max_attempts: int) -> None:
        self.store, self.counts, self.run_id = store, counts, run_id
        self.dry_run = dry_run
        self.max_attempts = max_attempts
        self.queued = store.queued_keys(QUEUE_KIND)
        self.dead_before = {q.key for q in store.queue_items(dead=True, kind=QUEUE_KIND)}
        self.holding: list[str] = []  # failed keys that are not dead
        self.failures: list[str] = []
        self.planned: list[Report] = []  # reports a dry run would have written
        self.samples: list[dict[str, Any]] = []

    def unknown(self, key: str | None, detail: str) -> None:
        """The row's key matches nothing in Magento: reported and skipped."""
        self.counts.add("unknown")
        self._skip(("unknown_key", key, detail))

    def mismatch(self, key: str | None, detail: str) -> None:
        """The row does not prove it belongs to the person its keys name: reported and
        skipped, never written."""
        self.counts.add("mismatched")
        self._skip(("mismatched_row", key, detail))

    def not_applied(self, key: str, why: str, record: ContactRecord | None) -> None:
        """A guest's change the configuration does not let magsync write (``subscribers:
        database``): reported, never queued, holding no watermark; ``record`` (Emarsys's
        value noted, where there is a record) so it is neither sent back nor repeated."""
        self.counts.add("not_applied")
        self._skip(("optin_not_applied", key, why), record)

    def _skip(self, report: Report, record: ContactRecord | None = None) -> None:
        if self.dry_run:
            self.planned.append(report)
            return
        with self.store.atomic():
            if record is not None:
                self.store.save_contacts([record])
            self.store.add_reports(self.run_id, [report])
            if report[1] is not None:
                self.leave_queue(report[1])  # nothing left to retry for it

    def fail(self, key: str, email: str | None, error: str) -> None:
        """This row's write failed: queued; it holds the watermark until it is dead."""
        self.failures.append(f"{key}: {error}")
        if self.dry_run:
            self.counts.add("failed")
            self.holding.append(key)
            return
        with self.store.atomic():
            dead = self.store.enqueue(key, email, error, kind=QUEUE_KIND,
                                      max_attempts=self.max_attempts)
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

    def applied(self, record: ContactRecord, reports: list[Report]) -> None:
        """What was written is in sync now (the next sync sends nothing back)."""
        with self.store.atomic():
            self.store.save_contacts([record])
            if reports:
                self.store.add_reports(self.run_id, reports)
            self.leave_queue(record.key)

    def count_writes(self, decision: PullDecision) -> None:
        if decision.write_magento is not None:
            self.counts.add("applied")
        if decision.send_emarsys is not None:
            self.counts.add("sent")
        if decision.write_magento is None and decision.send_emarsys is None:
            self.counts.add("unchanged")  # Magento already held it: only recorded

    def plan(self, key: str, decision: PullDecision) -> None:
        """Dry run: count what would be written, keep a few samples."""
        self.count_writes(decision)
        if decision.conflict:
            self.counts.add("conflicts")
            self.planned.append(("consent_conflict", key, decision.conflict))
        if len(self.samples) < 3:
            self.samples.append({"key": key, "magento_optin": decision.write_magento,
                                 "emarsys_optin": decision.send_emarsys})

    def leave_queue(self, key: str) -> None:
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
