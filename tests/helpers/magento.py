"""A Magento client and config pointed at a sandbox Magento."""

from __future__ import annotations

from typing import Any

from magsync.config import MagentoAuth, MagentoConfig, Secret
from magsync.magento.client import MagentoClient
from magsync.pacing import RetryPolicy
from magsync.sandbox.magento.server import MagentoSandbox

NO_RETRY = RetryPolicy(budget=0.0)


def make_cfg(server: MagentoSandbox, *, method: str = "oauth1", **kw: Any) -> MagentoConfig:
    auth = server.config()["auth"]
    if method == "bearer":
        creds = MagentoAuth(method="bearer", token=Secret(auth["access_token"]))
    else:
        creds = MagentoAuth(method="oauth1", **{k: Secret(v) for k, v in auth.items()
                                                 if k != "method"})
    return MagentoConfig(base_url=server.url, auth=creds, **kw)


def make_client(server: MagentoSandbox, retry: RetryPolicy = NO_RETRY, **kw: Any
                ) -> MagentoClient:
    return MagentoClient.from_config(make_cfg(server, **kw), retry=retry,
                                     sleep=lambda s: None)
