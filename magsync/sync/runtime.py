"""What a sync run holds: both clients, the resolved mapping and the contact lists.

Emarsys's metadata (fields, choices, lists) comes from the state file's copy when the run
may use it (``cached_metadata``: sync-realtime) and it is fresh (``metadata.py``); every
check runs on it, and a check that fails on the copy is made again on a fresh read before
it stops the run. When Emarsys later calls a field or a list invalid, ``recheck_fields``
and ``replace_list`` read it again, so no request is made with a stale id.
"""

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
    list_lists,
)
from magsync.emarsys.fields import (
    find_field,
    fit_problem,
    list_fields,
    read_choices,
    resolve_field,
)
from magsync.errors import RemoteConfigError, StateError
from magsync.magento.client import MagentoClient
from magsync.magento.subscriber_source import SubscriberSource, open_subscriber_source
from magsync.mapping import ResolvedMapping, build_mapping, customer_fields_filter
from magsync.model import LIST_ROLES
from magsync.pacing import Abort, RetryPolicy, apply_retry_budget_override
from magsync.state import StateStore
from magsync.state.binding import KeyField, enforce_key_fields, read_binding
from magsync.sync.metadata import MetadataCache, bind_lists, list_name
from magsync.util.logs import get_logger

log = get_logger("sync")
T = TypeVar("T")
# A start-up task run beside the Emarsys reads: given the Magento client and the
# subscriber source (None with ``subscribers: none``)
SideTask = Callable[[MagentoClient, SubscriberSource | None], object]

REALTIME_RETRY = RetryPolicy(budget=15.0, base_delay=0.5, max_delay=5.0)
DEFAULT_RETRY = RetryPolicy()
def fields_filter(cfg: Config) -> str:
    """The response filter of the customer searches: what the mapping reads."""
    return customer_fields_filter(f.path for f in cfg.contacts.customers.fields)
