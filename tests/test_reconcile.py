"""``magsync reconcile`` end to end: customers and guests deleted in Magento found and
``sync.deletions`` applied (keep, unsubscribe, delete), the safety valve, a customer that
only left ``website_ids``, an incomplete subscriber read, unconfirmed deletions queued and
retried, ``--dry-run``, a later change of mode, and ``sync-background`` running it."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

import magsync.magento.subscribers as subscribers_module
from magsync.sandbox.base import Response
from magsync.sandbox.pair import SandboxPair
from tests.helpers.cli import status_of
from tests.helpers.deletions import (
    a_customer_with_a_subscription,
    a_guest,
    customer_gets,
    deleted_in_emarsys,
    emarsys_contact,
    list_member,
    magento_seq,
    state_rows,
)
from tests.helpers.export_checks import (
    CUSTOMER_KEY,
    CUSTOMERS_LIST,
    SUBSCRIBER_KEY,
    SUBSCRIBERS_LIST,
)


def config(pair: SandboxPair, tmp_path: Path, name: str = "magsync.yaml", **sync: Any
           ) -> Path:
    """A config for the pair (state beside it) with these ``sync`` keys."""
    return pair.write_config(tmp_path / name, tmp_path / "state.db", sync=sync)


@pytest.fixture
def exported(magsync: Any) -> Any:
    """The CLI, after an export of the pair's shop with the default config."""
    def run(*args: str, config: Path | None = None) -> Any:
        return magsync(*args, config=config)
    assert run("export-initial").code == 0
    return run


def deletions_of(magsync: Any, config: Path | None = None) -> dict[str, Any]:
    return dict(status_of(magsync, config)["deletions"])


# -- the three modes ---------------------------------------------------------------------------

def test_keep_sets_optin_2_and_keeps_data_and_lists(pair: SandboxPair, exported: Any,
                                                    tmp_path: Path) -> None:
    shop = pair.magento.shop
    subscribed = a_customer_with_a_subscription(pair)
    other = max(shop.customers)
    names = {cid: shop.customers[cid]["lastname"] for cid in (subscribed, other)}
    for cid in (subscribed, other):
        shop.delete_customer(cid)

    result = exported("reconcile")

    assert result.code == 0, result
    assert "2 person(s) deleted in Magento: opt-in set to 2" in result.out
    for cid in (subscribed, other):
        contact = emarsys_contact(pair, f"c:{cid}")
        assert contact is not None and contact["31"] == "2"
        assert contact["2"] == names[cid]  # the data stays
        assert list_member(pair, CUSTOMERS_LIST, f"c:{cid}")
        assert state_rows(tmp_path / "state.db", f"c:{cid}")["deletions"] == 1
    assert deleted_in_emarsys(pair) == []
    assert deletions_of(exported) == {
        "found": 2, "erased": 0, "marked": 2, "guest_suspects": 0,
        "by_mode": {"keep": {"applied": 2, "pending": 0}}}
    seq = pair.emarsys.requests()[-1].seq

    again = exported("reconcile")

    assert again.code == 0 and "deleted in Magento" not in again.out
    # people already marked are not found (nor written) again
    assert [r.path for r in pair.emarsys.requests() if r.seq > seq and r.method != "GET"] == []


def test_unsubscribe_sets_optin_2_and_takes_the_contact_off_both_lists(
        pair: SandboxPair, exported: Any, tmp_path: Path) -> None:
    cid = a_customer_with_a_subscription(pair)
    assert list_member(pair, SUBSCRIBERS_LIST, f"c:{cid}")
    lastname = pair.magento.shop.customers[cid]["lastname"]
    pair.magento.shop.delete_customer(cid)

    result = exported("reconcile", config=config(pair, tmp_path, deletions="unsubscribe"))

    assert result.code == 0, result
    contact = emarsys_contact(pair, f"c:{cid}")
    assert contact is not None and contact["31"] == "2" and contact["2"] == lastname
    assert not list_member(pair, CUSTOMERS_LIST, f"c:{cid}")
    assert not list_member(pair, SUBSCRIBERS_LIST, f"c:{cid}")
    assert pair.emarsys.requests("POST", r"/contactlist/\d+/delete$")
    assert deleted_in_emarsys(pair) == []
    # the daily run's list pass does not put them back on the lists
    cfg = config(pair, tmp_path, deletions="unsubscribe")
    assert exported("sync-background", config=cfg).code == 0
    assert not list_member(pair, CUSTOMERS_LIST, f"c:{cid}")
    assert not list_member(pair, SUBSCRIBERS_LIST, f"c:{cid}")


