"""An unsubscribe magsync has seen is never held back (SPEC 3, "Finding what changed"):
whatever refreshed the subscriber mirror, the next ``sync-realtime`` sends what it holds,
and a customer's subscriber row that vanished from a complete read is an opt-out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from magsync.model import ContactRecord, MirrorRow
from magsync.sandbox.base import Request, Response
from magsync.sandbox.pair import SandboxPair
from magsync.state import StateStore
from magsync.sync.pull import EXPORT_POLL_ENV
from magsync.sync.sources import vanished_customers
from magsync.util.timeutil import to_iso
from tests.helpers.export_checks import SUBSCRIBER_KEY, contact_ids
from tests.helpers.sandbox import lowest_row, request_seq


@pytest.fixture
def pair() -> Iterator[SandboxPair]:
    with SandboxPair(30, 24, seed=9) as p:
        yield p


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EXPORT_POLL_ENV, "0")
    monkeypatch.setenv("MAGSYNC_RETRY_BUDGET", "0.5")


def _one(pair: SandboxPair, key: str) -> int:
    [found] = contact_ids(pair, key)
    return found


def _writes_since(pair: SandboxPair, contact: int, seq: int) -> list[dict[str, Any]]:
    return [fields for s, fields in pair.emarsys.writes_for(contact) if s > seq]


def _scan_not_due_after(magsync: Any) -> None:
    """The default schedule (a scan every 60 minutes): the export just read the mirror,
    and a first sync-realtime sends what that read holds (nothing new)."""
    assert magsync("export-initial").code == 0
    assert magsync("sync-realtime").code == 0


def test_a_mirror_refreshed_by_pull_optin_is_sent_by_the_next_realtime_run(
        pair: SandboxPair, magsync: Any) -> None:
    _scan_not_due_after(magsync)
    gsid = lowest_row(pair, guest=True).subscriber_id
    contact = _one(pair, f"s:{gsid}")
    pair.magento.shop.unsubscribe(gsid)
    assert magsync("pull-optin").code == 0  # reads the subscriber list into the mirror
    seq = request_seq(pair)

    result = magsync("sync-realtime")

    assert result.code == 0, result
    assert _writes_since(pair, contact, seq) == [{SUBSCRIBER_KEY: str(gsid), "31": 2}]
    # sent once: the next run has nothing left to send
    seq = request_seq(pair)
    assert magsync("sync-realtime").code == 0
    assert _writes_since(pair, contact, seq) == []


def test_a_run_killed_after_its_scan_leaves_the_differences_to_the_next_run(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    _scan_not_due_after(magsync)
    with StateStore.open(tmp_path / "state.db") as store:  # the scan is due again
        store.set_meta("mirror_read_at",
                       to_iso(datetime.now(timezone.utc) - timedelta(hours=2)))
    gsid = lowest_row(pair, guest=True).subscriber_id
    contact = _one(pair, f"s:{gsid}")
    pair.magento.shop.unsubscribe(gsid)
    before = pair.emarsys.before_route

    def no_upserts(req: Request) -> Response | None:
        if req.method == "PUT":
            return Response.json({"replyCode": 10001, "replyText": "down", "data": ""}, 503)
        return before(req)

    pair.emarsys.before_route = no_upserts  # type: ignore[method-assign]
    down = magsync("sync-realtime")  # scans, then cannot send
    pair.emarsys.before_route = before  # type: ignore[method-assign]
    assert down.code == 3, down
    seq = request_seq(pair)

    result = magsync("sync-realtime")  # the scan is not due: the mirror is fresh

    assert result.code == 0, result
    assert _writes_since(pair, contact, seq) == [{SUBSCRIBER_KEY: str(gsid), "31": 2}]


def test_a_customers_subscriber_row_deleted_in_the_grid_is_an_optout(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    config = pair.write_config(tmp_path / "scan.yaml", tmp_path / "state.db",
                               sync={"subscriber_scan_minutes": 0})
    shop = pair.magento.shop
    assert magsync("export-initial", config=config).code == 0
    sub = min((s for s in shop.subscribers.values()
               if s.customer_id and s.subscriber_status == 1), key=lambda s: s.subscriber_id)
    contact = _one(pair, f"c:{sub.customer_id}")
    assert pair.emarsys.account.contact(contact)["31"] == "1"
    shop.delete_subscriber(sub.subscriber_id)  # the admin newsletter grid: no trace left
    seq = request_seq(pair)

    result = magsync("sync-realtime", config=config)

    assert result.code == 0, result
    assert pair.emarsys.account.contact(contact)["31"] == "2"
    assert [w.get("31") for w in _writes_since(pair, contact, seq)] == [2]
    seq = request_seq(pair)
    again = magsync("sync-realtime", config=config)
    assert again.code == 0, again
    assert _writes_since(pair, contact, seq) == []  # sent once


def test_an_empty_subscriber_list_unsubscribes_nobody(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "s.db") as store:
        store.save_contacts([ContactRecord("c:5", customer_id=5, subscriber_id=9,
                                           sent={"_m31": 1}),
                             ContactRecord("c:6", customer_id=6, subscriber_id=10,
                                           sent={"_m31": 2})])
        store.replace_mirror([])
        assert vanished_customers(store) == set()  # a blank answer is not trusted
        store.replace_mirror([MirrorRow(11, 7, "x@example.com", 1)])
        # c:6's opt-out was sent already; c:5's row is gone: its opt-out is due
        assert vanished_customers(store) == {5}
        store.replace_mirror([MirrorRow(9, 5, "c5@example.com", 1)])
        assert vanished_customers(store) == set()
