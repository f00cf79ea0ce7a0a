"""``magsync sandbox serve``: both simulators in the foreground, and a config for them.

It starts a ``SandboxPair`` (a seeded Magento shop with the Emarsys module's endpoints, an
Emarsys account with the two key fields already created), prints the URLs, the
credentials and a ready-to-use YAML config (secrets inline, ``oauth1`` for Magento,
``wsse`` for Emarsys), optionally writes that config (created 0600, never over an
existing file without ``--force``) with its own state file beside it
(``<stem>.sandbox-state.db``), then prints one line starting with ``sandbox ready:`` and
flushes stdout, so a parent process can wait for it. SIGINT (Ctrl-C) and SIGTERM stop
both servers and the command exits 0.

Environment knobs (for benchmarks and experiments):

- ``MAGSYNC_SANDBOX_LATENCY_MS``: latency added to every API request on both servers
  (default 0). ``POST /_sandbox/faults {"latency_ms": N}`` changes it at run time.
- ``MAGSYNC_SANDBOX_LOG_BODIES``: ``0`` keeps request bodies out of the request log,
  which keeps memory low on big runs (default ``1``). ``GET /_sandbox/stats`` counts
  requests either way.
- ``MAGSYNC_SANDBOX_RATE_LIMIT``: requests per minute the Emarsys sandbox allows before
  it answers 429 (default 100000, so it never caps magsync unless asked to).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import click
import yaml

from magsync.errors import ConfigError, UsageError
from magsync.sandbox.pair import SandboxPair, sandbox_state_path

READY_PREFIX = "sandbox ready:"
ENV_LATENCY = "MAGSYNC_SANDBOX_LATENCY_MS"
ENV_LOG_BODIES = "MAGSYNC_SANDBOX_LOG_BODIES"
ENV_RATE_LIMIT = "MAGSYNC_SANDBOX_RATE_LIMIT"
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Knobs:
    """The environment knobs of ``sandbox serve``."""

    latency_ms: float = 0.0
    log_bodies: bool = True
    rate_limit: int = 100000


def read_knobs(environ: Mapping[str, str] | None = None) -> Knobs:
    """Read the ``MAGSYNC_SANDBOX_*`` knobs; a malformed value is a ConfigError naming it."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    latency = _parse_number(env, ENV_LATENCY, 0.0, problems)
    rate = _parse_number(env, ENV_RATE_LIMIT, 100000.0, problems)
    if rate < 1:
        problems.append(f"{ENV_RATE_LIMIT}: must be at least 1")
    if problems:
        raise ConfigError("invalid sandbox environment", problems)
    log_bodies = env.get(ENV_LOG_BODIES, "1").strip().lower() not in _FALSE
    return Knobs(latency_ms=latency, log_bodies=log_bodies, rate_limit=int(rate))


def _parse_number(env: Mapping[str, str], name: str, default: float,
                  problems: list[str]) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        problems.append(f"{name}: not a number: {raw!r}")
        return default
    if value < 0:
        problems.append(f"{name}: must not be negative")
        return default
    return value


def start_pair(*, customers: int, subscribers: int, port_magento: int = 0,
               port_emarsys: int = 0, seed: int = 0, knobs: Knobs = Knobs()) -> SandboxPair:
    """Build and start both simulators; a port already in use is a UsageError."""
    try:
        pair = SandboxPair(customers, subscribers, seed=seed, port_magento=port_magento,
                           port_emarsys=port_emarsys, log_bodies=knobs.log_bodies,
                           rate_limit=knobs.rate_limit)
    except OSError as exc:
        raise UsageError(f"cannot start the sandbox: {exc.strerror or exc}",
                         hint="pick free ports with --port-magento/--port-emarsys, "
                              "or leave them out to get free ones") from exc
    if knobs.latency_ms:
        pair.magento.faults.set_latency(knobs.latency_ms)
        pair.emarsys.faults.set_latency(knobs.latency_ms)
    return pair.start()


# What a user should start from: Emarsys's own rate (the test suite's configs run faster).
USER_SETTINGS: dict[str, Any] = {"emarsys": {"requests_per_minute": 1000}}


def render_config(pair: SandboxPair, state_path: Path) -> str:
    """The ready-to-use config for ``pair`` as YAML text."""
    return yaml.safe_dump(pair.config(state_path, **USER_SETTINGS), sort_keys=False)