# what resolve_remote finds: the mapping, the list id per role, the id of each field ref
Resolved = tuple[ResolvedMapping, dict[str, "int | None"], dict[FieldRef, int]]


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
    # every mapped field's id as resolved at start (to tell whether Emarsys changed them)
    field_ids: dict[FieldRef, int] = field(default_factory=dict)
    # the state file's copy of the metadata; ``metadata_stale``: drop it when closing
    metadata: MetadataCache | None = None
    metadata_stale: bool = False
    key_guard: _KeyFieldGuard | None = None  # the binding's key fields (None: no state)
    _repair: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        concurrency = self.cfg.emarsys.concurrency
        self.request_slots = threading.Semaphore(concurrency)
        self.side_requests = ThreadPoolExecutor(max_workers=concurrency,
                                                thread_name_prefix="emarsys-side")

    @cached_property
    def customer_fields(self) -> str:
        """The response filter of the customer searches: what the mapping reads."""
        return fields_filter(self.cfg)

    @classmethod
    def open(cls, cfg: Config, *, dry_run: bool = False, retry: RetryPolicy = DEFAULT_RETRY,
             verbose: int = 0, sleep: Callable[[float], None] | None = None,
             alongside: SideTask | None = None, store: StateStore | None = None,
             cached_metadata: bool = False) -> Runtime:
        """Connect both clients, open the subscriber source, resolve every mapped field
        and find (or create) the lists.

        A missing mapped field stops here, before any write to Emarsys (exit 2), and so
        does a key field that is not the one ``store`` is bound to (its first resolution is
        recorded there). ``alongside`` (e.g. the subscriber scan) runs on the Magento side
        meanwhile, so the start-up reads of both sides overlap instead of adding up.
        ``cached_metadata``: Emarsys's metadata may come from ``store``'s copy (if fresh).
        """
        guard = _KeyFieldGuard(store) if store is not None else None
        magento, subscribers, emarsys = _connect(cfg, retry, sleep)
        cache = MetadataCache(store, cfg) if store is not None else None
        seeded = cache is not None and cached_metadata and cache.seed(emarsys)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="startup") as pool:
            side = pool.submit(alongside, magento, subscribers) \
                if alongside is not None else None
            try:
                resolved = _resolve_checked(
                    cfg, emarsys, create_lists=not dry_run, cached=seeded,
                    on_key_fields=guard.recording(not dry_run) if guard else None)
                if side is not None:
                    side.result()
            except BaseException:
                if side is not None:
                    side.cancel()
                    wait([side])
                _close_all(magento, emarsys, subscribers)
                raise
        mapping, list_ids, field_ids = resolved
        if store is not None and not dry_run:
            bind_lists(store, cfg, list_ids)
            if cache is not None:
                cache.save(emarsys)
        return cls(cfg, magento, emarsys, mapping, list_ids, dry_run, verbose,
                   subscribers=subscribers, field_ids=field_ids, metadata=cache,
                   key_guard=guard)

    def close(self) -> None:
        self.side_requests.shutdown(wait=True, cancel_futures=True)
        try:
            if self.metadata_stale and self.metadata is not None and not self.dry_run:
                self.metadata.clear()
        finally:
            _close_all(self.magento, self.emarsys, self.subscribers)

    def replace_list(self, role: str, stale: int) -> int:
        """The id of ``role``'s list once Emarsys said ``stale`` is no list (it was deleted):
        found again by name, else created (SPEC 3). The first worker to ask does it."""
        with self._repair:
            current = self.list_ids.get(role)
            if current is not None and current != stale:
                return current  # another worker did it already
            self.metadata_stale = True
            name = list_name(self.cfg, role)
            key = (self.mapping.customer_key_field if role == "customers"
                   else self.mapping.subscriber_key_field)
            found = find_or_create_list(self.emarsys, name, key,
                                        list_lists(self.emarsys, refresh=True))
            self.list_ids[role] = found.id
        log.warning("the Emarsys contact list %r (id %s) no longer exists: %s as id %s; "
                    "the next sync-background adds every contact that belongs on it",
                    name, stale, "created it again" if found.created else "found it",
                    found.id)
        return found.id

    def recheck_fields(self, error: RemoteConfigError) -> None:
        """After Emarsys called a field invalid (2004/2006): read the fields again and
        stop with what they say (a mapped field gone, or ids that changed while this run
        used them); ``error`` itself when they did not change."""
        with self._repair:
            self.metadata_stale = True
            list_fields(self.emarsys, refresh=True)
            now = resolve_field_ids(self.cfg, self.emarsys)  # exit 2 naming a missing field
            if self.key_guard is not None:  # exit 2: a key field replaced in Emarsys
                self.key_guard.recording(False)(resolve_key_fields(self.cfg, self.emarsys))
        changed = sorted(f"{ref!r}: id {old} -> {now.get(ref)}"
                         for ref, old in self.field_ids.items() if now.get(ref) != old)
        if not changed:
            raise error
        raise RemoteConfigError(
            f"Emarsys fields changed while this run used them ({'; '.join(changed)}); it "
            "stopped rather than write with the old ids", service="Emarsys",
            hint="the next run reads the fields again; `magsync fields` shows them")

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


def _connect(cfg: Config, retry: RetryPolicy, sleep: Callable[[float], None] | None
             ) -> tuple[MagentoClient, SubscriberSource | None, EmarsysClient]:
    """Both clients and the subscriber source, sharing one stop signal: once any request
    gave up, none goes on retrying (the run stops within one retry budget)."""
    retry = apply_retry_budget_override(retry)
    kwargs: dict[str, Any] = {"retry": retry, "secrets": iter_secrets(cfg), "abort": Abort()}
    if sleep is not None:
        kwargs["sleep"] = sleep
    magento = MagentoClient.from_config(cfg.magento, **kwargs)
    try:
        subscribers = open_subscriber_source(cfg.magento, magento, retry=retry, sleep=sleep)
    except BaseException:
        magento.close()
        raise
    return magento, subscribers, EmarsysClient.from_config(cfg.emarsys, **kwargs)


