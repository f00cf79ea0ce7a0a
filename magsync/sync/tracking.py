"""Bookkeeping of a run: counters, and which pages are safely committed.

Pages are read in order but their contacts are sent by several workers and commit out of
order. A checkpoint may only move past a page once it and every page before it (in its
range) are committed; ``PageTracker`` computes that contiguous frontier.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any


class RunCounts:
    """Thread-safe counters for the summary (read, sent, created, updated, ...)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        if n:
            with self._lock:
                self._c[name] += n

    def update(self, counts: Mapping[str, int]) -> None:
        """Add several counts under one lock (a whole job's outcomes at a time)."""
        with self._lock:
            self._c.update(counts)

    def get(self, name: str) -> int:
        with self._lock:
            return self._c[name]

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(self._c)


@dataclass
class _Lane:
    order: list[Hashable] = field(default_factory=list)   # page tokens in read order
    pending: dict[Hashable, int] = field(default_factory=dict)  # token -> contacts left
    progress: dict[Hashable, Any] = field(default_factory=dict)  # token -> checkpoint value
    frontier: Any = None


class PageTracker:
    """Per lane (an id range, or the guest list): the last progress value whose page and
    all earlier pages are fully committed."""

    def __init__(self) -> None:
        self._lanes: dict[Hashable, _Lane] = {}
        self._lock = threading.Lock()

    def open_page(self, lane: Hashable, token: Hashable, size: int, progress: Any) -> None:
        """Register a page of ``size`` contacts; ``progress`` is what a checkpoint stores
        once it is committed (e.g. its last entity id)."""
        with self._lock:
            ln = self._lanes.setdefault(lane, _Lane())
            ln.order.append(token)
            ln.pending[token] = size
            ln.progress[token] = progress
            self._advance(ln)

    def done(self, lane: Hashable, token: Hashable, n: int = 1) -> None:
        """``n`` contacts of a page are committed (sent, unchanged, queued or skipped)."""
        with self._lock:
            ln = self._lanes[lane]
            ln.pending[token] -= n
            self._advance(ln)

    def frontier(self, lane: Hashable) -> Any:
        with self._lock:
            ln = self._lanes.get(lane)
            return ln.frontier if ln else None

    def frontiers(self) -> dict[Hashable, Any]:
        with self._lock:
            return {k: v.frontier for k, v in self._lanes.items()}

    def idle(self) -> bool:
        """True when every registered page is committed."""
        with self._lock:
            return all(not ln.order for ln in self._lanes.values())

    @staticmethod
    def _advance(ln: _Lane) -> None:
        while ln.order and ln.pending[ln.order[0]] <= 0:
            token = ln.order.pop(0)
            del ln.pending[token]
            ln.frontier = ln.progress.pop(token)
