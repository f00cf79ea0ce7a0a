"""``magsync forget``: the erasure of one person at once (GDPR), whatever
``sync.deletions`` says (SPEC 7).

Refuses while Magento still holds the person (the next sync would send them again),
deletes their Emarsys contact keyed on their Magento key, and only once Emarsys
confirmed (OK, or 2008: already gone) removes every row about them from the state file.
An unconfirmed deletion keeps the rows, stays marked and queued, and is retried by the
next ``reconcile``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from magsync.config import Config, iter_secrets
from magsync.emarsys.client import EmarsysClient
from magsync.errors import UsageError
from magsync.magento.client import MagentoClient
from magsync.magento.customers import customer_deleted, find_customer_ids_by_email
from magsync.magento.subscriber_source import open_subscriber_source
from magsync.pacing import apply_retry_budget_override
from magsync.state import StateStore
from magsync.sync.deletions import DeletionApplier, KeyFields
from magsync.sync.run import RunReport, finish_counts, recorded_run
from magsync.sync.runtime import DEFAULT_RETRY, resolve_key_fields
from magsync.sync.tracking import RunCounts

HELD_HINT = ("delete them in Magento first (Customers > All Customers, or Marketing > "
             "Newsletter Subscribers); while Magento holds them the next sync sends them "
             "again")


@dataclass(frozen=True)
class Person:
    """Whom an erasure request names: one of a customer id, a subscriber id, an email."""

    customer_id: int | None = None
    subscriber_id: int | None = None
    email: str | None = None

    def describe(self) -> str:
        if self.customer_id is not None:
            return f"customer {self.customer_id}"
        if self.subscriber_id is not None:
            return f"subscriber {self.subscriber_id}"
        return "the person with that email"


@dataclass
class ForgetResult:
    report: RunReport
    erased: list[str]
    failed: list[str]


def forget(cfg: Config, store: StateStore, who: Person,
           confirm: Callable[[str], bool]) -> ForgetResult:
    """Erase one person: refuse while Magento holds them, ask ``confirm``, delete in
    Emarsys, then erase their rows (kept, and queued, when Emarsys does not confirm)."""
    with recorded_run(store, "forget") as (report, run_id):
        counts = RunCounts()
        with _clients(cfg) as (magento, emarsys):
            keys = _keys_of(store, who)
            _refuse_if_held(cfg, magento, store, who, keys, counts)
            if not keys:
                report.notes.append("magsync holds no contact with that email: nothing was "
                                    "deleted in Emarsys")
                finish_counts(report, counts, store, run_id)
                return ForgetResult(report, [], [])
            if not confirm(f"Delete {who.describe()} in Emarsys ({', '.join(keys)}) and "
                           "erase every row about them in the state file? This cannot be "
                           "undone."):
                raise UsageError("nothing was deleted")
            resolved = resolve_key_fields(cfg, emarsys)
            key_fields = KeyFields(resolved["customer_id"].id, resolved["subscriber_id"].id)
            store.mark_deleted(keys, "delete")
            applier = DeletionApplier(emarsys, store, key_fields, {}, counts,
                                      batch_size=cfg.emarsys.batch_size)
            failed = applier.apply(keys, "delete")
            finish_counts(report, counts, store, run_id)
            if failed:
                report.notes.append("Emarsys did not confirm the deletion: the rows are kept "
                                    "and the deletion is queued (`magsync queue list`)")
            else:
                report.notes.append(f"{len(keys)} contact(s) deleted in Emarsys and erased "
                                    "from the state file")
    return ForgetResult(report, [k for k in keys if k not in failed], failed)


@contextmanager
def _clients(cfg: Config) -> Iterator[tuple[MagentoClient, EmarsysClient]]:
    """Both clients alone: an erasure needs neither the mapping nor the lists."""
    kwargs: dict[str, Any] = {"retry": apply_retry_budget_override(DEFAULT_RETRY),
                              "secrets": iter_secrets(cfg)}
    magento = MagentoClient.from_config(cfg.magento, **kwargs)
    emarsys = EmarsysClient.from_config(cfg.emarsys, **kwargs)
    try:
        yield magento, emarsys
    finally:
        magento.close()
        emarsys.close()


def _keys_of(store: StateStore, who: Person) -> list[str]:
    """The state keys of the contacts the request names."""
    if who.customer_id is not None:
        return [f"c:{who.customer_id}"]
    if who.subscriber_id is not None:
        if store.get_contact(f"s:{who.subscriber_id}") is not None:
            return [f"s:{who.subscriber_id}"]
        owner = store.find_contact_by_subscriber(who.subscriber_id)
        return [owner.key if owner is not None else f"s:{who.subscriber_id}"]
    assert who.email is not None
    return store.keys_by_email(who.email)


def _refuse_if_held(cfg: Config, magento: MagentoClient, store: StateStore, who: Person,
                    keys: list[str], counts: RunCounts) -> None:
    """Exit 2 when Magento still holds a customer or subscriber the request names."""
    held = [k for k in keys if k.startswith("c:") and not customer_deleted(magento,
                                                                            int(k[2:]))]
    if who.email is not None:
        held += [f"c:{cid}" for cid in find_customer_ids_by_email(magento, who.email)]
    guests = [int(k[2:]) for k in keys if k.startswith("s:")]
    source = open_subscriber_source(cfg.magento, magento,
                                    retry=apply_retry_budget_override(DEFAULT_RETRY)) \
        if guests or who.email is not None else None
    if source is not None:
        # a complete read of the subscriber list, from the source the config names (it
        # refreshes the mirror too)
        try:
            counts.add("subscribers_read", store.replace_mirror(source.iter_all()))
        finally:
            source.close()
        held += [f"s:{sid}" for sid in guests if store.mirror_get(sid) is not None]
        if who.email is not None:
            held += [f"s:{sid}" for sid in store.mirror_ids_by_email(who.email)]
    if held:
        raise UsageError(f"Magento still holds {who.describe()} "
                         f"({', '.join(sorted(set(held)))}): nothing was deleted",
                         hint=HELD_HINT)
