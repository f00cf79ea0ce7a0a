"""What every command needs: global options, the config, the state file and the lock."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from magsync.config import Config, load_config, load_state_path
from magsync.errors import ConfigError, StateError
from magsync.state import StateStore
from magsync.state.binding import enforce_accounts
from magsync.state.integrity import DAMAGED_FIX
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
                raise self._not_found(path)
            cfg = load_config(path)
            from magsync.config import iter_secrets

            add_secrets(iter_secrets(cfg))
            remember_warnings_in(cfg.state.path)
            for warning in cfg.warnings:
                log.warning(warning)
            self._config = cfg
        return self._config

    def _not_found(self, path: Path) -> ConfigError:
        how = ("--config" if self.config_path else
               "$MAGSYNC_CONFIG" if os.environ.get("MAGSYNC_CONFIG") else
               "the default ./magsync.yaml")
        return ConfigError(f"config file {path} not found (from {how})",
                           hint="pass --config PATH or set $MAGSYNC_CONFIG; "
                                "`magsync init` writes a commented config with every key")

    def state_path(self) -> Path:
        """``state.path`` (``$MAGSYNC_STATE`` wins) for the commands that only read the
        state file: they need neither the secrets nor a valid rest of the config (a
        monitoring user), and without a config file ``$MAGSYNC_STATE`` is enough. A config
        that loads whole is still loaded, so that its secrets are redacted as always."""
        if self._config is not None:
            return self._config.state.path
        path = find_config_path(self.config_path)
        if not path.exists():
            env_state = os.environ.get("MAGSYNC_STATE")
            if env_state and not self.config_path:
                return Path(env_state).expanduser()
            raise self._not_found(path)
        try:
            return self.config().state.path
        except ConfigError:
            return load_state_path(path)  # e.g. the secrets' variables are not set here

    @contextmanager
    def writing(self, command: str, *, dry_run: bool = False, enforce_binding: bool = True
                ) -> Iterator[StateStore]:
        """The lock and the state file, for a command that writes; stops (exit 2) before
        any request when the config names other accounts than the state file records,
        and binds an unbound state file (not under ``--dry-run``). Only ``rebind`` does
        without (``enforce_binding=False``)."""
        cfg = self.config()
        with StateLock(cfg.state.path, wait=self.lock_wait, command=command):
            store = StateStore.open(cfg.state.path)
            try:
                for warning in store.warnings:
                    log.warning(warning)  # shown under -q too (once a day)
                if enforce_binding:
                    enforce_accounts(store, cfg, record=not dry_run)
                yield store
            except sqlite3.DatabaseError as exc:
                if type(exc) is not sqlite3.DatabaseError:  # locked, I/O, constraint...
                    raise
                raise StateError(f"state file {store.path} is damaged: {exc}",
                                 hint=DAMAGED_FIX) from None
            finally:
                store.close()
