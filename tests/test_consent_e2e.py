"""Consent through the real syncs (SPEC section 3, "Consent is never manufactured").

Opt-in changed on both sides since the last sync and disagreeing ends as an opt-out on
both sides; a change on one side only is that side's; an Emarsys opt-out that magsync did
not write is never turned into an opt-in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from magsync.sandbox.pair import SandboxPair
from tests.helpers.cli import status_of
from tests.helpers.export_checks import CUSTOMER_KEY, contact_ids
from tests.helpers.sandbox import request_seq

SUBSCRIBED, NOT_ACTIVE, UNSUBSCRIBED, UNCONFIRMED = 1, 2, 3, 4


@pytest.fixture
def scanning(pair: SandboxPair, tmp_path: Path) -> Path:
    """A config whose sync-realtime reads the subscriber list on every run."""
    return pair.write_config(tmp_path / "scan.yaml", tmp_path / "state.db",
                             sync={"subscriber_scan_minutes": 0})


def _linked(pair: SandboxPair, status: int) -> Any:
    """A customer's subscriber row, set to ``status`` (before the export)."""
    sub = next(s for s in sorted(pair.magento.shop.subscribers.values(),
                                 key=lambda s: s.subscriber_id) if s.customer_id)
    pair.magento.shop.set_subscriber_status(sub.subscriber_id, status)
    return sub


def _contact(pair: SandboxPair, cid: int) -> int:
    found = contact_ids(pair, f"c:{cid}")
    assert len(found) == 1, found
    return found[0]


def _optin(pair: SandboxPair, contact: int) -> Any:
    return pair.emarsys.account.contact(contact).get("31")


def _optin_writes(pair: SandboxPair, contact: int, since: int) -> list[Any]:
    return [w["31"] for s, w in pair.emarsys.writes_for(contact) if s > since and "31" in w]


@pytest.mark.parametrize("pending", [NOT_ACTIVE, UNCONFIRMED])
def test_opt_out_in_emarsys_while_subscribing_in_magento_ends_opted_out_on_both_sides(
        pair: SandboxPair, magsync: Any, scanning: Path, pending: int) -> None:
    # The subscription waits for confirmation when the contact is first sent: no opt-in
    # is sent. Then the person opts out in Emarsys and confirms in Magento.
    sub = _linked(pair, pending)
    assert magsync("export-initial", config=scanning).code == 0
    contact = _contact(pair, sub.customer_id)
    assert _optin(pair, contact) in (None, "")
    pair.emarsys.ui_edit(contact, {"31": 2})
    pair.magento.shop.subscribe(sub.subscriber_id)
    seq = request_seq(pair)

    result = magsync("sync-realtime", config=scanning)

    assert result.code == 0, result
    assert _optin(pair, contact) == "2"  # Emarsys keeps the opt-out
    assert _optin_writes(pair, contact, seq) == []
    assert pair.magento.shop.subscribers[sub.subscriber_id].subscriber_status == UNSUBSCRIBED
    assert "consent conflict" in result.out
    status = status_of(magsync, scanning)
    assert status["runs"]["sync-realtime"]["counts"].get("conflicts") == 1
    issues = [i for i in status["issues"] if i["kind"] == "consent_conflict"]
    assert [i["key"] for i in issues] == [f"c:{sub.customer_id}"], status["issues"]
    seq = request_seq(pair)

    again = magsync("sync-realtime", config=scanning)

    assert again.code == 0, again
    assert "consent conflict" not in again.out  # settled: no echo, no second report
    assert _optin_writes(pair, contact, seq) == []
    assert pair.magento.shop.subscribers[sub.subscriber_id].subscriber_status == UNSUBSCRIBED


def test_an_opt_out_magento_refused_is_retried_never_turned_into_an_opt_in(
        pair: SandboxPair, magsync: Any, scanning: Path, tmp_path: Path) -> None:
    # As above, but Magento refuses the customer save that unsubscribes them (its
    # validation rejects the record). magsync must not record the opt-out as in sync:
    # Magento still says subscribed, and that would read as a new subscribe next time.
    sub = _linked(pair, NOT_ACTIVE)
    shop = pair.magento.shop
    assert magsync("export-initial", config=scanning).code == 0
    contact = _contact(pair, sub.customer_id)
    pair.emarsys.ui_edit(contact, {"31": 2})
    shop.subscribe(sub.subscriber_id)
    name = shop.customers[sub.customer_id]["firstname"]
    shop.edit_customer(sub.customer_id, firstname="")  # every PUT of it is now a 400
    seq = request_seq(pair)

    refused = magsync("sync-realtime", config=scanning)

    assert refused.code == 1, refused
    assert status_of(magsync, scanning)["queue"]["queued"] == 1
    assert shop.subscribers[sub.subscriber_id].subscriber_status == SUBSCRIBED
    shop.edit_customer(sub.customer_id, firstname=name)  # the shop takes saves again

    for _ in range(2):
        assert magsync("sync-realtime", config=scanning).code in (0, 1)
    assert magsync("sync-background", config=scanning).code == 0

    assert _optin_writes(pair, contact, seq) == []  # opt-in 1 was never sent
    assert _optin(pair, contact) == "2"
    assert shop.subscribers[sub.subscriber_id].subscriber_status == UNSUBSCRIBED
    assert status_of(magsync, scanning)["queue"]["queued"] == 0


