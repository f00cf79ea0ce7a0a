"""Preparing a state file the way earlier runs would have left it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from magsync.state import StateStore
from magsync.sync.readiness import KINDS
from magsync.sync.readiness import mark_exported as _mark


def mark_exported(path: Path, kinds: Iterable[str] = KINDS,
                  started: datetime | None = None) -> None:
    """Record a completed export of ``kinds`` (and nothing else: no watermark), so that
    the syncs run on a state file no export wrote."""
    with StateStore.open(path) as store:
        _mark(store, kinds, started or datetime(2026, 1, 1, tzinfo=timezone.utc))
