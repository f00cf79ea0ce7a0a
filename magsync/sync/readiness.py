"""Whether the syncs may run yet: which kinds of contact an ``export-initial`` completed.

Until an export of a kind (customers, guest subscribers) has completed, ``sync-realtime``,
``sync-background`` and ``pull-optin`` do no work on that kind: a first sync would
otherwise send only the last ``sync.lookback`` of changes and never the rest (SPEC 1).
When no enabled kind is exported they refuse to start (exit 2); when one of two is, they
do the other kind's work and then stop with exit 2, naming the missing export.

The completed kinds are ``meta`` rows ``export_done:<kind>`` holding the export's start
time. A state file from before this rule whose export completed counts as complete for
both kinds (schema migration 3 writes both rows for it).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from magsync.config import Config
from magsync.errors import EXIT_CONFIG, UsageError
from magsync.state import StateStore
from magsync.sync.run import RunReport
from magsync.util.timeutil import from_iso, to_iso

CUSTOMERS, SUBSCRIBERS = "customers", "subscribers"
KINDS = (CUSTOMERS, SUBSCRIBERS)
_META = "export_done:{}"
_FLAG = {CUSTOMERS: "--customers", SUBSCRIBERS: "--subscribers"}


def enabled_kinds(cfg: Config) -> tuple[str, ...]:
    """The kinds the config sends: customers, and guest subscribers where Magento has a
    subscriber source."""
    kinds = []
    if cfg.contacts.customers.enabled:
        kinds.append(CUSTOMERS)
    if cfg.contacts.subscribers.enabled and cfg.magento.subscribers != "none":
        kinds.append(SUBSCRIBERS)
    return tuple(kinds)


def exported_at(store: StateStore) -> dict[str, datetime]:
    """When the completed export of each kind started (kinds never exported are absent)."""
    out = {}
    for kind in KINDS:
        value = store.get_meta(_META.format(kind))
        if value:
            out[kind] = from_iso(value)
    return out


def mark_exported(store: StateStore, kinds: Iterable[str], started: datetime) -> None:
    """Record that an export of ``kinds`` that started at ``started`` has completed."""
    with store.atomic():
        for kind in kinds:
            store.set_meta(_META.format(kind), to_iso(started))


def missing_kinds(cfg: Config, store: StateStore) -> tuple[str, ...]:
    """The enabled kinds no export has completed yet."""
    done = exported_at(store)
    return tuple(k for k in enabled_kinds(cfg) if k not in done)


def allowed_kinds(cfg: Config, store: StateStore, command: str) -> frozenset[str]:
    """The kinds ``command`` may work on (every kind but the enabled ones not exported
    yet); ``UsageError`` (exit 2, nothing sent) when no enabled kind is exported."""
    missing = missing_kinds(cfg, store)
    ready = [k for k in enabled_kinds(cfg) if k not in missing]
    if missing and not ready:
        raise UsageError(f"{command}: {_what(missing)} not been exported to Emarsys yet, "
                         "so this run would skip every contact that did not change lately",
                         hint=f"run `{export_command(missing, cfg)}` first (it is "
                              "resumable); the syncs refuse to run until it has completed")
    return frozenset(k for k in KINDS if k not in missing)


def stop_if_missing(report: RunReport, cfg: Config, allowed: frozenset[str]) -> None:
    """A run that did the work of the ``allowed`` kinds only: exit 2 (a safety stop after
    what was sent), its first note naming the export still needed."""
    missing = [k for k in enabled_kinds(cfg) if k not in allowed]
    if missing:
        report.notes.insert(0, missing_note(cfg, missing))
        report.exit_code = EXIT_CONFIG


def missing_note(cfg: Config, missing: Iterable[str]) -> str:
    """The summary line of a run that skipped the kinds in ``missing``."""
    kinds = tuple(missing)
    return (f"{_what(kinds)} not been exported yet: nothing was done for them; run "
            f"`{export_command(kinds, cfg)}` first")


def export_command(missing: Iterable[str], cfg: Config) -> str:
    """The ``export-initial`` command line that exports exactly the ``missing`` kinds."""
    kinds = tuple(missing)
    if set(kinds) >= set(enabled_kinds(cfg)):
        return "magsync export-initial"
    return "magsync export-initial " + " ".join(_FLAG[k] for k in kinds)


def _what(kinds: tuple[str, ...]) -> str:
    names = {CUSTOMERS: "customers", SUBSCRIBERS: "guest subscribers"}
    return " and ".join(names[k] for k in kinds) + " have"
