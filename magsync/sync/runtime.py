"""What a sync run holds: both clients, the resolved mapping and the contact lists."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from magsync.config import Config, FieldRef, iter_secrets
from magsync.emarsys.client import EmarsysClient
from magsync.emarsys.contacts import find_list, find_or_create_list
from magsync.emarsys.fields import read_choices, resolve_field
from magsync.errors import ConfigError, RemoteConfigError
from magsync.http import RetryPolicy
from magsync.logs import get_logger
from magsync.magento.client import MagentoClient
from magsync.mapping import ResolvedMapping, build_mapping, customer_fields_filter

log = get_logger("sync")

REALTIME_RETRY = RetryPolicy(budget=15.0, base_delay=0.5, max_delay=5.0)
DEFAULT_RETRY = RetryPolicy()
LIST_ROLES = ("customers", "subscribers")
RETRY_BUDGET_ENV = "MAGSYNC_RETRY_BUDGET"


def apply_retry_budget_override(retry: RetryPolicy) -> RetryPolicy:
    """``retry`` with its budget replaced by ``$MAGSYNC_RETRY_BUDGET`` (seconds) if set.

    Lets tests and impatient admins shorten the ~2 minute retry budget of every command.
    """
    raw = os.environ.get(RETRY_BUDGET_ENV, "").strip()
    if not raw:
        return retry
    try:
        budget = float(raw)
    except ValueError:
        raise ConfigError(f"${RETRY_BUDGET_ENV} must be a number of seconds, not {raw!r}"
                          ) from None
    if budget < 0:
        raise ConfigError(f"${RETRY_BUDGET_ENV} must not be negative, not {raw!r}")
    return replace(retry, budget=budget)


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

    @cached_property
    def customer_fields(self) -> str:
        """The response filter of the customer searches: what the mapping reads."""
        return customer_fields_filter(f.path for f in self.cfg.contacts.customers.fields)

    @classmethod
    def open(cls, cfg: Config, *, dry_run: bool = False, retry: RetryPolicy = DEFAULT_RETRY,
             verbose: int = 0, sleep: Callable[[float], None] | None = None,
             alongside: Callable[[MagentoClient], object] | None = None) -> Runtime:
        """Connect both clients, resolve every mapped field and find (or create) the lists.

        A missing mapped field stops here, before any write to Emarsys (exit 2).
        ``alongside`` (e.g. the subscriber scan) runs on the Magento client meanwhile, so
        the start-up reads of both sides overlap instead of adding up.
        """
        secrets = iter_secrets(cfg)
        retry = apply_retry_budget_override(retry)
        kwargs: dict[str, Any] = {"retry": retry, "secrets": secrets}
        if sleep is not None:
            kwargs["sleep"] = sleep
        magento = MagentoClient.from_config(cfg.magento, **kwargs)
        emarsys = EmarsysClient.from_config(cfg.emarsys, **kwargs)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="startup") as pool:
            side = pool.submit(alongside, magento) if alongside is not None else None
            try:
                mapping = resolve_mapping(cfg, emarsys)
                list_ids = resolve_lists(cfg, emarsys, mapping, create=not dry_run)
                if side is not None:
                    side.result()
            except BaseException:
                if side is not None:
                    side.cancel()
                    wait([side])
                magento.close()
                emarsys.close()
                raise
        return cls(cfg, magento, emarsys, mapping, list_ids, dry_run, verbose)

    def close(self) -> None:
        self.magento.close()
        self.emarsys.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_mapping(cfg: Config, emarsys: EmarsysClient) -> ResolvedMapping:
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
    choices: dict[int, list[tuple[str, str]]] = {}
    for fm in cfg.contacts.customers.fields:
        if fm.convert in ("country", "choice", "gender"):
            fid = field_ids[fm.field]
            choices[fid] = [(str(c.id), c.label) for c in read_choices(emarsys, fid)]
    mapping = build_mapping(cfg, field_ids, choices)
    if mapping.country_unmatched:
        log.debug("Emarsys country labels matched to no ISO code: %s",
                  ", ".join(mapping.country_unmatched))
    return mapping


def resolve_lists(cfg: Config, emarsys: EmarsysClient, mapping: ResolvedMapping, *,
                  create: bool) -> dict[str, int | None]:
    """The ids of both contact lists (None under --dry-run when a list does not exist)."""
    names = {"customers": (cfg.contacts.customers.list, mapping.customer_key_field),
             "subscribers": (cfg.contacts.subscribers.list, mapping.subscriber_key_field)}
    out: dict[str, int | None] = {}
    for role, (name, key_field) in names.items():
        if create:
            out[role] = find_or_create_list(emarsys, name, key_field).id
        else:
            found = find_list(emarsys, name)
            out[role] = found.id if found else None
    return out