def test_subscribing_in_magento_over_magsyncs_own_opt_out_is_sent(
        pair: SandboxPair, magsync: Any, scanning: Path) -> None:
    sub = _linked(pair, UNSUBSCRIBED)
    assert magsync("export-initial", config=scanning).code == 0
    contact = _contact(pair, sub.customer_id)
    assert _optin(pair, contact) == "2"  # magsync wrote this opt-out
    pair.magento.shop.subscribe(sub.subscriber_id)

    result = magsync("sync-realtime", config=scanning)

    assert result.code == 0, result
    assert _optin(pair, contact) == "1"  # only Magento changed: Magento wins
    assert "consent conflict" not in result.out


def test_an_opt_out_made_in_emarsys_alone_is_never_overwritten(
        pair: SandboxPair, magsync: Any, scanning: Path) -> None:
    sub = _linked(pair, SUBSCRIBED)
    assert magsync("export-initial", config=scanning).code == 0
    contact = _contact(pair, sub.customer_id)
    assert _optin(pair, contact) == "1"
    pair.emarsys.ui_edit(contact, {"31": 2})
    # an unrelated edit makes the customer part of the next run
    pair.magento.shop.edit_customer(sub.customer_id, firstname="StillSubscribed")
    seq = request_seq(pair)

    realtime = magsync("sync-realtime", config=scanning)
    background = magsync("sync-background", config=scanning)

    assert (realtime.code, background.code) == (0, 0), (realtime, background)
    assert _optin(pair, contact) == "2"
    assert _optin_writes(pair, contact, seq) == []
    # pull-optin applies it to Magento; the syncs leave Magento alone
    assert pair.magento.shop.subscribers[sub.subscriber_id].subscriber_status == SUBSCRIBED


def test_an_adopted_opt_out_is_kept_and_reported(pair: SandboxPair, magsync: Any,
                                                 scanning: Path) -> None:
    sub = _linked(pair, SUBSCRIBED)
    email = pair.magento.shop.customers[sub.customer_id]["email"]
    seeded = pair.emarsys.seed_contact({3: email, 31: 2})

    result = magsync("export-initial", config=scanning)

    assert result.code == 0, result
    assert _contact(pair, sub.customer_id) == seeded  # adopted
    assert _optin(pair, seeded) == "2"
    assert pair.emarsys.account.contact(seeded)[CUSTOMER_KEY] == str(sub.customer_id)
    issues = status_of(magsync, scanning)["issues"]
    assert any(i["kind"] == "consent_conflict" and i["key"] == f"c:{sub.customer_id}"
               for i in issues), issues
    seq = request_seq(pair)

    again = magsync("sync-realtime", config=scanning)

    assert again.code == 0, again
    assert _optin_writes(pair, seeded, seq) == []
    assert _optin(pair, seeded) == "2"


def test_an_adopted_opt_out_then_a_confirmed_subscription_keeps_emarsys_at_2(
        pair: SandboxPair, magsync: Any, scanning: Path) -> None:
    # The opt-out was in Emarsys before magsync knew the person (not a change since the
    # last sync): Emarsys keeps it and it is reported; Magento is left as the person set it.
    sub = _linked(pair, NOT_ACTIVE)
    email = pair.magento.shop.customers[sub.customer_id]["email"]
    seeded = pair.emarsys.seed_contact({3: email, 31: 2})
    assert magsync("export-initial", config=scanning).code == 0
    assert _contact(pair, sub.customer_id) == seeded
    pair.magento.shop.subscribe(sub.subscriber_id)
    seq = request_seq(pair)

    result = magsync("sync-realtime", config=scanning)

    assert result.code == 0, result
    assert _optin(pair, seeded) == "2"
    assert _optin_writes(pair, seeded, seq) == []
    assert "consent conflict" in result.out
    assert pair.magento.shop.subscribers[sub.subscriber_id].subscriber_status == SUBSCRIBED
