"""``magsync export-initial`` when the remote systems misbehave: 429 storms, 5xx, dropped
connections, a whole outage, and contacts Emarsys rejects one by one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from magsync.sandbox.base import Request, Response
from magsync.sandbox.pair import SandboxPair
from magsync.state import StateStore
from tests.helpers.export_checks import (
    CUSTOMER_KEY,
    SUBSCRIBER_KEY,
    assert_export_complete,
    upserted_keys,
)


def _config(pair: SandboxPair, tmp_path: Path, **emarsys: Any) -> Path:
    return pair.write_config(tmp_path / "faults.yaml", tmp_path / "state.db", emarsys=emarsys)


def _on_request(pair: SandboxPair, monkeypatch: pytest.MonkeyPatch,
                hook: Callable[[Request, Response], None]) -> None:
    """Call ``hook`` after each Emarsys request the sandbox answers (to start an outage)."""
    original = pair.emarsys.after_route

    def after(req: Request, resp: Response) -> None:
        original(req, resp)
        hook(req, resp)

    monkeypatch.setattr(pair.emarsys, "after_route", after)


def _429s_after_the_first_upsert(pair: SandboxPair, monkeypatch: pytest.MonkeyPatch, n: int,
                                 *, reset_in: float) -> list[int]:
    """Once the first upsert succeeded, the next ``n`` requests get 429s announcing a reset
    ``reset_in`` s ahead; the list returned is non-empty once that happened."""
    fired: list[int] = []

    def storm(req: Request, resp: Response) -> None:
        if req.method == "PUT" and resp.status == 200 and not fired:
            fired.append(1)
            pair.emarsys.fail_next_429(n, reset_in=reset_in)

    _on_request(pair, monkeypatch, storm)
    return fired


def test_429_storm_waits_for_the_announced_reset(pair: SandboxPair, magsync: Any,
                                                 tmp_path: Path) -> None:
    cfg = _config(pair, tmp_path, concurrency=1, batch_size=50)
    pair.emarsys.fail_next_429(3, reset_in=0.3)

    result = magsync("export-initial", config=cfg)

    assert result.code == 0, result
    assert pair.emarsys.rate.rejected == 3
    assert pair.emarsys.early_requests == 0
    assert_export_complete(pair)


def test_429s_in_the_middle_of_the_upserts(pair: SandboxPair, magsync: Any,
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    cfg = _config(pair, tmp_path, concurrency=1, batch_size=30)
    fired = _429s_after_the_first_upsert(pair, monkeypatch, 2, reset_in=0.2)

    result = magsync("export-initial", config=cfg)

    assert result.code == 0, result
    assert fired and pair.emarsys.rate.rejected == 2
    assert pair.emarsys.early_requests == 0
    assert_export_complete(pair)


def test_random_5xx_and_dropped_connections_lose_nothing(pair: SandboxPair, magsync: Any,
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    cfg = _config(pair, tmp_path, batch_size=25)
    seen: list[int] = []

    def flaky(req: Request, resp: Response) -> None:
        seen.append(1)
        if len(seen) in (9, 17):
            pair.emarsys.fail_next_error(1, status=503)
        if len(seen) == 13:
            pair.emarsys.faults.drop_next(1)
        if len(seen) == 21:
            pair.emarsys.fail_next_error(1, status=423, code=6003, text="Locked")

    _on_request(pair, monkeypatch, flaky)
    pair.magento.fail_next(1, 500)
    pair.magento.fail_next(1, 503)

    result = magsync("export-initial", config=cfg)

    assert result.code == 0, result
    statuses = [r.status for r in pair.emarsys.requests()]
    assert statuses.count(503) == 2 and statuses.count(423) == 1 and 0 in statuses
    assert [r.status for r in pair.magento.requests()][:2] == [500, 503]
    assert_export_complete(pair)
    keys = upserted_keys(pair)
    assert len(keys) == len(set(keys))  # nothing sent twice


def test_emarsys_down_for_the_whole_run_exits_3_then_a_later_run_completes(
        pair: SandboxPair, magsync: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGSYNC_RETRY_BUDGET", "1")
    pair.emarsys.fail_next_error(100_000, status=503, text="Service Unavailable")

    result = magsync("export-initial")

    assert result.code == 3, result
    assert "Emarsys" in result.err and "503" in result.err
    assert "next run" in result.err
    assert len(result.err.strip().splitlines()) <= 2  # message + hint, no traceback
    with StateStore.open(tmp_path / "state.db") as store:
        assert store.watermarks() == {}
        assert store.queue_items(dead=None) == []
        assert store.last_runs()["export-initial"].exit_code == 3

    pair.emarsys.faults.clear()
    again = magsync("export-initial")

    assert again.code == 0, again
    assert_export_complete(pair)


def test_emarsys_going_down_mid_export_holds_the_checkpoint_and_resumes(
        pair: SandboxPair, magsync: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _config(pair, tmp_path, concurrency=1, batch_size=20)
    monkeypatch.setenv("MAGSYNC_RETRY_BUDGET", "1")
    upserts: list[int] = []

    def outage(req: Request, resp: Response) -> None:
        if req.method == "PUT" and resp.status == 200:
            upserts.append(1)
            if len(upserts) == 3:
                pair.emarsys.fail_next_error(100_000, status=502, text="Bad Gateway")

    _on_request(pair, monkeypatch, outage)

    result = magsync("export-initial", config=cfg)

    assert result.code == 3, result
    with StateStore.open(tmp_path / "state.db") as store:
        assert store.watermarks() == {}
        assert store.queue_items(dead=None) == []
        assert store.get_checkpoint("export-initial") is not None
        assert store.count_contacts() > 0
    before = len(upserted_keys(pair))

    monkeypatch.undo()
    pair.emarsys.faults.clear()
    again = magsync("export-initial", config=cfg)

    assert again.code == 0, again
    assert "resumed" in again.out
    ids = assert_export_complete(pair)
    resent = upserted_keys(pair)[before:]
    assert len(resent) <= len(ids) - 40  # the 2 committed batches are not sent again


def test_rejected_contacts_are_queued_and_the_rest_is_sent(pair: SandboxPair, magsync: Any,
                                                           tmp_path: Path) -> None:
    shop = pair.magento.shop
    cid = sorted(shop.customers)[5]
    guest = min(s.subscriber_id for s in shop.subscribers.values() if not s.customer_id)
    pair.emarsys.inject_contact_error(CUSTOMER_KEY, cid, 2007, "Invalid value for field 4")
    pair.emarsys.inject_contact_error(SUBSCRIBER_KEY, guest, 2007, "Invalid e-mail")

    result = magsync("export-initial")

    assert result.code == 1, result
    assert "2 contact(s) failed" in result.err and "failed" not in result.out.split("\n", 1)[1]
    assert_export_complete(pair, skip=[f"c:{cid}", f"s:{guest}"])
    with StateStore.open(tmp_path / "state.db") as store:
        queued = {q.key: q for q in store.queue_items()}
        assert set(queued) == {f"c:{cid}", f"s:{guest}"}
        assert "2007" in (queued[f"c:{cid}"].last_error or "")
        assert queued[f"c:{cid}"].email == shop.customers[cid]["email"]
        assert queued[f"c:{cid}"].attempts == 1
        assert store.watermarks()  # a queued contact does not hold the export
    status = json.loads(magsync("status", "--json").out)
    assert status["queue"] == {"queued": 2, "dead": 0}
    assert status["runs"]["export-initial"]["exit_code"] == 1

    pair.emarsys.account.clear_contact_errors()
    again = magsync("export-initial")

    assert again.code == 0, again
    assert_export_complete(pair)
    with StateStore.open(tmp_path / "state.db") as store:
        assert store.queue_items(dead=None) == []


def test_a_429_holds_every_worker_until_the_reset(pair: SandboxPair, magsync: Any,
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Four workers: when one is told to wait, the others must not go on sending. Only what
    # they sent before the client read the 429 may arrive before the announced reset (a
    # request in flight per worker, or one more that was admitted meanwhile); without the
    # shared hold the other workers go on, some 60 requests here.
    cfg = _config(pair, tmp_path, concurrency=4, batch_size=10)
    fired = _429s_after_the_first_upsert(pair, monkeypatch, 1, reset_in=1.0)

    result = magsync("export-initial", config=cfg)

    assert result.code == 0, result
    assert fired and pair.emarsys.rate.rejected == 1
    assert pair.emarsys.early_requests <= 2 * 3
    assert_export_complete(pair)


def test_a_429_also_stops_workers_that_had_reserved_a_slot(pair: SandboxPair, magsync: Any,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    # At 1200 requests a minute the four workers queue for slots 0.05 s apart: when the 429
    # comes back, the others are asleep waiting for slots they reserved before it. They
    # must wake into the hold, not send at their old slots (at most a request that was
    # already on the wire may arrive before the reset).
    cfg = _config(pair, tmp_path, concurrency=4, batch_size=20, requests_per_minute=1200)
    fired = _429s_after_the_first_upsert(pair, monkeypatch, 1, reset_in=1.0)

    result = magsync("export-initial", config=cfg)

    assert result.code == 0, result
    assert fired and pair.emarsys.rate.rejected == 1
    assert pair.emarsys.early_requests <= 1
    assert_export_complete(pair)
