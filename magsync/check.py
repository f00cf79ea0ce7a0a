"""``magsync check``: validate the config and reach both APIs, changing nothing."""

from __future__ import annotations

from magsync.app import App
from magsync.checkresult import CheckResult
from magsync.config import Config
from magsync.errors import ConfigError, StateError
from magsync.state import StateStore


def check_config(app: App) -> tuple[Config | None, list[CheckResult]]:
    """The configuration part: every problem as its own failed check."""
    try:
        cfg = app.config()
    except ConfigError as exc:
        if not exc.problems:
            return None, [CheckResult("configuration", False, str(exc))]
        return None, [CheckResult("configuration", False, p) for p in exc.problems]
    results = [CheckResult("configuration", True, f"{cfg.source} is valid")]
    results += [CheckResult("configuration", True, f"warning: {w}") for w in cfg.warnings]
    return cfg, results


def check_state(cfg: Config) -> CheckResult:
    """The state file opens (or can be created) and is of a schema this magsync knows."""
    path = cfg.state.path
    if not path.exists():
        return CheckResult("state file", True, f"{path} (will be created by the first run)")
    try:
        StateStore.open(path).close()
    except StateError as exc:
        return CheckResult("state file", False, str(exc))
    return CheckResult("state file", True, str(path))


def run_checks(app: App) -> list[CheckResult]:
    """Every check, in order; remote checks only when the config is valid."""
    cfg, results = check_config(app)
    if cfg is None:
        return results
    results.append(check_state(cfg))
    return results