def test_delete_deletes_the_contact_and_every_state_row_about_the_person(
        pair: SandboxPair, exported: Any, tmp_path: Path) -> None:
    cid = a_customer_with_a_subscription(pair)
    state = tmp_path / "state.db"
    before = state_rows(state, f"c:{cid}")
    assert before["contacts"] == 1 and before["subscribers"] == 1
    pair.magento.shop.delete_customer(cid)

    result = exported("reconcile", config=config(pair, tmp_path, deletions="delete"))

    assert result.code == 0, result
    assert "deleted in Emarsys and erased from the state file" in result.out
    assert deleted_in_emarsys(pair) == [(CUSTOMER_KEY, str(cid))]
    (request,) = pair.emarsys.requests("POST", r"/contact/delete$")
    assert request.json() == {"key_id": CUSTOMER_KEY, CUSTOMER_KEY: [str(cid)]}
    assert emarsys_contact(pair, f"c:{cid}") is None
    assert state_rows(state, f"c:{cid}") == {"contacts": 0, "queue": 0, "reports": 0,
                                              "deletions": 0, "subscribers": 0}
    d = deletions_of(exported)
    assert (d["found"], d["erased"], d["marked"]) == (1, 1, 0)


def test_a_guest_is_deleted_only_after_two_complete_subscriber_reads(
        pair: SandboxPair, exported: Any, tmp_path: Path) -> None:
    sid = a_guest(pair)
    cfg = config(pair, tmp_path, deletions="delete")
    pair.magento.shop.delete_subscriber(sid)

    first = exported("reconcile", config=cfg)

    assert first.code == 0, first
    assert deleted_in_emarsys(pair) == []  # one read that misses it makes a suspect
    assert deletions_of(exported, cfg)["guest_suspects"] == 1

    second = exported("reconcile", config=cfg)

    assert second.code == 0, second
    assert deleted_in_emarsys(pair) == [(SUBSCRIBER_KEY, str(sid))]
    assert state_rows(tmp_path / "state.db", f"s:{sid}")["contacts"] == 0
    assert deletions_of(exported, cfg)["guest_suspects"] == 0


def test_a_guest_a_read_holds_again_is_no_longer_a_suspect(
        pair: SandboxPair, exported: Any, tmp_path: Path) -> None:
    shop = pair.magento.shop
    sid = a_guest(pair)
    row = shop.subscribers[sid]
    cfg = config(pair, tmp_path, deletions="delete")
    shop.delete_subscriber(sid)  # missing from one read only (offset paging can do that)
    assert exported("reconcile", config=cfg).code == 0
    shop.load([], [row])
    assert exported("reconcile", config=cfg).code == 0
    assert deletions_of(exported, cfg)["guest_suspects"] == 0
    shop.delete_subscriber(sid)

    result = exported("reconcile", config=cfg)  # a first miss again, not a second

    assert result.code == 0, result
    assert deleted_in_emarsys(pair) == []
    assert deletions_of(exported, cfg)["guest_suspects"] == 1


