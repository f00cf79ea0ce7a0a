"""What every command needs: global options, the config, the state file and the lock."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from magsync.config import Config, load_config
from magsync.errors import ConfigError
from magsync.state import StateStore
from magsync.state.lock import StateLock
from magsync.util.logs import add_secrets, get_logger, remember_warnings_in

log = get_logger("app")


def find_config_path(explicit: str | None) -> Path:
    """``--config`` > ``$MAGSYNC_CONFIG`` > ``./magsync.yaml``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("MAGSYNC_CONFIG")
    if env:
        return Path(env)
    return Path("magsync.yaml")


@dataclass
class App:
    """Global options and lazily loaded resources of one magsync invocation."""

    config_path: str | None = None
    verbose: int = 0
    quiet: bool = False
    log_json: bool = False
    debug: bool = False
    lock_wait: float = 0.0
    # The CLI itself, for commands that run other commands (demo): a parameter, not an
    # import, so that no command module imports the package that registers it.
    run_cli: Callable[[list[str]], int] | None = field(default=None, repr=False)
    _config: Config | None = field(default=None, repr=False)

    @property
    def is_tty(self) -> bool:
        return sys.stdout.isatty()

    def config(self) -> Config:
        """Load and validate the config once (exit 2 on any problem)."""
        if self._config is None:
            path = find_config_path(self.config_path)
            if not path.exists():
                how = ("--config" if self.config_path else
                       "$MAGSYNC_CONFIG" if os.environ.get("MAGSYNC_CONFIG") else
                       "the default ./magsync.yaml")
                raise ConfigError(f"config file {path} not found (from {how})",
                                  hint="pass --config PATH or set $MAGSYNC_CONFIG; "
                                       "`magsync init` writes a commented config with "
                                       "every key")
            cfg = load_config(path)
            from magsync.config import iter_secrets

            add_secrets(iter_secrets(cfg))
            remember_warnings_in(cfg.state.path)
            for warning in cfg.warnings:
                log.warning(warning)
            self._config = cfg
        return self._config

    def state_path(self) -> Path:
        return self.config().state.path

    @contextmanager
    def writing(self, command: str) -> Iterator[StateStore]:
        """The lock and the state file, for a command that writes."""
        cfg = self.config()
        with StateLock(cfg.state.path, wait=self.lock_wait, command=command):
            store = StateStore.open(cfg.state.path)
            try:
                yield store
            finally:
                store.close()

    def reading(self) -> StateStore | None:
        """The state file without the lock (``status``, ``check``), or None if absent."""
        return StateStore.open_existing(self.config().state.path)
