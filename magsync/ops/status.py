"""``magsync status``: what the state file says about past runs, as plain data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from magsync.state import RunInfo, StateStore
from magsync.state.binding import read_binding
from magsync.state.deletions import NO_DELETIONS
from magsync.state.lock import probe_lock
from magsync.sync.readiness import exported_at
from magsync.util.timeutil import to_iso, utcnow


def collect_status(store: StateStore | None, path: Path) -> dict[str, Any]:
    """Runs, watermarks, queue and mirror figures, and the accounts the file is bound to;
    works on a missing state file."""
    if store is None:
        return {"state_path": str(path), "state_exists": False, "binding": None,
                "migration": None, "runs": {}, "watermarks": {}, "exported": {},
                "queue": {"queued": 0, "dead": 0}, "contacts": 0,
                "mirror": {"subscribers": 0, "read_at": None}, "issues": [],
                "deletions": NO_DELETIONS}
    outcome = _outcomes(path)
    runs = {}
    for command, run in store.last_runs().items():
        runs[command] = {
            "started_at": to_iso(run.started_at),
            "ended_at": to_iso(run.ended_at) if run.ended_at else None,
            "outcome": outcome(run),
            "exit_code": run.exit_code, "counts": run.counts, "message": run.message}
    mirror_at = store.mirror_read_at()
    binding = read_binding(store)
    return {
        "state_path": str(path), "state_exists": True,
        "schema_version": store.schema_version,
        "migration": store.info.migration_note() if store.info else None,
        "binding": binding.as_dict() if binding else None,
        "runs": runs,
        "watermarks": {k: to_iso(v) for k, v in store.watermarks().items()},
        "exported": {k: to_iso(v) for k, v in exported_at(store).items()},
        "queue": store.queue_counts(),
        "contacts": store.count_contacts(),
        "mapping_hash": store.get_meta("mapping_hash"),
        "mirror": {"subscribers": store.mirror_count(),
                   "read_at": to_iso(mirror_at) if mirror_at else None,
                   "age_minutes": round((utcnow() - mirror_at).total_seconds() / 60, 1)
                   if mirror_at else None},
        "issues": [{"kind": k, "key": key, "detail": d, "at": to_iso(at)}
                   for k, key, d, at in store.reports(limit=20)],
        "deletions": store.deletion_counts(),
    }


def _outcomes(path: Path) -> Callable[[RunInfo], str]:
    """A run's outcome; one without an end is ``running`` only while its process holds
    the run lock, else ``killed`` (the lock is probed once, and only if needed)."""
    probed: list[dict[str, Any] | None] = []

    def outcome(run: RunInfo) -> str:
        if run.outcome:
            return run.outcome
        if not probed:
            try:
                probed.append(probe_lock(path))
            except OSError:  # e.g. a monitoring user who may not open the lock file
                probed.append({"unknown": True})
        holder = probed[0]
        if holder is not None and holder.get("unknown"):
            return "running or killed (the lock file cannot be read)"
        if holder is not None and holder.get("pid") in (None, run.pid):
            return "running"
        return "killed"
    return outcome
