"""Monitoring around one writing run: the pings and the Prometheus textfile.

The CLI wraps every writing run in a ``RunMonitor`` (``cli/runner.py``): ``started`` once
the run holds the lock, ``observe`` while the state file is open, ``finish`` with the exit
code. A run that exits 75 (another run holds the lock) sends nothing and writes nothing;
neither does a dry run, which writes nothing anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from magsync.config import Config
from magsync.errors import EXIT_LOCKED
from magsync.ops.metrics import (
    RunOutcome,
    StateSnapshot,
    build_registry,
    config_name,
    snapshot,
    write_metrics,
)
from magsync.ops.pings import Pinger
from magsync.state import StateStore
from magsync.util.logs import get_logger
from magsync.util.timeutil import utcnow

log = get_logger("monitoring")


class RunMonitor:
    """Pings and metrics of one run of ``command`` (inert when ``enabled`` is False or
    nothing is configured)."""

    def __init__(self, cfg: Config, command: str, *, enabled: bool = True) -> None:
        mon = cfg.monitoring
        self.command = command
        self.textfile = mon.textfile if enabled else None
        self.pinger = Pinger(command, mon.ping_url(command) if enabled else None)
        self.config_name = config_name(cfg.source)
        self.started_at: datetime = utcnow()
        self.counts: Mapping[str, int] = {}
        self.snap: StateSnapshot | None = None

    def started(self) -> None:
        """The run holds the lock: ping ``/start``."""
        self.started_at = utcnow()
        self.pinger.start()

    def observe(self, store: StateStore) -> None:
        """Read what the metrics need while the state file is open."""
        if self.textfile is None:
            return
        try:
            self.snap = snapshot(store)
        except Exception as exc:  # a broken state file is the run's own error to report
            log.debug("no state figures for the metrics: %r", exc)

    def finish(self, exit_code: int) -> None:
        """Write the metrics and send the end ping (nothing for exit 75)."""
        if exit_code == EXIT_LOCKED:
            return
        if self.textfile is not None:
            self._write(exit_code)
        self.pinger.finish(exit_code)

    def _write(self, exit_code: int) -> None:
        assert self.textfile is not None
        recorded = self.snap.runs.get(self.command) if self.snap else None
        outcome = None
        if recorded is None or recorded.started_at < self.started_at:
            # not in the history (it failed before it was recorded): as the CLI saw it
            outcome = RunOutcome(self.command, self.started_at, utcnow(), exit_code,
                                 dict(self.counts))
        try:
            write_metrics(self.textfile, build_registry(self.config_name, self.snap, outcome))
        except OSError as exc:
            log.warning("could not write the metrics file %s: %s", self.textfile,
                        exc.strerror or exc)
