"""How many Emarsys requests a run has in flight: a job's independent reads and list adds
go side by side on free request slots, never more than ``emarsys.concurrency`` at once.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from magsync.sandbox.base import CONTROL_PREFIX, Request, Response
from magsync.sandbox.pair import SandboxPair
from tests.helpers.export_checks import assert_export_complete
from tests.helpers.sandbox import clock_behind


class InFlight:
    """Counts the Emarsys requests being answered at once, per route and in all."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    def watch(self, pair: SandboxPair, monkeypatch: pytest.MonkeyPatch) -> None:
        original = pair.emarsys.dispatch

        def dispatch(req: Request) -> Response:
            if req.path.startswith(CONTROL_PREFIX):
                return original(req)
            route = f"{req.method} {req.path.rstrip('/').rsplit('/', 1)[-1]}"
            self._step(route, +1)
            try:
                return original(req)
            finally:
                self._step(route, -1)

        monkeypatch.setattr(pair.emarsys, "dispatch", dispatch)

    def _step(self, route: str, by: int) -> None:
        with self.lock:
            for key in (route, "all"):
                self.now[key] += by
                self.peak[key] = max(self.peak[key], self.now[key])


def _export(pair: SandboxPair, magsync: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            concurrency: int, *args: str) -> InFlight:
    cfg = pair.write_config(tmp_path / "c.yaml", tmp_path / "state.db",
                            emarsys={"concurrency": concurrency, "batch_size": 1000})
    pair.emarsys.faults.set_latency(60)  # long enough for requests to meet
    seen = InFlight()
    seen.watch(pair, monkeypatch)
    result = magsync("export-initial", *args, config=cfg)
    assert result.code == 0, result
    assert_export_complete(pair, guests="--customers" not in args)
    return seen


def test_a_jobs_reads_go_side_by_side_when_slots_are_free(
        pair: SandboxPair, magsync: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # One job: guests who registered (looked up by subscriber id, rule 4) and new
    # customers (looked up by email, rule 6). The two reads are independent, so they meet
    # only if the job sends them side by side.
    cfg = pair.write_config(tmp_path / "c.yaml", tmp_path / "state.db",
                            emarsys={"concurrency": 4, "batch_size": 1000})
    assert magsync("export-initial", config=cfg).code == 0
    shop = pair.magento.shop
    clock_behind(shop)
    guests = [s for s in sorted(shop.subscribers.values(), key=lambda s: s.subscriber_id)
              if not s.customer_id][:2]
    for g in guests:
        shop.register_guest(g.subscriber_email, g.website_id, firstname="Now",
                            lastname="Registered")
    for i in range(2):
        shop.create_customer(email=f"side.by.side{i}@example.org", firstname="New",
                             lastname=f"Customer {i}")
    pair.emarsys.faults.set_latency(60)  # long enough for requests to meet
    seen = InFlight()
    seen.watch(pair, monkeypatch)

    result = magsync("sync-realtime", config=cfg)

    assert result.code == 0, result
    assert seen.peak["POST getdata"] >= 2
    assert seen.peak["all"] <= 4
    assert_export_complete(pair)


def test_concurrency_one_means_one_request_at_a_time(
        pair: SandboxPair, magsync: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _export(pair, magsync, tmp_path, monkeypatch, 1)

    assert seen.peak["all"] == 1
    assert seen.peak["POST getdata"] == 1
