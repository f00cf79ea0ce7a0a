"""Prometheus metrics for node_exporter's textfile collector (SPEC section 9).

After every writing run the whole file is written again from the state file (every
command's last run, not only the one that just ended) and the run itself, atomically
(``prometheus_client.write_to_textfile`` writes a temporary file and renames it over the
target). Every series carries ``config="<config file stem>"``, so two configs on one
host, each with its own file, never write the same series.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from magsync.state import StateStore
from magsync.util.timeutil import utcnow

if TYPE_CHECKING:  # imported where metrics are written: most runs write none
    from prometheus_client import CollectorRegistry, Gauge

PREFIX = "magsync"
DRY_RUN_SUFFIX = " (dry run)"
# Every metric magsync writes (the examples' alert rules and dashboard use only these).
METRIC_NAMES = (
    "magsync_last_run_start_timestamp_seconds",
    "magsync_last_run_end_timestamp_seconds",
    "magsync_last_run_duration_seconds",
    "magsync_last_run_exit_code",
    "magsync_last_run_contacts",
    "magsync_last_success_timestamp_seconds",
    "magsync_queue_contacts",
    "magsync_queue_oldest_age_seconds",
    "magsync_watermark_timestamp_seconds",
)


@dataclass(frozen=True)
class RunOutcome:
    """The run that just ended, as the CLI saw it (it may not be in the history: a run
    that failed before it was recorded)."""

    command: str
    started_at: datetime
    ended_at: datetime
    exit_code: int
    counts: Mapping[str, int] = field(default_factory=dict)


@dataclass
class LastRun:
    started_at: datetime
    ended_at: datetime | None
    exit_code: int | None
    counts: Mapping[str, int]


@dataclass
class StateSnapshot:
    """What the metrics need from the state file, read while it is open."""

    runs: dict[str, LastRun] = field(default_factory=dict)
    successes: dict[str, datetime] = field(default_factory=dict)
    queued: int = 0
    dead: int = 0
    oldest_queued_at: datetime | None = None
    watermarks: dict[str, datetime] = field(default_factory=dict)


def snapshot(store: StateStore) -> StateSnapshot:
    """The state file's figures for the metrics (dry runs left out: they wrote nothing)."""
    snap = StateSnapshot()
    for command, run in store.last_runs().items():
        if command.endswith(DRY_RUN_SUFFIX):
            continue
        counts = {k: int(v) for k, v in run.counts.items() if isinstance(v, int)}
        snap.runs[command] = LastRun(run.started_at, run.ended_at, run.exit_code, counts)
        success = store.last_success(command)
        if success is not None:
            snap.successes[command] = success
    queue = store.queue_counts()
    snap.queued, snap.dead = queue["queued"], queue["dead"]
    snap.oldest_queued_at = store.oldest_queued_at()
    snap.watermarks = dict(store.watermarks())
    return snap


def build_registry(config_name: str, snap: StateSnapshot | None,
                   outcome: RunOutcome | None = None) -> CollectorRegistry:
    """The metrics of the state snapshot, with ``outcome`` as its command's last run."""
    now = utcnow()
    snap = snap or StateSnapshot()
    runs = dict(snap.runs)
    successes = dict(snap.successes)
    if outcome is not None:
        runs[outcome.command] = LastRun(outcome.started_at, outcome.ended_at,
                                        outcome.exit_code, dict(outcome.counts))
        if outcome.exit_code in (0, 1):
            successes[outcome.command] = outcome.ended_at
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    g = _Gauges(registry)
    for command, run in sorted(runs.items()):
        g.start.labels(config_name, command).set(run.started_at.timestamp())
        if run.ended_at is not None:
            g.end.labels(config_name, command).set(run.ended_at.timestamp())
            g.duration.labels(config_name, command).set(
                max(0.0, (run.ended_at - run.started_at).total_seconds()))
        if run.exit_code is not None:
            g.exit_code.labels(config_name, command).set(run.exit_code)
        for result, n in sorted(run.counts.items()):
            g.contacts.labels(config_name, command, result).set(n)
    for command, at in sorted(successes.items()):
        g.success.labels(config_name, command).set(at.timestamp())
    g.queue.labels(config_name, "queued").set(snap.queued)
    g.queue.labels(config_name, "dead").set(snap.dead)
    oldest = snap.oldest_queued_at
    g.oldest.labels(config_name).set(max(0.0, (now - oldest).total_seconds()) if oldest else 0)
    for name, at in sorted(snap.watermarks.items()):
        g.watermark.labels(config_name, name).set(at.timestamp())
    return registry


class _Gauges:
    """The gauges of one registry (names per Prometheus conventions: base units, a
    ``_seconds``/``_timestamp_seconds`` suffix, no ``_total`` on a gauge)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Gauge

        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", doc, ["config", *labels], registry=registry)

        self.start = gauge("last_run_start_timestamp_seconds",
                           "When the command's last run started (unix time).", "command")
        self.end = gauge("last_run_end_timestamp_seconds",
                         "When the command's last run ended (unix time).", "command")
        self.duration = gauge("last_run_duration_seconds",
                              "How long the command's last run took.", "command")
        self.exit_code = gauge("last_run_exit_code",
                               "Exit code of the command's last run (0 all done, 1 some "
                               "contacts failed, 2 config/safety stop, 3 remote failure, "
                               "130/143 interrupted).", "command")
        self.contacts = gauge("last_run_contacts",
                              "What the command's last run counted, by result (sent, "
                              "created, failed, queued...; requests counts requests).",
                              "command", "result")
        self.success = gauge("last_success_timestamp_seconds",
                             "When the command last ended with exit 0 or 1 (unix time).",
                             "command")
        self.queue = gauge("queue_contacts",
                           "Contacts in the failsafe queue: state=queued waits for a "
                           "retry, state=dead reached sync.max_attempts.", "state")
        self.oldest = gauge("queue_oldest_age_seconds",
                            "Age of the longest-waiting live queued contact (0: none).")
        self.watermark = gauge("watermark_timestamp_seconds",
                               "Each change watermark (unix time): changes before it were "
                               "sent.", "watermark")


def write_metrics(path: Path, registry: CollectorRegistry) -> None:
    """Write the registry to ``path`` atomically (a temporary file renamed over it)."""
    from prometheus_client import write_to_textfile

    write_to_textfile(str(path), registry)


def config_name(source: Path | None) -> str:
    """The ``config`` label: the config file's stem (``magsync`` for magsync.yaml)."""
    return source.stem if source is not None else "magsync"
