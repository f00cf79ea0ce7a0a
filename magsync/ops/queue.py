"""``magsync queue list|purge``: the failsafe queue as a table (retry is a sync)."""

from __future__ import annotations

from magsync.state import StateStore
from magsync.util.timeutil import to_iso_seconds


def list_queue(store: StateStore | None, *, dead: bool = False
               ) -> tuple[list[str], list[list[str]]]:
    """Headers and rows: key, email, attempts, last error, queued since (live or dead)."""
    headers = ["key", "email", "attempts", "last error", "queued since"]
    if store is None:
        return headers, []
    rows = [[q.key, q.email or "", str(q.attempts), (q.last_error or "")[:120],
             to_iso_seconds(q.queued_at)]
            for q in store.queue_items(dead=dead, kind=None)]
    return headers, rows


def purge_queue(store: StateStore, *, dead: bool = False) -> int:
    """Empty the queue (only dead contacts with ``dead``); returns how many left it."""
    return store.purge_queue(dead=True if dead else None)
