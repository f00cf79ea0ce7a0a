"""``magsync check``: validate the config and reach both APIs, changing nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from magsync.config import Config, iter_secrets
from magsync.errors import ConfigError, MagsyncError, StateError
from magsync.model import CheckResult
from magsync.pacing import RetryPolicy, apply_retry_budget_override
from magsync.state import StateStore
from magsync.state.binding import (
    Binding,
    binding_differences,
    mismatch_error,
    read_binding,
)
from magsync.state.files import exposure_warnings, unwritable_reason
from magsync.state.integrity import DAMAGED_FIX
from magsync.state.store import read_state

if TYPE_CHECKING:
    from magsync.emarsys.client import EmarsysClient

CHECK_RETRY = RetryPolicy(budget=15.0, base_delay=0.5, max_delay=5.0)
EMARSYS_RATE_LIMIT = 1000  # requests a minute per API user (API-NOTES, "Rate limits")


def check_config(load: Callable[[], Config]) -> tuple[Config | None, list[CheckResult]]:
    """The configuration part: every problem as its own failed check."""
    try:
        cfg = load()
    except ConfigError as exc:
        if not exc.problems:
            return None, [CheckResult("configuration", False, str(exc), exc.exit_code)]
        return None, [CheckResult("configuration", False, p) for p in exc.problems]
    results = [CheckResult("configuration", True, f"{cfg.source} is valid")]
    results += [CheckResult("configuration", True, w, warning=True) for w in cfg.warnings]
    if cfg.emarsys.requests_per_minute > EMARSYS_RATE_LIMIT:
        results.append(CheckResult(
            "configuration", True,
            f"emarsys.requests_per_minute {cfg.emarsys.requests_per_minute} is above "
            f"the ~{EMARSYS_RATE_LIMIT} a minute Emarsys allows an API user: expect 429s "
            "(magsync waits them out, but runs take longer)", warning=True))
    return cfg, results


def check_state(cfg: Config) -> list[CheckResult]:
    """The state file can be created or opened, is magsync's and intact (``quick_check``),
    is private, and is bound to the accounts of ``cfg``. Read-only: nothing is created,
    migrated or locked."""
    path = cfg.state.path
    results = []
    blocked = unwritable_reason(path)
    if blocked:
        results.append(CheckResult("state directory", False, blocked))
    if not path.exists():
        if not blocked:
            results.append(CheckResult("state file", True,
                                       f"{path} (will be created by the first run)"))
        return results
    try:
        found = read_state(path, _inspect)
    except StateError as exc:
        return [*results, CheckResult("state file", False, str(exc), exc.exit_code)]
    if found is None:  # removed meanwhile
        return [*results, CheckResult("state file", True, f"{path} (will be created)")]
    note, damage, stored = found
    if damage:
        results.append(CheckResult("state file", False, f"state file {path} is damaged: "
                                   f"{'; '.join(damage)} ({DAMAGED_FIX})"))
    elif note:
        results.append(CheckResult("state file", True, f"{path} needs a migration: {note}",
                                   warning=True))
    else:
        results.append(CheckResult("state file", True, f"{path} is intact"))
    results += [CheckResult("state file private", True, w, warning=True)
                for w in exposure_warnings(path)]
    results.append(_check_binding(cfg, stored))
    return results


def _inspect(store: StateStore) -> tuple[str | None, list[str], Binding | None]:
    """Migration note, quick_check findings and binding of an open state file."""
    note = store.info.migration_note() if store.info else None
    return note, store.quick_check(), read_binding(store)


def _check_binding(cfg: Config, stored: Binding | None) -> CheckResult:
    name = "state file accounts"
    if stored is None:
        return CheckResult(name, True, "not bound yet: the next writing run binds it to "
                                       "this config's accounts")
    diffs = binding_differences(stored, cfg)
    if diffs:
        return CheckResult(name, False, str(mismatch_error(cfg.state.path, diffs)))
    return CheckResult(name, True, "bound to this config's accounts: "
                                   + "; ".join(stored.describe()))


def run_checks(load: Callable[[], Config]) -> list[CheckResult]:
    """Every check, in order; remote checks only when ``load()`` gave a valid config."""
    cfg, results = check_config(load)
    if cfg is None:
        return results
    results += check_state(cfg)
    return results + remote_checks(cfg)


def remote_checks(cfg: Config, emarsys: EmarsysClient | None = None) -> list[CheckResult]:
    """Both APIs (and the database) with ``cfg``'s credentials: fields, key fields, lists.
    Emarsys on ``emarsys`` when given (``rebind`` goes on using it), else on a client
    of their own."""
    results = _remote("Magento", lambda: _magento_checks(cfg))
    if cfg.magento.subscribers == "database":
        results += _remote("Magento database", lambda: _database_checks(cfg))
    return results + _remote("Emarsys", lambda: _emarsys_checks(cfg, emarsys))


def _remote(service: str, run: Callable[[], list[CheckResult]]) -> list[CheckResult]:
    try:
        return run()
    except MagsyncError as exc:
        return [CheckResult(f"{service} reachable", False, str(exc), exc.exit_code)]


def _magento_checks(cfg: Config) -> list[CheckResult]:
    from magsync.magento.check import check_magento
    from magsync.magento.client import MagentoClient

    with MagentoClient.from_config(cfg.magento, retry=apply_retry_budget_override(CHECK_RETRY),
                                   secrets=iter_secrets(cfg)) as client:
        return check_magento(cfg.magento, client)


def _database_checks(cfg: Config) -> list[CheckResult]:
    """``subscribers: database``: the driver, the connection, both tables, the grants."""
    from magsync.magento.subscriber_db import check_database
    from magsync.magento.subscriber_source import open_database

    try:
        db = open_database(cfg.magento, retry=apply_retry_budget_override(CHECK_RETRY))
    except ConfigError as exc:  # PyMySQL is not installed
        return [CheckResult("Magento database driver", False, str(exc), exc.exit_code)]
    with db:
        return check_database(db)


def check_client(cfg: Config) -> EmarsysClient:
    """The Emarsys client the checks use (the check retry budget)."""
    from magsync.emarsys.client import EmarsysClient

    return EmarsysClient.from_config(cfg.emarsys, secrets=iter_secrets(cfg),
                                     retry=apply_retry_budget_override(CHECK_RETRY))


def _emarsys_checks(cfg: Config, client: EmarsysClient | None) -> list[CheckResult]:
    from magsync.emarsys.check import check_emarsys

    if client is not None:
        return check_emarsys(cfg, client)
    client = check_client(cfg)
    try:
        return check_emarsys(cfg, client)
    finally:
        client.close()


def results_as_dict(results: list[CheckResult], exit_code: int) -> dict[str, Any]:
    """``check --json``: every check with its status (ok, warn, fail)."""
    return {"ok": all(r.ok for r in results), "exit_code": exit_code,
            "checks": [{"name": r.name, "status": r.mark.lower(), "detail": r.detail,
                        **({"exit_code": r.exit_code} if not r.ok else {})}
                       for r in results]}
