"""Both simulators together, and a ready-to-use magsync config pointing at them.

Used by ``magsync sandbox serve``, ``magsync demo``, the test suite and the benchmarks.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from magsync.sandbox.emarsys.server import EmarsysSandbox
from magsync.sandbox.magento.server import MagentoSandbox
from magsync.sandbox.magento.shop_gen import generate_shop

DEFAULT_MAPPING: dict[str, Any] = {
    "firstname": 1,
    "lastname": 2,
    "dob": {"field": 4, "convert": "date"},
    "gender": {"field": 5, "convert": "gender"},
    "addresses.default_billing.city": 11,
    "addresses.default_billing.country_id": {"field": 14, "convert": "country"},
}


class SandboxPair:
    """A Magento and an Emarsys simulator on loopback; a context manager."""

    def __init__(self, customers: int = 200, subscribers: int = 120, *, seed: int = 0,
                 anchor: datetime | None = None, port_magento: int = 0, port_emarsys: int = 0,
                 log_bodies: bool = True, rate_limit: int = 100000,
                 **emarsys_kw: Any) -> None:
        shop = generate_shop(customers, subscribers, seed=seed, anchor=anchor)
        self.magento = MagentoSandbox(shop, port=port_magento, log_bodies=log_bodies)
        self.emarsys = EmarsysSandbox(port=port_emarsys, log_bodies=log_bodies,
                                      rate_limit=rate_limit, **emarsys_kw)

    def start(self) -> SandboxPair:
        self.magento.start()
        self.emarsys.start()
        return self

    def stop(self) -> None:
        self.magento.stop()
        self.emarsys.stop()

    def __enter__(self) -> SandboxPair:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def config(self, state_path: str | Path, *, mapping: dict[str, Any] | None = None,
               **sections: dict[str, Any]) -> dict[str, Any]:
        """A complete config (secrets inline); ``sections`` are merged over the defaults."""
        cfg: dict[str, Any] = {
            "magento": {**self.magento.config(), "page_size": 100, "concurrency": 2},
            "emarsys": {
                "api_url": self.emarsys.api_url,
                "auth": {"method": "wsse", "username": self.emarsys.username,
                         "secret": self.emarsys.secret},
                "batch_size": 1000, "requests_per_minute": 100000, "concurrency": 4,
                "key_fields": {"customer_id": "Magento Customer ID",
                               "subscriber_id": "Magento Subscriber ID"}},
            "contacts": {
                "customers": {"enabled": True, "list": "Magento customers",
                              "fields": dict(DEFAULT_MAPPING if mapping is None else mapping)},
                "subscribers": {"enabled": True, "list": "Magento subscribers"}},
            "sync": {"mode": "realtime-failsafe", "lookback": "24h", "overlap": "10m"},
            "state": {"path": str(state_path)},
        }
        for name, values in sections.items():
            cfg[name] = _merge(cfg.get(name, {}), values)
        return cfg

    def write_config(self, path: str | Path, state_path: str | Path | None = None,
                     *, replace: bool = True, **kw: Any) -> Path:
        """Write ``config()`` as YAML, created 0600 (it holds the sandbox's secrets); the
        state file defaults to ``sandbox_state_path(path)``. With ``replace=False`` an
        existing file is refused (``FileExistsError``)."""
        p = Path(path)
        state = state_path or sandbox_state_path(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        create_private(p, yaml.safe_dump(self.config(state, **kw), sort_keys=False),
                       replace=replace)
        return p


def sandbox_state_path(config_path: Path) -> Path:
    """``<config stem>.sandbox-state.db`` beside the config: a sandbox config written
    next to a production one never shares its state file."""
    return config_path.with_name(f"{config_path.stem}.sandbox-state.db")


def create_private(path: Path, text: str, *, replace: bool) -> None:
    """Create ``path`` with mode 0600 whatever the umask (``O_EXCL``: never through a
    symlink or into a file another process created meanwhile). With ``replace`` an
    existing file (or symlink) is removed first; else ``FileExistsError``."""
    # here, not at the top: the simulators themselves need nothing of magsync.state
    from magsync.state.files import open_new_private, private_writer

    if replace and (path.is_symlink() or path.is_file()):
        path.unlink()
    with private_writer(open_new_private(path)) as f:
        f.write(text)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) \
            else v
    return out