class _KeyFieldGuard:
    """Checks resolved key fields against the binding, read now: before the start-up
    threads, which may hold the state file for a while (the subscriber scan)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.stored = read_binding(store)

    def recording(self, record: bool) -> Callable[[dict[str, KeyField]], None]:
        """The check, recording a first resolution (or a renamed field) when ``record``."""
        return lambda resolved: enforce_key_fields(self.store, self.stored, resolved,
                                                   record=record)


def resolve_key_fields(cfg: Config, emarsys: EmarsysClient) -> dict[str, KeyField]:
    """Both key fields as the account has them (id and name), by role."""
    kf = cfg.emarsys.key_fields
    out = {}
    for role, ref in (("customer_id", kf.customer_id), ("subscriber_id", kf.subscriber_id)):
        fld = resolve_field(emarsys, ref)
        out[role] = KeyField(fld.id, fld.name)
    return out


def _resolve_checked(cfg: Config, emarsys: EmarsysClient, *, create_lists: bool,
                     on_key_fields: Callable[[dict[str, KeyField]], None] | None,
                     cached: bool) -> Resolved:
    """``resolve_remote``; when it fails on a cached copy of the metadata, once more on
    a fresh read (a field created or fixed since the copy was taken)."""
    try:
        return resolve_remote(cfg, emarsys, create_lists=create_lists,
                              on_key_fields=on_key_fields)
    except (RemoteConfigError, StateError) as exc:
        if not cached:
            raise
        log.debug("the cached Emarsys metadata did not pass (%s); reading it again", exc)
    emarsys.forget_all()
    return resolve_remote(cfg, emarsys, create_lists=create_lists,
                          on_key_fields=on_key_fields)


def resolve_remote(cfg: Config, emarsys: EmarsysClient, *, create_lists: bool,
                   on_key_fields: Callable[[dict[str, KeyField]], None] | None = None
                   ) -> Resolved:
    """The mapping, the list ids and the field ids. After the field list, the choice
    lists and the contact lists are read at once (each start-up request in a row costs a
    round trip, and sync-realtime starts every minute); a missing list is created only
    once the mapping (and ``on_key_fields``, the binding check) passed, so an error
    writes nothing. What the client already holds (the state file's copy) is not read."""
    field_ids = resolve_field_ids(cfg, emarsys)
    if on_key_fields is not None:
        on_key_fields(resolve_key_fields(cfg, emarsys))
    check_field_fit(cfg, emarsys)
    wanted = {field_ids[fm.field] for fm in cfg.contacts.customers.fields
              if fm.convert in ("country", "choice", "gender")}
    held = emarsys.remembered()
    unread = [fid for fid in sorted(wanted) if f"choices:{fid}" not in held]
    if unread or "lists" not in held:
        with ThreadPoolExecutor(max_workers=min(len(unread) + 1, cfg.emarsys.concurrency),
                                thread_name_prefix="startup-emarsys") as pool:
            pending: list[Future[object]] = [pool.submit(read_choices, emarsys, fid)
                                             for fid in unread]
            if "lists" not in held:
                pending.append(pool.submit(list_lists, emarsys))
            wait(pending)
            for f in pending:
                f.result()  # its error, if any
    choices = {fid: [(str(c.id), c.label) for c in read_choices(emarsys, fid)]
               for fid in sorted(wanted)}
    mapping = build_mapping(cfg, field_ids, choices)
    if mapping.country_unmatched:
        log.debug("Emarsys country labels matched to no ISO code: %s",
                  ", ".join(mapping.country_unmatched))
    keys = (mapping.customer_key_field, mapping.subscriber_key_field)
    lists = resolve_lists(cfg, emarsys, keys, list_lists(emarsys), create=create_lists)
    return mapping, lists, field_ids


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
    names = {role: (list_name(cfg, role), key)
             for role, key in zip(LIST_ROLES, key_fields, strict=True)}
    found = {role: find_list(emarsys, name, known) for role, (name, _) in names.items()}
    missing = [role for role, lst in found.items() if lst is None]
    if not create or not missing:
        return {role: lst.id if lst else None for role, lst in found.items()}
    # A first run creates both lists: at once, as the other start-up reads.
    workers = max(1, min(len(missing), cfg.emarsys.concurrency))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="startup-lists") as pool:
        made = {role: pool.submit(find_or_create_list, emarsys, *names[role], known)
                for role in missing}
        ids: dict[str, int | None] = {role: lst.id if lst else None
                                      for role, lst in found.items()}
        ids.update((role, f.result().id) for role, f in made.items())
        return ids
