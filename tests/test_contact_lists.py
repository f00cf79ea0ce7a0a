"""Contact lists on the upsert (SPEC 3, API-NOTES "Lists on the upsert"): a contact joins
its list with the upsert that creates or updates it; the second list of a customer with a
subscriber row is added at the end of the run, many contacts a request; a list deleted in
Emarsys is created again by name and every contact that belongs on it is added by the
next ``sync-background``. End to end through the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magsync.sandbox.pair import SandboxPair
from magsync.state import StateStore
from tests.helpers.cli import status_of
from tests.helpers.export_checks import (
    CUSTOMER_KEY,
    CUSTOMERS_LIST,
    SUBSCRIBER_KEY,
    SUBSCRIBERS_LIST,
    assert_export_complete,
    contact_ids,
)
from tests.helpers.sandbox import clock_behind, request_seq

UPSERT = r"/contact/?$"
GETDATA = r"/contact/getdata$"
LIST_ADD = r"/contactlist/\d+/add$"



def _since(pair: SandboxPair, method: str, path: str, seq: int = 0) -> list[Any]:
    return [r for r in pair.emarsys.requests(method, path) if r.seq > seq and r.status == 200]


def _list_id(pair: SandboxPair, name: str) -> int:
    found = pair.emarsys.account.list_by_name(name)
    assert found is not None, name
    return found.id


def _members(pair: SandboxPair, name: str) -> set[int]:
    return set(pair.emarsys.account.list_members(name))


def test_an_export_carries_each_list_on_its_upserts_and_asks_by_email_only(
        pair: SandboxPair, magsync: Any) -> None:
    result = magsync("export-initial")

    assert result.code == 0, result
    assert_export_complete(pair)  # every contact once, both lists right
    customers, subscribers = (_list_id(pair, n) for n in (CUSTOMERS_LIST, SUBSCRIBERS_LIST))
    upserts = [r.json() for r in _since(pair, "PUT", UPSERT)]
    by_key = {body["key_id"]: body.get("contact_list_id") for body in upserts}
    assert by_key == {CUSTOMER_KEY: customers, SUBSCRIBER_KEY: subscribers}
    assert len(upserts) == 2  # 120 customers, then the guests: one request each
    # First sends are looked up by email only (rule 6): nobody was ever sent as a guest.
    lookups = [r.json()["keyId"] for r in _since(pair, "POST", GETDATA)]
    assert lookups == ["3", "3"]
    # The customers with a subscriber row join the subscribers list at the end, at once.
    [add] = _since(pair, "POST", LIST_ADD)
    assert add.path.endswith(f"/contactlist/{subscribers}/add")
    linked = sum(1 for s in pair.magento.shop.subscribers.values() if s.customer_id)
    assert add.json()["key_id"] == CUSTOMER_KEY and len(add.json()["external_ids"]) == linked
    assert status_of(magsync)["runs"]["export-initial"]["counts"]["list_joins"] == linked


def test_a_new_customer_joins_the_customers_list_with_its_upsert(
        pair: SandboxPair, magsync: Any) -> None:
    assert magsync("export-initial").code == 0
    shop = pair.magento.shop
    clock_behind(shop)
    seq = request_seq(pair)
    new = shop.create_customer(email="joins@example.org", firstname="Jo", lastname="Ins")

    assert magsync("sync-realtime").code == 0

    [upsert] = _since(pair, "PUT", UPSERT, seq)
    assert upsert.json()["contact_list_id"] == _list_id(pair, CUSTOMERS_LIST)
    assert _since(pair, "POST", LIST_ADD, seq) == []
    [contact] = contact_ids(pair, f"c:{new}")
    assert contact in _members(pair, CUSTOMERS_LIST)


def test_a_list_deleted_in_emarsys_is_created_again_and_refilled_by_sync_background(
        pair: SandboxPair, magsync: Any) -> None:
    assert magsync("export-initial").code == 0
    shop = pair.magento.shop
    clock_behind(shop)
    old = _list_id(pair, CUSTOMERS_LIST)
    pair.emarsys.account.delete_list(old)
    new_cid = shop.create_customer(email="after.delete@example.org", firstname="Af",
                                   lastname="Ter")

    # The run's copy of the lists still names the old list: its upsert is refused
    # (2020), the list is created again by name and the upsert sent once more.
    realtime = magsync("sync-realtime")

    assert realtime.code == 0, realtime
    assert f"the Emarsys contact list 'Magento customers' (id {old}) no longer exists: " \
           "created it again" in realtime.err
    new = _list_id(pair, CUSTOMERS_LIST)
    assert new != old
    [contact] = contact_ids(pair, f"c:{new_cid}")
    assert _members(pair, CUSTOMERS_LIST) == {contact}

    seq = request_seq(pair)
    background = magsync("sync-background")

    assert background.code == 0, background
    assert_export_complete(pair)  # every customer is in the new list again
    adds = _since(pair, "POST", LIST_ADD, seq)
    assert [r.path for r in adds] == [f"/api/v2/contactlist/{new}/add"]  # one request
    assert len(adds[0].json()["external_ids"]) == len(shop.customers)
    again = request_seq(pair)
    assert magsync("sync-background").code == 0
    assert _since(pair, "POST", LIST_ADD, again) == []  # recorded: nothing owed now


def test_a_list_deleted_between_runs_is_created_again_at_start_and_refilled(
        pair: SandboxPair, magsync: Any) -> None:
    """No upsert needs to fail for it: a run that reads the lists (sync-background
    always, sync-realtime once its copy is an hour old) creates the list again."""
    assert magsync("export-initial").code == 0
    old = _list_id(pair, SUBSCRIBERS_LIST)
    pair.emarsys.account.delete_list(old)

    result = magsync("sync-background")  # reads the lists afresh: the list is gone

    assert result.code == 0, result
    new = _list_id(pair, SUBSCRIBERS_LIST)
    assert new != old
    assert (f"the Emarsys contact list 'Magento subscribers' is now id {new} (the state "
            f"file knew id {old}):") in result.err
    assert_export_complete(pair)  # guests and subscribed customers: in the new list
    with StateStore.open(pair_state(magsync)) as store:
        assert store.list_binding("subscribers") == new


def pair_state(magsync: Any) -> Path:
    """The state file of the ``pair`` fixture's config."""
    return Path(status_of(magsync)["state_path"])