def test_an_incomplete_subscriber_read_deletes_no_guest(
        pair: SandboxPair, exported: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    monkeypatch.setenv("MAGSYNC_RETRY_BUDGET", "1")
    monkeypatch.setattr(subscribers_module, "SUBSCRIBER_PAGE_SIZE", 20)  # 80 rows: 4 pages
    sid = a_guest(pair)
    cfg = config(pair, tmp_path, deletions="delete")
    pair.magento.shop.delete_subscriber(sid)
    assert exported("reconcile", config=cfg).code == 0  # a complete read: a suspect
    pair.magento.subscriptions_fault.set(2)  # every read fails from page 2 on

    broken = exported("reconcile", config=cfg)

    assert broken.code == 3, broken
    assert deleted_in_emarsys(pair) == []
    # the incomplete read did not count: the guest is still missed by one read only
    assert deletions_of(exported, cfg)["guest_suspects"] == 1
    pair.magento.subscriptions_fault.set(None)

    fixed = exported("reconcile", config=cfg)

    assert fixed.code == 0, fixed
    assert deleted_in_emarsys(pair) == [(SUBSCRIBER_KEY, str(sid))]


def test_subscribers_none_deletes_no_guest_and_sends_is_subscribed_differences(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    shop = pair.magento.shop
    cfg = pair.write_config(tmp_path / "none.yaml", tmp_path / "state.db",
                            magento={"subscribers": "none"}, sync={"deletions": "delete"})
    assert magsync("export-initial", config=cfg).code == 0
    cid = next(c for c in sorted(shop.customers) if not shop.is_subscribed(
        shop.customers[c]["email"]))
    assert emarsys_contact(pair, f"c:{cid}")["31"] == "2"  # type: ignore[index]
    shop.set_customer_subscription(cid, True)  # moves no updated_at
    gone = max(shop.customers)
    shop.delete_customer(gone)

    result = magsync("reconcile", config=cfg)

    assert result.code == 0, result
    assert emarsys_contact(pair, f"c:{cid}")["31"] == "1"  # type: ignore[index]
    assert "subscription_differences 1" in result.out
    assert deleted_in_emarsys(pair) == [(CUSTOMER_KEY, str(gone))]
    assert not pair.magento.requests("GET", r"/V1/emarsys/subscriptions")


# -- the safety valve --------------------------------------------------------------------------

def test_more_deletions_than_max_deletions_stop_with_exit_2_until_allowed(
        pair: SandboxPair, exported: Any, tmp_path: Path) -> None:
    shop = pair.magento.shop
    gone = sorted(shop.customers)[-3:]
    for cid in gone:
        shop.delete_customer(cid)
    cfg = config(pair, tmp_path, deletions="delete", max_deletions=2)
    seq = magento_seq(pair)

    stopped = exported("reconcile", config=cfg)

    assert stopped.code == 2, stopped
    assert "3 deletion(s) to apply exceed sync.max_deletions (2)" in stopped.err
    assert f"c:{gone[0]}" in stopped.err and "--allow-deletions 3" in stopped.err
    assert deleted_in_emarsys(pair) == []
    assert customer_gets(pair, seq) == 0  # counted before any confirming GET
    assert deletions_of(exported, cfg)["marked"] == 0
    assert status_of(exported, cfg)["runs"]["reconcile"]["outcome"] == "stopped"

    assert exported("reconcile", "--allow-deletions", "2", config=cfg).code == 2
    assert deleted_in_emarsys(pair) == []

    allowed = exported("reconcile", "--allow-deletions", "3", config=cfg)

    assert allowed.code == 0, allowed
    assert sorted(deleted_in_emarsys(pair)) == sorted((CUSTOMER_KEY, str(c)) for c in gone)
    assert customer_gets(pair, seq) == 3


def test_keep_needs_no_valve(pair: SandboxPair, exported: Any, tmp_path: Path) -> None:
    shop = pair.magento.shop
    for cid in sorted(shop.customers)[-3:]:
        shop.delete_customer(cid)

    result = exported("reconcile", config=config(pair, tmp_path, max_deletions=1))

    assert result.code == 0, result
    assert deletions_of(exported)["marked"] == 3


def test_sync_background_reconciles_at_its_end_and_stops_after_its_other_work(
        pair: SandboxPair, exported: Any, tmp_path: Path) -> None:
    shop = pair.magento.shop
    for cid in sorted(shop.customers)[-2:]:
        shop.delete_customer(cid)
    guest = a_guest(pair)
    shop.unsubscribe(guest)
    cfg = config(pair, tmp_path, deletions="delete", max_deletions=1)

    stopped = exported("sync-background", config=cfg)

    assert stopped.code == 2, stopped
    assert "exceed sync.max_deletions (1)" in stopped.err
    assert emarsys_contact(pair, f"s:{guest}")["31"] == "2"  # type: ignore[index]
    assert deleted_in_emarsys(pair) == []
    status = status_of(exported, cfg)
    assert status["watermarks"]["sync-background"] >= status["runs"]["sync-background"][
        "started_at"]

    done = exported("sync-background", config=config(pair, tmp_path, "two.yaml",
                                                      deletions="delete"))

    assert done.code == 0, done
    assert len(deleted_in_emarsys(pair)) == 2


# -- what is not a deletion --------------------------------------------------------------------

def test_a_customer_moved_out_of_website_ids_is_not_deleted(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    shop = pair.magento.shop
    cfg = pair.write_config(tmp_path / "site1.yaml", tmp_path / "state.db",
                            magento={"website_ids": [1]}, sync={"deletions": "delete"})
    assert magsync("export-initial", config=cfg).code == 0
    cid = min(c for c, rec in shop.customers.items() if rec["website_id"] == 1)
    moved = copy.deepcopy(shop.customers[cid])
    moved.update(website_id=2, store_id=2)
    shop.load([moved], [])

    result = magsync("reconcile", config=cfg)

    assert result.code == 0, result
    assert deleted_in_emarsys(pair) == []
    assert emarsys_contact(pair, f"c:{cid}") is not None
    assert deletions_of(magsync, cfg)["marked"] == 0


def test_guests_of_a_website_no_longer_read_are_not_deleted(
        pair: SandboxPair, exported: Any, tmp_path: Path) -> None:
    subscribers = pair.magento.shop.subscribers.values()
    other_site = sorted(s.subscriber_id for s in subscribers
                        if not s.customer_id and s.website_id == 2)
    gone = min(s.subscriber_id for s in subscribers if not s.customer_id and s.website_id == 1)
    assert other_site  # sent by the export, which read every website
    pair.magento.shop.delete_subscriber(gone)
    site1 = pair.write_config(tmp_path / "site1.yaml", tmp_path / "state.db",
                              magento={"website_ids": [1]}, sync={"deletions": "delete"})
    assert exported("rebind", "--yes", config=site1).code == 0  # the same shop, fewer sites

    for _ in range(3):
        assert exported("reconcile", config=site1).code == 0

    assert deleted_in_emarsys(pair) == [(SUBSCRIBER_KEY, str(gone))]
    assert all(emarsys_contact(pair, f"s:{sid}") is not None for sid in other_site)


def test_a_customer_the_search_misses_but_get_finds_is_not_deleted(
        pair: SandboxPair, exported: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    shop = pair.magento.shop
    hidden = sorted(shop.customers)[5]
    real_span = shop.id_span

    def without_hidden(low: int, high: int, website_id: int | None = None
                       ) -> tuple[list[int], int, int]:
        ids, start, stop = real_span(low, high, website_id)
        kept = [i for i in ids[start:stop] if i != hidden]
        return kept, 0, len(kept)

    monkeypatch.setattr(shop, "id_span", without_hidden)

    result = exported("reconcile", config=config(pair, tmp_path, deletions="delete"))

    assert result.code == 0, result
    assert "still_in_magento 1" in result.out
    assert customer_gets(pair) == 1
    assert deleted_in_emarsys(pair) == []
    assert deletions_of(exported)["marked"] == 0


def test_a_404_that_is_not_magentos_no_such_entity_stops_the_run(
        pair: SandboxPair, exported: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    gone = max(pair.magento.shop.customers)
    pair.magento.shop.delete_customer(gone)
    real = pair.magento.before_route

    def proxy(req: Any) -> Response | None:
        if re.search(r"/V1/customers/\d+$", req.path):
            return Response(404, b"<html><body>404 Not Found (nginx)</body></html>",
                            "text/html")
        return real(req)

    monkeypatch.setattr(pair.magento, "before_route", proxy)

    result = exported("reconcile", config=config(pair, tmp_path, deletions="delete"))

    assert result.code == 3, result
    assert "not its own \"No such entity\"" in result.err
    assert deleted_in_emarsys(pair) == []
    assert deletions_of(exported)["marked"] == 0


def test_a_marked_customer_magento_lists_again_is_unmarked(
        pair: SandboxPair, exported: Any) -> None:
    shop = pair.magento.shop
    cid = max(shop.customers)
    record = copy.deepcopy(shop.customers[cid])
    shop.delete_customer(cid)
    assert exported("reconcile").code == 0
    assert deletions_of(exported)["marked"] == 1
    shop.load([record], [])

    result = exported("reconcile")

    assert result.code == 0, result
    assert "reappeared 1" in result.out
    assert deletions_of(exported)["marked"] == 0


# -- unconfirmed deletions ---------------------------------------------------------------------

def test_a_deletion_emarsys_rejects_keeps_the_rows_is_queued_and_retried(
        pair: SandboxPair, exported: Any, tmp_path: Path) -> None:
    cid = max(pair.magento.shop.customers)
    twin = pair.emarsys.seed_contact({int(CUSTOMER_KEY): str(cid), 3: "twin@example.com"})
    pair.magento.shop.delete_customer(cid)
    cfg = config(pair, tmp_path, deletions="delete")
    state = tmp_path / "state.db"

    failed = exported("reconcile", config=cfg)

    assert failed.code == 1, failed
    assert deleted_in_emarsys(pair) == []  # several contacts for one key: 2010
    assert state_rows(state, f"c:{cid}")["contacts"] == 1
    listed = exported("queue", "list", config=cfg)
    assert f"c:{cid}" in listed.out and "deletion (delete) not confirmed" in listed.out
    assert "2010" in listed.out
    d = deletions_of(exported, cfg)
    assert d["by_mode"] == {"delete": {"applied": 0, "pending": 1}} and d["marked"] == 1

    assert exported("reconcile", config=cfg).code == 1  # retried, still 2010
    row = next(line for line in exported("queue", "list", config=cfg).out.splitlines()
               if line.startswith(f"c:{cid} "))
    assert row.split()[2] == "2"  # key, email, attempts
    pair.emarsys.ui_edit(twin, {int(CUSTOMER_KEY): "999999"})

    retried = exported("reconcile", config=cfg)

    assert retried.code == 0, retried
    assert deleted_in_emarsys(pair) == [(CUSTOMER_KEY, str(cid))]
    assert state_rows(state, f"c:{cid}") == {"contacts": 0, "queue": 0, "reports": 0,
                                              "deletions": 0, "subscribers": 0}
    assert "queue is empty" in exported("queue", "list", config=cfg).out


def test_an_outage_during_delete_keeps_the_rows_and_queues_the_deletion(
        pair: SandboxPair, exported: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    monkeypatch.setenv("MAGSYNC_RETRY_BUDGET", "1")
    cid = max(pair.magento.shop.customers)
    pair.magento.shop.delete_customer(cid)
    cfg = config(pair, tmp_path, deletions="delete")
    real = pair.emarsys.before_route

    def down(req: Any) -> Response | None:
        if req.path.endswith("/contact/delete"):
            return Response(503, b'{"replyCode": 10001, "replyText": "Service Unavailable"}')
        return real(req)

    monkeypatch.setattr(pair.emarsys, "before_route", down)

    result = exported("reconcile", config=cfg)

    assert result.code == 3, result
    assert deleted_in_emarsys(pair) == []
    assert state_rows(tmp_path / "state.db", f"c:{cid}")["contacts"] == 1
    assert "deletion (delete) not confirmed" in exported("queue", "list", config=cfg).out
    monkeypatch.setattr(pair.emarsys, "before_route", real)

    again = exported("reconcile", config=cfg)

    assert again.code == 0, again
    assert deleted_in_emarsys(pair) == [(CUSTOMER_KEY, str(cid))]
    assert state_rows(tmp_path / "state.db", f"c:{cid}")["contacts"] == 0


# -- dry run and a later change of mode ---------------------------------------------------------

def test_dry_run_lists_what_would_be_done_and_writes_nothing(
        pair: SandboxPair, exported: Any, tmp_path: Path) -> None:
    cid = max(pair.magento.shop.customers)
    pair.magento.shop.delete_customer(cid)
    cfg = config(pair, tmp_path, deletions="delete")
    seq = pair.emarsys.requests()[-1].seq

    result = exported("reconcile", "--dry-run", config=cfg)

    assert result.code == 0, result
    assert f"would apply sync.deletions: delete to 1 person(s) deleted in Magento: c:{cid}" \
        in result.out
    writes = [r for r in pair.emarsys.requests() if r.seq > seq and r.method != "GET"]
    assert [r.path for r in writes] == []
    assert deletions_of(exported, cfg)["marked"] == 0


def test_a_later_change_of_mode_applies_to_everyone_already_marked(
        pair: SandboxPair, exported: Any, tmp_path: Path) -> None:
    shop = pair.magento.shop
    gone = sorted(shop.customers)[-2:]
    for cid in gone:
        shop.delete_customer(cid)
    assert exported("reconcile").code == 0  # keep: marked, opt-in 2
    assert deletions_of(exported)["marked"] == 2

    valve = exported("reconcile", config=config(pair, tmp_path, "d1.yaml",
                                                deletions="delete", max_deletions=1))
    assert valve.code == 2, valve  # the same valve counts them
    assert deleted_in_emarsys(pair) == []

    result = exported("reconcile", config=config(pair, tmp_path, "d.yaml",
                                                 deletions="delete"))

    assert result.code == 0, result
    assert "2 person(s) marked deleted earlier: deleted in Emarsys" in result.out
    assert sorted(deleted_in_emarsys(pair)) == sorted((CUSTOMER_KEY, str(c)) for c in gone)
    d = deletions_of(exported)
    assert (d["found"], d["erased"], d["marked"]) == (2, 2, 0)


def test_status_shows_deletions_in_plain_text(pair: SandboxPair, exported: Any) -> None:
    pair.magento.shop.delete_customer(max(pair.magento.shop.customers))
    assert exported("reconcile").code == 0

    result = exported("status")

    assert "deleted in Magento: 1 found, 0 erased; 1 still in Emarsys (1 kept with opt-in 2)" \
        in result.out

