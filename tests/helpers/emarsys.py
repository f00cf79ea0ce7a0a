"""An Emarsys client and config pointed at a sandbox Emarsys."""

from __future__ import annotations

from typing import Any

from magsync.config import Config, iter_secrets, parse_config
from magsync.emarsys.client import EmarsysClient
from magsync.pacing import RetryPolicy
from magsync.sandbox.emarsys.server import EmarsysSandbox

SECRET = "wsse-sekrit-value"
CLIENT_SECRET = "oauth-client-sekrit"
FAST = RetryPolicy(budget=5, base_delay=0.01, max_delay=0.05)


def make_config(sandbox: EmarsysSandbox, *, method: str = "wsse",
                fields: dict[str, Any] | None = None, secret: str | None = None,
                key_fields: dict[str, Any] | None = None) -> Config:
    """A validated config pointing at the sandbox."""
    if method == "oauth2":
        auth = {"method": "oauth2", "client_id": sandbox.client_id,
                "client_secret": secret or sandbox.client_secret,
                "token_url": sandbox.token_url}
    else:
        auth = {"method": "wsse", "username": sandbox.username,
                "secret": secret or sandbox.secret}
    emarsys: dict[str, Any] = {"api_url": sandbox.api_url, "auth": auth,
                               "requests_per_minute": 100000}
    if key_fields:
        emarsys["key_fields"] = key_fields
    raw = {"magento": {"base_url": "http://127.0.0.1:1",
                       "auth": {"method": "bearer", "token": "magento-token-xyz"}},
           "emarsys": emarsys,
           "contacts": {"customers": {"fields": fields or {}}}}
    return parse_config(raw, env={})


def make_client(cfg: Config, retry: RetryPolicy = FAST) -> EmarsysClient:
    return EmarsysClient.from_config(cfg.emarsys, secrets=iter_secrets(cfg), retry=retry)
