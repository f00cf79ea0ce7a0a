"""``magsync status``: what the state file says about past runs, as plain data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magsync.state import StateStore
from magsync.util.timeutil import to_iso, utcnow

# People deleted in Magento (SPEC 7): found in all, erased, still marked (their Emarsys
# contact remains) by mode and whether Emarsys confirmed it, and guests one read missed.
NO_DELETIONS: dict[str, Any] = {"found": 0, "erased": 0, "marked": 0, "by_mode": {},
                                "guest_suspects": 0}


def collect_status(store: StateStore | None, path: Path) -> dict[str, Any]:
    """Runs, watermarks, queue and mirror figures; works on a missing state file."""
    if store is None:
        return {"state_path": str(path), "state_exists": False, "runs": {},
                "watermarks": {}, "queue": {"queued": 0, "dead": 0}, "contacts": 0,
                "mirror": {"subscribers": 0, "read_at": None}, "issues": [],
                "deletions": NO_DELETIONS}
    runs = {}
    for command, run in store.last_runs().items():
        runs[command] = {
            "started_at": to_iso(run.started_at),
            "ended_at": to_iso(run.ended_at) if run.ended_at else None,
            "outcome": run.outcome or "running or killed",
            "exit_code": run.exit_code, "counts": run.counts, "message": run.message}
    mirror_at = store.mirror_read_at()
    return {
        "state_path": str(path), "state_exists": True,
        "schema_version": store.schema_version,
        "runs": runs,
        "watermarks": {k: to_iso(v) for k, v in store.watermarks().items()},
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
