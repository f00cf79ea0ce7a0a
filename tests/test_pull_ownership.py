"""``pull-optin`` writes only to the person a row provably belongs to (SPEC 4), and
campaign unsubscribes reach Magento: end to end through the CLI against both
simulators."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from magsync.sandbox.magento.shop import Shop
from magsync.sandbox.pair import SandboxPair
from magsync.state import StateStore
from tests.helpers.cli import status_of
from tests.helpers.export_checks import CUSTOMER_KEY, SUBSCRIBER_KEY, contact_ids
from tests.helpers.pull import counts_of, export_and_pull, fast_pulls

CUSTOMER_PUT = r"/V1/customers/\d+$"
GUEST_POST = r"/V1/emarsys/subscriptions$"


@pytest.fixture
def pair() -> Iterator[SandboxPair]:
    with SandboxPair(40, 30, seed=3) as p:
        yield p


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_pulls(monkeypatch)


@pytest.fixture
def exported(pair: SandboxPair, magsync: Any) -> SandboxPair:
    return export_and_pull(pair, magsync)




def subscribed(shop: Shop, skip: int = 0) -> tuple[int, int]:
    """(customer id, subscriber id) of a customer of website 1 subscribed in Magento."""
    found = sorted((s.customer_id, s.subscriber_id) for s in shop.subscribers.values()
                   if s.customer_id and s.subscriber_status == 1
                   and shop.customers[s.customer_id]["website_id"] == 1)
    return found[skip]


def opted_out(shop: Shop, skip: int = 0) -> int:
    """A customer of website 1 without a subscription (Emarsys holds 2 for them)."""
    with_row = {s.customer_id for s in shop.subscribers.values()}
    return sorted(c for c, v in shop.customers.items()
                  if c not in with_row and v["website_id"] == 1)[skip]


def status(shop: Shop, cid: int) -> int | None:
    rows = [s.subscriber_status for s in shop.subscribers.values() if s.customer_id == cid]
    return rows[0] if rows else None


def one(pair: SandboxPair, key: str) -> int:
    [found] = contact_ids(pair, key)
    return found


def writes(pair: SandboxPair) -> list[Any]:
    return pair.magento.requests("PUT", CUSTOMER_PUT) + pair.magento.requests(
        "POST", GUEST_POST)


def mismatches(magsync: Any) -> list[dict[str, Any]]:
    return [i for i in status_of(magsync)["issues"] if i["kind"] == "mismatched_row"]


# -- the row is not that person's -------------------------------------------------------------

def test_a_key_field_edited_to_another_customers_id_writes_nothing(
        exported: SandboxPair, magsync: Any) -> None:
    shop = exported.magento.shop
    a_cid, b_cid = opted_out(shop), opted_out(shop, skip=1)
    # A's contact gets B's customer id in Emarsys (an import, a typo, a hostile edit),
    # and opts in.
    exported.emarsys.ui_edit(one(exported, f"c:{a_cid}"), {int(CUSTOMER_KEY): str(b_cid),
                                                           31: 1})

    result = magsync("pull-optin")

    assert result.code == 0, result
    assert counts_of(result)["mismatched"] == 1 and "applied" not in counts_of(result)
    assert writes(exported) == []
    assert status(shop, b_cid) is None  # B, who opted out, stays opted out
    [issue] = mismatches(magsync)
    assert issue["key"] == f"c:{b_cid}" and "not the contact magsync recorded" in \
        issue["detail"]
    assert f"mismatched_row c:{b_cid}" in result.out


def test_an_email_changed_in_the_preference_centre_still_opts_out(
        exported: SandboxPair, magsync: Any) -> None:
    shop = exported.magento.shop
    cid, sid = subscribed(shop)
    exported.emarsys.ui_edit(one(exported, f"c:{cid}"), {3: "new.address@example.net",
                                                         31: 2})

    result = magsync("pull-optin")

    assert result.code == 0, result
    assert counts_of(result)["applied"] == 1
    assert shop.subscribers[sid].subscriber_status == 3


def test_without_a_recorded_id_only_the_same_email_is_written(
        exported: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    # A state file from before magsync recorded Emarsys ids: the email decides.
    shop = exported.magento.shop
    (same, same_sid), (moved, moved_sid) = subscribed(shop), subscribed(shop, skip=1)
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.execute("UPDATE contacts SET emarsys_id = NULL")
    conn.commit()
    conn.close()
    exported.emarsys.ui_edit(one(exported, f"c:{same}"), {31: 2})
    exported.emarsys.ui_edit(one(exported, f"c:{moved}"), {3: "someone.else@example.net",
                                                           31: 2})

    result = magsync("pull-optin")

    assert result.code == 0, result
    assert counts_of(result)["applied"] == 1 and counts_of(result)["mismatched"] == 1
    assert shop.subscribers[same_sid].subscriber_status == 3
    assert shop.subscribers[moved_sid].subscriber_status == 1
    [issue] = mismatches(magsync)
    assert issue["key"] == f"c:{moved}" and "email" in issue["detail"]
    with StateStore.open(tmp_path / "state.db") as store:  # proven by its email: kept
        record = store.get_contact(f"c:{same}")
        assert record is not None and record.emarsys_id == str(one(exported, f"c:{same}"))


def test_keys_that_are_not_plain_decimal_ids_write_nothing(
        exported: SandboxPair, magsync: Any) -> None:
    shop = exported.magento.shop
    cid, sid = subscribed(shop)
    # float() reads an Arabic-Indic digit as a number; a strict parser does not.
    arabic = "".join(chr(0x0660 + int(d)) for d in str(cid))
    contact = exported.emarsys.seed_contact({3: shop.customers[cid]["email"],
                                             int(CUSTOMER_KEY): arabic})
    exported.emarsys.ui_edit(contact, {31: 2})

    result = magsync("pull-optin")

    assert result.code == 0, result
    assert counts_of(result)["mismatched"] == 1
    assert writes(exported) == [] and shop.subscribers[sid].subscriber_status == 1
    assert "is not a plain Magento id" in mismatches(magsync)[0]["detail"]


def test_a_customer_outside_website_ids_is_not_written(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    config = pair.write_config(tmp_path / "site1.yaml", tmp_path / "state.db",
                               magento={"website_ids": [1]})
    shop = pair.magento.shop
    assert magsync("export-initial", config=config).code == 0
    other = min(c for c, v in shop.customers.items() if v["website_id"] == 2)
    before = status(shop, other)
    contact = pair.emarsys.seed_contact({3: shop.customers[other]["email"],
                                         int(CUSTOMER_KEY): str(other)})
    pair.emarsys.ui_edit(contact, {31: 2})

    result = magsync("pull-optin", config=config)

    assert result.code == 0, result
    assert pair.magento.requests("PUT", CUSTOMER_PUT) == []
    assert status(shop, other) == before
    [issue] = [i for i in status_of(magsync, config)["issues"]
               if i["kind"] == "mismatched_row"]
    assert issue["key"] == f"c:{other}" and "magento.website_ids [1]" in issue["detail"]


def test_a_subscriber_id_that_is_another_customers_writes_nothing(
        exported: SandboxPair, magsync: Any) -> None:
    shop = exported.magento.shop
    (a_cid, a_sid), (_, b_sid) = subscribed(shop), subscribed(shop, skip=1)
    exported.emarsys.ui_edit(one(exported, f"c:{a_cid}"), {int(SUBSCRIBER_KEY): str(b_sid),
                                                           31: 2})

    result = magsync("pull-optin")

    assert result.code == 0, result
    assert writes(exported) == []
    assert shop.subscribers[a_sid].subscriber_status == 1
    assert shop.subscribers[b_sid].subscriber_status == 1
    assert f"subscriber {b_sid} is customer" in mismatches(magsync)[0]["detail"]


def test_no_optin_for_a_contact_magsync_never_sent_but_its_optout_goes(
        exported: SandboxPair, magsync: Any) -> None:
    shop = exported.magento.shop
    fresh = shop.create_customer(email="fresh@example.org", firstname="F", lastname="R")
    later = shop.create_customer(email="later@example.org", firstname="L", lastname="R")
    shop.set_customer_subscription(later, True)
    # contacts someone else created in Emarsys with these customers' ids and emails
    for cid, optin in ((fresh, 1), (later, 2)):
        contact = exported.emarsys.seed_contact({3: shop.customers[cid]["email"],
                                                 int(CUSTOMER_KEY): str(cid)})
        exported.emarsys.ui_edit(contact, {31: optin})

    result = magsync("pull-optin")

    assert result.code == 0, result
    assert counts_of(result)["mismatched"] == 1 and counts_of(result)["applied"] == 1
    assert status(shop, fresh) is None  # no opt-in manufactured for an unknown contact
    assert status(shop, later) == 3  # an opt-out may be written for anyone proven
    [issue] = mismatches(magsync)
    assert issue["key"] == f"c:{fresh}" and "never sent or adopted" in issue["detail"]


# -- campaign unsubscribes ------------------------------------------------------------------------

def test_a_campaign_unsubscribe_getchanges_does_not_list_reaches_magento(
        exported: SandboxPair, magsync: Any) -> None:
    shop = exported.magento.shop
    cid, sid = subscribed(shop)
    gsid = min(s.subscriber_id for s in shop.subscribers.values()
               if not s.customer_id and s.subscriber_status == 1)
    for key in (f"c:{cid}", f"s:{gsid}"):
        exported.emarsys.account.campaign_response(one(exported, key), "unsubscribe")
    # one who unsubscribed through a campaign and subscribed again since
    back_cid, back_sid = subscribed(shop, skip=1)
    back = one(exported, f"c:{back_cid}")
    for _ in range(2):  # two campaigns: one contact
        exported.emarsys.account.campaign_response(back, "unsubscribe")
    exported.emarsys.ui_import(back, {31: 1})  # (an import: getchanges does not list it)

    result = magsync("pull-optin")

    assert result.code == 0, result
    counts = counts_of(result)
    assert counts["campaign_unsubscribes"] == 3 and counts["applied"] == 2
    assert shop.subscribers[sid].subscriber_status == 3
    assert shop.subscribers[gsid].subscriber_status == 3
    assert shop.subscribers[back_sid].subscriber_status == 1
    again = magsync("pull-optin")
    assert again.code == 0 and "applied" not in counts_of(again)