def describe(pair: SandboxPair, config_text: str, written: Path | None) -> list[str]:
    """The lines printed before the ready line: URLs, credentials, the config."""
    m, e = pair.magento, pair.emarsys
    lines = [
        f"Magento sandbox: {m.url}  (REST root {m.url}/rest/all/V1)",
        f"  OAuth 1.0a: consumer key {m.consumer_key}, consumer secret "
        f"{m.consumer_secret}, access token {m.access_token}, token secret "
        f"{m.access_token_secret}",
        f"  shop: {len(m.shop.customers)} customers, {len(m.shop.subscribers)} subscribers",
        f"Emarsys sandbox: {e.api_url}",
        f"  WSSE: username {e.username}, secret {e.secret}",
        "  key fields 'Magento Customer ID' and 'Magento Subscriber ID' exist already",
        "",
        "# ready-to-use magsync config" + (f" (written to {written})" if written else ""),
        config_text.rstrip("\n"),
        "",
    ]
    if written:
        lines.append(f"Try: magsync --config {written} check")
    return lines


def ready_line(pair: SandboxPair) -> str:
    """The line a parent process waits for."""
    return f"{READY_PREFIX} Magento {pair.magento.url}, Emarsys {pair.emarsys.api_url}"


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Make SIGINT and SIGTERM set ``stop`` instead of raising, then restore the handlers.

    Outside the main thread signals cannot be caught; then only ``stop`` ends the wait.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def serve(*, customers: int, subscribers: int, port_magento: int = 0, port_emarsys: int = 0,
          write_config: str | None = None, force: bool = False, seed: int = 0,
          quiet: bool = False, stop: threading.Event | None = None) -> None:
    """Run both simulators until SIGINT/SIGTERM (or ``stop`` is set), then shut them down.

    ``write_config``: also write the config there (0600, refusing an existing file
    unless ``force``), with its state file named after it (``*.sandbox-state.db``).
    """
    knobs = read_knobs()
    stop = stop or threading.Event()
    written = Path(write_config).expanduser().absolute() if write_config else None
    if written is not None and not force and (written.exists() or written.is_symlink()):
        raise _exists(written)
    temp_dir = None if written else Path(tempfile.mkdtemp(prefix="magsync-sandbox-"))
    state_path = (sandbox_state_path(written) if written
                  else (temp_dir or Path(".")) / "state.db")
    with stop_on_signals(stop):
        pair = start_pair(customers=customers, subscribers=subscribers,
                          port_magento=port_magento, port_emarsys=port_emarsys, seed=seed,
                          knobs=knobs)
        try:
            if written:
                _write(pair, written, state_path, force)
            if not stop.is_set():  # a signal while the shop was generated: just stop
                _announce(pair, render_config(pair, state_path), written, quiet)
            while not stop.wait(0.2):
                pass
        finally:
            pair.stop()
            if temp_dir is not None:
                shutil.rmtree(temp_dir, ignore_errors=True)
    if not quiet:
        click.echo("sandbox stopped")
    sys.stdout.flush()


def _write(pair: SandboxPair, path: Path, state_path: Path, force: bool) -> None:
    try:
        pair.write_config(path, state_path, replace=force, **USER_SETTINGS)
    except FileExistsError:
        raise _exists(path) from None
    except OSError as exc:
        raise UsageError(f"cannot write the sandbox config {path}: {exc.strerror or exc}"
                         ) from None


def _exists(path: Path) -> UsageError:
    return UsageError(f"{path} already exists; sandbox serve does not overwrite a config",
                      hint="pass --force to replace it, or choose another --write-config "
                           "path")


def _announce(pair: SandboxPair, config_text: str, written: Path | None, quiet: bool
              ) -> None:
    # click.echo, not out.line: the sandbox's own credentials are meant to be shown, and
    # the redaction filter may know them from an earlier in-process run. The ready line
    # is printed even under -q because a parent process waits for it.
    if not quiet:
        for text in describe(pair, config_text, written):
            click.echo(text)
    click.echo(ready_line(pair))
    if not quiet:
        click.echo("Press Ctrl-C to stop.")
    sys.stdout.flush()

