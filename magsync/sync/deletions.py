"""Doing what ``sync.deletions`` says for people deleted in Magento (SPEC 7), and the
erasure of one person (``forget``).

``keep`` sets the contact's opt-in to 2; ``unsubscribe`` does that and takes it off
magsync's contact lists; ``delete`` deletes it in Emarsys (``contact/delete`` keyed on its
Magento key) and then removes every row about the person from the state file. Whatever
Emarsys does not confirm (an answer other than OK or 2008 "no such contact", or no
answer at all) stays marked and is queued as a deletion (queue kind ``delete``), retried
by later runs and never dropped: the person is absent from Magento by definition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from magsync.emarsys.client import EmarsysClient
from magsync.emarsys.contacts import (
    ALREADY_GONE,
    delete_contacts,
    error_text,
    remove_from_list,
    upsert_batch,
)
from magsync.errors import RemoteError
from magsync.model import MAGENTO_OPTIN, OPTIN, ContactRecord
from magsync.state import StateStore
from magsync.sync.feed import chunked
from magsync.sync.runtime import Runtime
from magsync.sync.tracking import RunCounts

DELETE_KIND = "delete"  # the failsafe queue's kind for unconfirmed deletions
NEVER_DEAD = 2**31  # a deletion is retried by every run; it never becomes dead
Errors = dict[str, dict[str, str]]


@dataclass(frozen=True)
class KeyFields:
    """The Emarsys key field ids: customer id and subscriber id."""

    customer: int
    subscriber: int

    def of(self, key: str) -> tuple[int, str]:
        """(key field id, key value) of a state key ``c:N`` / ``s:N``."""
        kind, _, value = key.partition(":")
        return (self.customer if kind == "c" else self.subscriber), value


class DeletionApplier:
    """Applies a mode to marked people through Emarsys and records what Emarsys
    confirmed. Mark people (``StateStore.mark_deleted``) before applying: a run killed
    half-way then leaves the work pending, not forgotten."""

    def __init__(self, emarsys: EmarsysClient, store: StateStore, keys: KeyFields,
                 list_ids: dict[str, int | None], counts: RunCounts, *,
                 batch_size: int = 1000) -> None:
        self.emarsys, self.store, self.keys = emarsys, store, keys
        self.list_ids = list_ids
        self.counts = counts
        self.batch_size = max(1, min(batch_size, 1000))

    def apply(self, keys: Iterable[str], mode: str) -> list[str]:
        """Apply ``mode`` to these people; the keys Emarsys did not confirm (queued).
        An outage queues every key not confirmed yet, then raises."""
        failed: list[str] = []
        groups: dict[int, list[str]] = {}
        for key in dict.fromkeys(keys):
            groups.setdefault(self.keys.of(key)[0], []).append(key)
        todo = [chunk for group in groups.values()
                for chunk in chunked(group, self.batch_size)]
        for i, chunk in enumerate(todo):
            records = self.store.get_contacts(chunk)  # a batch at a time: memory stays flat
            try:
                errors = self._send(mode, chunk, records)
            except RemoteError as exc:
                for rest in todo[i:]:  # this batch's records are read already
                    self._queue(rest, mode, records if rest is chunk
                                else self.store.get_contacts(rest), f"no answer: {exc}")
                raise
            failed += self._commit(mode, chunk, records, errors)
        return failed

    # -- talking to Emarsys ------------------------------------------------------------------
    def _send(self, mode: str, chunk: list[str], records: dict[str, ContactRecord]
              ) -> dict[str, str]:
        """One batch of one key kind: the error text per key Emarsys did not confirm."""
        field, _ = self.keys.of(chunk[0])
        values = {self.keys.of(k)[1]: k for k in chunk}
        if mode == "delete":
            errors: Errors = {}
            for _, errs in delete_contacts(self.emarsys, field, list(values)):
                errors.update(errs)
            return _unconfirmed(errors, values)
        bodies = [{str(field): v, OPTIN: 2} for v in values]
        failed = _unconfirmed(upsert_batch(self.emarsys, field, bodies, create=False).errors,
                              values)
        if mode == "unsubscribe":
            for role, list_id in self.list_ids.items():
                members = [v for v, k in values.items()
                           if k not in failed and role in _lists_of(records.get(k))]
                if members and list_id is not None:
                    errors = remove_from_list(self.emarsys, list_id, field, members)
                    failed.update(_unconfirmed(errors, values))
        return failed

    # -- recording ---------------------------------------------------------------------------
    def _commit(self, mode: str, chunk: list[str], records: dict[str, ContactRecord],
                failed: dict[str, str]) -> list[str]:
        done = [k for k in chunk if k not in failed]
        if mode == "delete":
            self.store.erase_people(done)
            self.counts.add("erased", len(done))
        else:
            with self.store.atomic():
                self.store.save_contacts(_opted_out(records[k], mode) for k in done
                                         if k in records)
                self.store.set_mark_applied(done, mode)
                self.store.dequeue(done, kind=DELETE_KIND)
        self.counts.add("deletions_applied", len(done))
        self._queue([k for k in chunk if k in failed], mode, records, failed)
        return [k for k in chunk if k in failed]

    def _queue(self, keys: list[str], mode: str, records: dict[str, ContactRecord],
               why: dict[str, str] | str) -> None:
        if not keys:
            return
        with self.store.atomic():
            for key in keys:
                text = why if isinstance(why, str) else why[key]
                record = records.get(key)
                self.store.enqueue(key, record.email if record else None,
                                   f"deletion ({mode}) not confirmed by Emarsys: {text}",
                                   max_attempts=NEVER_DEAD, kind=DELETE_KIND)
        self.counts.add("deletions_queued", len(keys))
        self.counts.add("failed", len(keys))


def _unconfirmed(errors: Errors, values: dict[str, str]) -> dict[str, str]:
    """Key -> error text for every value whose error is not 2008 (already gone)."""
    out: dict[str, str] = {}
    for value, errs in errors.items():
        if value in values and any(code != ALREADY_GONE for code in errs):
            out[values[value]] = error_text(errs)
    return out


def _lists_of(record: ContactRecord | None) -> frozenset[str]:
    return record.lists if record is not None else frozenset()


def _opted_out(record: ContactRecord, mode: str) -> ContactRecord:
    """The record after Emarsys confirmed opt-in 2 (and, for unsubscribe, no lists)."""
    sent: dict[str, Any] = {**record.sent, OPTIN: 2, MAGENTO_OPTIN: 2}
    lists = frozenset() if mode == "unsubscribe" else record.lists
    return replace(record, sent=sent, lists=lists)


def retry_pending(applier: DeletionApplier, store: StateStore,
                  on_retry: Callable[[int], None] | None = None) -> list[str]:
    """Apply again every marked person whose mode Emarsys has not confirmed yet (a
    queued deletion); these were counted by the safety valve when first found."""
    pending = store.pending_marks()
    if on_retry is not None:
        on_retry(len(pending))
    failed: list[str] = []
    by_mode: dict[str, list[str]] = {}
    for mark in pending:
        by_mode.setdefault(mark.mode, []).append(mark.key)
    for mode, keys in by_mode.items():
        failed += applier.apply(keys, mode)
    return failed


def applier_for(rt: Runtime, store: StateStore, counts: RunCounts) -> DeletionApplier:
    """The applier of a sync run: its Emarsys client, key fields and list ids."""
    keys = KeyFields(rt.mapping.customer_key_field, rt.mapping.subscriber_key_field)
    return DeletionApplier(rt.emarsys, store, keys, rt.list_ids, counts,
                           batch_size=rt.cfg.emarsys.batch_size)


def retry_deletions(rt: Runtime, store: StateStore, counts: RunCounts,
                    applier: DeletionApplier | None = None) -> None:
    """Retry the queued deletions (``queue retry``; ``reconcile`` does it too, with the
    applier it goes on with)."""
    if not rt.dry_run:
        retry_pending(applier or applier_for(rt, store, counts), store,
                      lambda n: counts.add("deletions_retried", n))
