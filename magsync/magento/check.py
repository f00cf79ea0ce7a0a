"""``magsync check``'s Magento part: reachable, credentials, permissions, module."""

from __future__ import annotations

from magsync.config import MagentoConfig
from magsync.errors import AuthError, MagsyncError, RetriableError
from magsync.magento.client import NOT_AUTHORIZED, MagentoClient
from magsync.magento.search import SearchCriteria
from magsync.magento.subscribers import SUBSCRIPTIONS_PATH
from magsync.model import CheckResult
from magsync.network import host_of
from magsync.pacing import RetryPolicy

CHECK_BUDGET = 15.0  # seconds of retries per check request: check answers quickly


def check_magento(cfg: MagentoConfig, client: MagentoClient) -> list[CheckResult]:
    """Each Magento check in order; stops after the first that makes the rest moot."""
    budget = min(client.http.retry.budget, CHECK_BUDGET)
    client = client.with_retry(RetryPolicy(budget=budget))
    where = cfg.rest_url
    try:
        reply = client.search("customers/search", SearchCriteria().page(1))
    except AuthError as exc:
        results = [CheckResult("Magento reachable", True, where)]
        if cfg.auth.method == "oauth1" and NOT_AUTHORIZED in exc.message.lower():
            results += [CheckResult("Magento credentials", True,
                                    "OAuth 1.0a signature accepted"),
                        CheckResult("Magento permission: read customers", False, str(exc),
                                    exc.exit_code)]
        else:
            results.append(CheckResult("Magento credentials", False, str(exc),
                                       exc.exit_code))
        return results
    except RetriableError as exc:
        return [CheckResult("Magento reachable", False, str(exc), exc.exit_code)]
    except MagsyncError as exc:
        # errors that name the host already need no URL in front (one short line)
        detail = str(exc) if host_of(where) in str(exc) else f"{where}: {exc}"
        return [CheckResult("Magento reachable", False, detail, exc.exit_code)]
    total = reply.get("total_count")
    results = [CheckResult("Magento reachable", True, where),
               CheckResult("Magento credentials", True, f"auth.method {cfg.auth.method}"),
               CheckResult("Magento permission: read customers", True,
                           f"{total} customers" if total is not None else "search works")]
    if cfg.subscribers == "emarsys-module":
        results.append(check_subscriber_endpoint(cfg, client))
    return results


def check_subscriber_endpoint(cfg: MagentoConfig, client: MagentoClient) -> CheckResult:
    """The Emarsys module's subscription list answers (one row, first website)."""
    name = "Magento subscribers (Emarsys module)"
    params: dict[str, int] = {"page": 1, "page_size": 1}
    if cfg.website_ids:
        params["website_id"] = cfg.website_ids[0]
    try:
        reply = client.call("GET", SUBSCRIPTIONS_PATH, params=params)
    except MagsyncError as exc:
        return CheckResult(name, False, str(exc), exc.exit_code)
    if not isinstance(reply, dict) or "subscriptions" not in reply:
        return CheckResult(name, False, "GET /V1/emarsys/subscriptions answered an "
                                        "unexpected body; is the Emarsys module current?")
    scope = f" on website {cfg.website_ids[0]}" if cfg.website_ids else ""
    return CheckResult(name, True, f"{reply.get('total_count', '?')} subscribers{scope}")
