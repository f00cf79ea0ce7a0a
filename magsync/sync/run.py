"""A command's run: recorded in the state file's history whatever happens, and the
report (counts, notes, samples) the CLI renders."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from magsync.errors import (
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_PARTIAL,
    MagsyncError,
    Terminated,
    interrupt_exit_code,
)
from magsync.state import StateStore
from magsync.sync.tracking import RunCounts
from magsync.util.logs import get_logger
from magsync.util.timeutil import utcnow

log = get_logger("run")

ProgressHook = Callable[[str, int, int | None], None]  # (phase, done, total)


@dataclass
class RunReport:
    """The outcome of one command, for the summary and ``status``."""

    command: str
    started_at: datetime
    counts: dict[str, int] = field(default_factory=dict)
    duration: float = 0.0
    exit_code: int = EXIT_OK
    notes: list[str] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False


@contextmanager
def recorded_run(store: StateStore, command: str, *, dry_run: bool = False
                 ) -> Iterator[tuple[RunReport, int]]:
    """Record the run in the history whatever happens; set ``report.exit_code`` inside."""
    started = utcnow()
    t0 = time.monotonic()
    name = f"{command} (dry run)" if dry_run else command
    run_id = store.start_run(name, started, pid=os.getpid())
    report = RunReport(command=command, started_at=started, dry_run=dry_run)
    log.info("%s started", name, extra={"command": command, "run_id": run_id,
                                        "dry_run": dry_run})
    try:
        yield report, run_id
    except MagsyncError as exc:
        report.duration = time.monotonic() - t0
        store.finish_run(run_id, outcome="failed", exit_code=exc.exit_code,
                         counts=report.counts, message=str(exc).splitlines()[0])
        log.info("%s failed", name, extra={"command": command, "run_id": run_id,
                                           "exit_code": exc.exit_code, "error": str(exc)})
        raise
    except BaseException as exc:
        stopped = isinstance(exc, KeyboardInterrupt)  # Ctrl-C or SIGTERM (Terminated)
        store.finish_run(run_id, outcome="interrupted" if stopped else "crashed",
                         exit_code=interrupt_exit_code(exc) if stopped else EXIT_INTERNAL,
                         counts=report.counts, message=_stop_message(exc))
        raise
    report.duration = time.monotonic() - t0
    failed = report.counts.get("failed", 0)
    if failed and report.exit_code == EXIT_OK:
        report.exit_code = EXIT_PARTIAL
    # exit 2 here is a safety stop (the deletion valve) after the run's other work
    outcome = {EXIT_OK: "ok", EXIT_PARTIAL: "partial"}.get(report.exit_code, "stopped")
    store.finish_run(run_id, outcome=outcome, exit_code=report.exit_code,
                     counts=report.counts, message="; ".join(report.notes) or None)
    log.info("%s finished: %s", name, outcome, extra={
        "command": command, "run_id": run_id, "outcome": outcome,
        "exit_code": report.exit_code, "counts": report.counts,
        "duration_s": round(report.duration, 3), "notes": report.notes})


def _stop_message(exc: BaseException) -> str:
    if isinstance(exc, Terminated):
        return "stopped by SIGTERM"
    if isinstance(exc, KeyboardInterrupt):
        return "stopped by Ctrl-C (SIGINT)"
    return repr(exc)  # redacted, then cut, by the state file


def finish_counts(report: RunReport, counts: RunCounts, store: StateStore,
                  run_id: int) -> None:
    """Copy the counters into the report and add notes about what needs attention."""
    report.counts = counts.as_dict()
    c = report.counts
    if c.get("failed"):
        report.notes.append(f"{c['failed']} contact(s) failed: see `magsync queue list`")
    if c.get("dead"):
        report.notes.append(f"{c['dead']} contact(s) reached sync.max_attempts and are dead: "
                            "`magsync queue list --dead`, then `magsync queue retry --dead`")
    if c.get("conflicts"):
        report.notes.append(f"{c['conflicts']} consent conflict(s): the opt-out was kept "
                            "(see `magsync status`)")
    if c.get("mismatched"):
        report.notes.append(f"{c['mismatched']} row(s) did not prove they belong to the "
                            "person their keys name: nothing written for them (see "
                            "`magsync status`)")
    if c.get("unconvertible"):
        report.notes.append(f"{c['unconvertible']} value(s) could not be converted and were "
                            "left out (see `magsync status`)")
    for kind, key, detail, _ in store.reports(run_id, limit=5):
        report.notes.append(f"{kind} {key or ''}: {detail}")
