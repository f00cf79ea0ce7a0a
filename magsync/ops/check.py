"""``magsync check``: validate the config and reach both APIs, changing nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from magsync.config import Config, iter_secrets
from magsync.errors import ConfigError, MagsyncError, StateError
from magsync.http import RetryPolicy, apply_retry_budget_override
from magsync.model import CheckResult
from magsync.state import StateStore

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


def check_state(cfg: Config) -> CheckResult:
    """The state file opens (or can be created) and is of a schema this magsync knows."""
    path = cfg.state.path
    if not path.exists():
        return CheckResult("state file", True, f"{path} (will be created by the first run)")
    try:
        StateStore.open(path).close()
    except StateError as exc:
        return CheckResult("state file", False, str(exc), exc.exit_code)
    return CheckResult("state file", True, str(path))


def run_checks(load: Callable[[], Config]) -> list[CheckResult]:
    """Every check, in order; remote checks only when ``load()`` gave a valid config."""
    cfg, results = check_config(load)
    if cfg is None:
        return results
    results.append(check_state(cfg))
    results += _remote("Magento", lambda: _magento_checks(cfg))
    results += _remote("Emarsys", lambda: _emarsys_checks(cfg))
    return results


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


def _emarsys_checks(cfg: Config) -> list[CheckResult]:
    from magsync.emarsys.check import check_emarsys
    from magsync.emarsys.client import EmarsysClient

    client = EmarsysClient.from_config(cfg.emarsys, secrets=iter_secrets(cfg),
                                       retry=apply_retry_budget_override(CHECK_RETRY))
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
