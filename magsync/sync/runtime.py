"""What a sync run holds: both clients, the resolved mapping and the contact lists."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from magsync.config import Config, FieldRef, iter_secrets
from magsync.emarsys.client import EmarsysClient
from magsync.emarsys.contacts import (
    ContactList,
    find_list,
    find_or_create_list,
    read_lists,
)
from magsync.emarsys.fields import find_field, fit_problem, read_choices, resolve_field
from magsync.errors import RemoteConfigError
from magsync.http import Abort, RetryPolicy, apply_retry_budget_override
from magsync.magento.client import MagentoClient
from magsync.magento.subscriber_source import SubscriberSource, open_subscriber_source
from magsync.mapping import ResolvedMapping, build_mapping, customer_fields_filter
from magsync.state import StateStore
from magsync.state.binding import KeyField, enforce_key_fields, read_binding
from magsync.util.logs import get_logger

log = get_logger("sync")
T = TypeVar("T")
# A start-up task run beside the Emarsys reads: given the Magento client and the
# subscriber source (None with ``subscribers: none``)
SideTask = Callable[[MagentoClient, SubscriberSource | None], object]

REALTIME_RETRY = RetryPolicy(budget=15.0, base_delay=0.5, max_delay=5.0)
DEFAULT_RETRY = RetryPolicy()
LIST_ROLES = ("customers", "subscribers")


@dataclass
class Runtime:
    """The resources of one run; ``close()`` releases the connections."""

    cfg: Config
    magento: MagentoClient
    emarsys: EmarsysClient
    mapping: ResolvedMapping
    list_ids: dict[str, int | None] = field(default_factory=dict)
    dry_run: bool = False
    verbose: int = 0
    # where subscribers come from (magento.subscribers); None with ``none``
    subscribers: SubscriberSource | None = None
    # At most emarsys.concurrency Emarsys requests in flight: a running job holds one
    # slot; a job's independent reads and list adds run side by side only on slots the
    # other workers leave free (at the end of a run, when fewer jobs are left).
    request_slots: threading.Semaphore = field(init=False)
    side_requests: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        concurrency = self.cfg.emarsys.concurrency
        self.request_slots = threading.Semaphore(concurrency)
        self.side_requests = ThreadPoolExecutor(max_workers=concurrency,
                                                thread_name_prefix="emarsys-side")

    @cached_property
    def customer_fields(self) -> str:
        """The response filter of the customer searches: what the mapping reads."""
        return customer_fields_filter(f.path for f in self.cfg.contacts.customers.fields)

    @classmethod
    def open(cls, cfg: Config, *, dry_run: bool = False, retry: RetryPolicy = DEFAULT_RETRY,
             verbose: int = 0, sleep: Callable[[float], None] | None = None,
             alongside: SideTask | None = None,
             store: StateStore | None = None) -> Runtime:
        """Connect both clients, open the subscriber source, resolve every mapped field
        and find (or create) the lists.

        A missing mapped field stops here, before any write to Emarsys (exit 2), and so
        does a key field that is not the one ``store`` is bound to (its first resolution is
        recorded there). ``alongside`` (e.g. the subscriber scan) runs on the Magento side
        meanwhile, so the start-up reads of both sides overlap instead of adding up.
        """
        on_keys = _key_field_guard(store, record=not dry_run) if store is not None else None
        secrets = iter_secrets(cfg)
        retry = apply_retry_budget_override(retry)
        # One stop signal for both clients: once any request gave up, none goes on
        # retrying (the run stops within one retry budget).
        kwargs: dict[str, Any] = {"retry": retry, "secrets": secrets, "abort": Abort()}
        if sleep is not None:
            kwargs["sleep"] = sleep
        magento = MagentoClient.from_config(cfg.magento, **kwargs)
        try:
            subscribers = open_subscriber_source(cfg.magento, magento, retry=retry,
                                                 sleep=sleep)
        except BaseException:
            magento.close()
            raise
        emarsys = EmarsysClient.from_config(cfg.emarsys, **kwargs)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="startup") as pool:
            side = pool.submit(alongside, magento, subscribers) \
                if alongside is not None else None
            try:
                mapping, list_ids = resolve_remote(cfg, emarsys, create_lists=not dry_run,
                                                   on_key_fields=on_keys)
                if side is not None:
                    side.result()
            except BaseException:
                if side is not None:
                    side.cancel()
                    wait([side])
                _close_all(magento, emarsys, subscribers)
                raise
        return cls(cfg, magento, emarsys, mapping, list_ids, dry_run, verbose,
                   subscribers=subscribers)

    def close(self) -> None:
        self.side_requests.shutdown(wait=True, cancel_futures=True)
        _close_all(self.magento, self.emarsys, self.subscribers)

    def side_by_side(self, *calls: Callable[[], T]) -> list[T]:
        """Run ``calls`` (each one Emarsys request) at once where a free request slot
        allows, else one after the other in this thread; their results in order.

        The caller holds a slot for its own request (see ``run_job``); nothing here
        waits for a slot, so this cannot deadlock.
        """
        futures: dict[int, Future[T]] = {}
        for i, call in enumerate(calls[1:], start=1):
            if not self.request_slots.acquire(blocking=False):
                break
            futures[i] = self.side_requests.submit(self._in_slot, call)
        try:
            results = {i: call() for i, call in enumerate(calls) if i not in futures}
        finally:
            wait(list(futures.values()))
        results.update((i, f.result()) for i, f in futures.items())
        return [results[i] for i in range(len(calls))]

    def _in_slot(self, call: Callable[[], T]) -> T:
        try:
            return call()
        finally:
            self.request_slots.release()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_all(magento: MagentoClient, emarsys: EmarsysClient,
               subscribers: SubscriberSource | None) -> None:
    try:
        if subscribers is not None:
            subscribers.close()
    finally:
        magento.close()
        emarsys.close()


def _key_field_guard(store: StateStore, *, record: bool
                     ) -> Callable[[dict[str, KeyField]], None]:
    """Checks the resolved key fields against the binding, read now: before the start-up
    threads, which may hold the state file for a while (the subscriber scan)."""
    stored = read_binding(store)
    return lambda resolved: enforce_key_fields(store, stored, resolved, record=record)


def resolve_key_fields(cfg: Config, emarsys: EmarsysClient) -> dict[str, KeyField]:
    """Both key fields as the account has them (id and name), by role."""
    kf = cfg.emarsys.key_fields
    out = {}
    for role, ref in (("customer_id", kf.customer_id), ("subscriber_id", kf.subscriber_id)):
        fld = resolve_field(emarsys, ref)
        out[role] = KeyField(fld.id, fld.name)
    return out


def resolve_remote(cfg: Config, emarsys: EmarsysClient, *, create_lists: bool,
                   on_key_fields: Callable[[dict[str, KeyField]], None] | None = None
                   ) -> tuple[ResolvedMapping, dict[str, int | None]]:
    """The mapping and the list ids. After the field list, the choice lists and the
    contact lists are read at once (each start-up request in a row costs a round trip,
    and sync-realtime starts every minute); a missing list is created only once the
    mapping (and ``on_key_fields``, the binding check) passed, so an error writes
    nothing."""
    field_ids = resolve_field_ids(cfg, emarsys)
    if on_key_fields is not None:
        on_key_fields(resolve_key_fields(cfg, emarsys))
    check_field_fit(cfg, emarsys)
    wanted = {field_ids[fm.field] for fm in cfg.contacts.customers.fields
              if fm.convert in ("country", "choice", "gender")}
    with ThreadPoolExecutor(max_workers=min(len(wanted) + 1, cfg.emarsys.concurrency),
                            thread_name_prefix="startup-emarsys") as pool:
        known = pool.submit(read_lists, emarsys)
        reads = {fid: pool.submit(read_choices, emarsys, fid) for fid in sorted(wanted)}
        choices = {fid: [(str(c.id), c.label) for c in f.result()] for fid, f in reads.items()}
        lists = known.result()
    mapping = build_mapping(cfg, field_ids, choices)
    if mapping.country_unmatched:
        log.debug("Emarsys country labels matched to no ISO code: %s",
                  ", ".join(mapping.country_unmatched))
    keys = (mapping.customer_key_field, mapping.subscriber_key_field)
    return mapping, resolve_lists(cfg, emarsys, keys, lists, create=create_lists)


def resolve_field_ids(cfg: Config, emarsys: EmarsysClient) -> dict[FieldRef, int]:
    """Every mapped field, both key fields, email and opt-in must exist in Emarsys."""
    refs: list[FieldRef] = [cfg.emarsys.key_fields.customer_id,
                            cfg.emarsys.key_fields.subscriber_id, 3, 31]
    refs += [fm.field for fm in cfg.contacts.customers.fields]
    field_ids: dict[FieldRef, int] = {}
    missing: list[str] = []
    for ref in refs:
        try:
            field_ids[ref] = resolve_field(emarsys, ref).id
        except RemoteConfigError:
            missing.append(f"id {ref}" if isinstance(ref, int) else repr(ref))
    if missing:
        raise RemoteConfigError(
            f"Emarsys has no field {', '.join(missing)}; every mapped field and both key "
            "fields must exist before a sync", service="Emarsys",
            hint="run `magsync fields --create-missing` (fields referenced by name), or fix "
                 "the field ids in the config")
    return field_ids


def check_field_fit(cfg: Config, emarsys: EmarsysClient) -> None:
    """Every mapped field must take what its converter writes (a ``choice`` converter a
    single-choice field...): else exit 2 naming the entry and the fix, before a choice
    list of a field that has none is asked for (an Emarsys error, which is exit 3)."""
    problems = []
    for fm in cfg.contacts.customers.fields:
        fld = find_field(emarsys, fm.field)
        problem = fit_problem(fm.convert, fld) if fld is not None else ""
        if problem:
            problems.append(f"contacts.customers.fields.{fm.path}: {problem}")
    if problems:
        raise RemoteConfigError("; ".join(problems), service="Emarsys",
                                hint="`magsync fields` shows every mapped field and whether "
                                     "it fits")


def resolve_lists(cfg: Config, emarsys: EmarsysClient, key_fields: tuple[int, int],
                  known: list[ContactList], *, create: bool) -> dict[str, int | None]:
    """The ids of both contact lists (None under --dry-run when a list does not exist);
    ``known`` is the account's lists as just read."""
    names = {"customers": (cfg.contacts.customers.list, key_fields[0]),
             "subscribers": (cfg.contacts.subscribers.list, key_fields[1])}
    if not create:
        found = {role: find_list(emarsys, name, known) for role, (name, _) in names.items()}
        return {role: lst.id if lst else None for role, lst in found.items()}
    # A first run creates both lists: at once, as the other start-up reads.
    workers = max(1, min(len(names), cfg.emarsys.concurrency))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="startup-lists") as pool:
        made = {role: pool.submit(find_or_create_list, emarsys, name, key_field, known)
                for role, (name, key_field) in names.items()}
        return {role: f.result().id for role, f in made.items()}
