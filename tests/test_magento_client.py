"""The Magento client against the Magento sandbox: auth, errors, subscribers, opt-in
writes and ``check_magento`` (real HTTP on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from magsync.config import MagentoAuth, MagentoConfig, Secret
from magsync.errors import AuthError, FatalRemoteError, RemoteConfigError, RetriableError
from magsync.magento import subscribers as subs_mod
from magsync.magento.check import check_magento
from magsync.magento.client import MagentoClient, fill_placeholders
from magsync.magento.customers import get_customer
from magsync.magento.search import SearchCriteria, build_criteria, encode_query
from magsync.magento.subscribers import (
    GuestOptIn,
    iter_subscribers,
    set_customer_subscription,
    set_guest_subscriptions,
)
from magsync.pacing import RetryPolicy
from magsync.sandbox.magento.server import MagentoSandbox
from magsync.sandbox.magento.shop_gen import generate_shop
from tests.helpers.magento import NO_RETRY, make_cfg, make_client

ANCHOR = datetime(2026, 5, 1, tzinfo=timezone.utc)


@pytest.fixture
def server() -> Iterator[MagentoSandbox]:
    srv = MagentoSandbox(generate_shop(60, 40, seed=11, anchor=ANCHOR))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()



# -- searchCriteria --------------------------------------------------------------------
def test_criteria_puts_each_condition_in_its_own_group() -> None:
    pairs = build_criteria([("entity_id", "gt", 5), ("entity_id", "lteq", 9)],
                           sort=[("entity_id", "ASC")], page_size=50)
    assert pairs[:6] == [
        ("searchCriteria[filter_groups][0][filters][0][field]", "entity_id"),
        ("searchCriteria[filter_groups][0][filters][0][value]", "5"),
        ("searchCriteria[filter_groups][0][filters][0][condition_type]", "gt"),
        ("searchCriteria[filter_groups][1][filters][0][field]", "entity_id"),
        ("searchCriteria[filter_groups][1][filters][0][value]", "9"),
        ("searchCriteria[filter_groups][1][filters][0][condition_type]", "lteq")]
    assert ("searchCriteria[pageSize]", "50") in pairs
    assert ("searchCriteria[sortOrders][0][direction]", "ASC") in pairs


def test_query_is_encoded_exactly_once() -> None:
    query = encode_query(SearchCriteria().where("updated_at", "gteq", "2026-05-01 10:00:00")
                         .where("website_id", "in", [1, 2]).pairs())
    assert "searchCriteria%5Bfilter_groups%5D%5B0%5D" in query
    assert "%25" not in query and "[" not in query and "+" not in query
    assert "2026-05-01%2010%3A00%3A00" in query and "1%2C2" in query


def test_criteria_refuses_page_sizes_magento_refuses() -> None:
    with pytest.raises(ValueError):
        SearchCriteria().page(301)
    with pytest.raises(ValueError):
        SearchCriteria().where("x", "between", 1)


# -- auth --------------------------------------------------------------------------------
def test_oauth1_signature_with_search_criteria_is_accepted(server: MagentoSandbox) -> None:
    client = make_client(server)
    criteria = (SearchCriteria().where("updated_at", "gteq", "2020-01-01 00:00:00")
                .where("updated_at", "lt", "2030-01-01 00:00:00")
                .where("website_id", "in", [1, 2]).order_by("entity_id").page(5))
    reply = client.search("customers/search", criteria)
    assert reply["total_count"] == 60 and len(reply["items"]) == 5
    logged = server.requests("GET", r"/customers/search$")[-1]
    assert logged.status == 200
    assert "searchCriteria%5Bfilter_groups%5D" in logged.query_string
    assert logged.headers["authorization"].startswith("OAuth ")
    assert 'oauth_signature_method="HMAC-SHA256"' in logged.headers["authorization"]


def test_wrong_oauth_secret_is_an_auth_error(server: MagentoSandbox) -> None:
    cfg = make_cfg(server)
    bad = MagentoAuth(method="oauth1", consumer_key=cfg.auth.consumer_key,
                      consumer_secret=Secret("wrong"), access_token=cfg.auth.access_token,
                      access_token_secret=cfg.auth.access_token_secret)
    client = MagentoClient.from_config(
        MagentoConfig(base_url=server.url, auth=bad), retry=NO_RETRY)
    with pytest.raises(AuthError) as info:
        client.search("customers/search", SearchCriteria().page(1))
    assert info.value.exit_code == 3 and info.value.status == 401
    assert "signature is invalid" in str(info.value)
    assert "wrong" not in str(info.value)


def test_bearer_refused_when_disabled_explains_the_setting(server: MagentoSandbox) -> None:
    client = make_client(server, method="bearer")
    with pytest.raises(AuthError) as info:
        client.search("customers/search", SearchCriteria().page(1))
    text = str(info.value)
    assert "The consumer isn't authorized to access Magento_Customer::customer." in text
    assert "oauth/consumer/enable_integration_as_bearer" in text
    assert "Allow OAuth Access Tokens to be used as standalone Bearer tokens" in text
    assert "auth.method: oauth1" in text and "Magento_Customer::customer" in text
    assert server.access_token not in text


def test_bearer_accepted_when_enabled(server: MagentoSandbox) -> None:
    server.bearer_enabled = True
    client = make_client(server, method="bearer")
    assert client.search("customers/search", SearchCriteria().page(2))["total_count"] == 60
    assert server.requests("GET")[-1].headers["authorization"].startswith("Bearer ")


# -- errors --------------------------------------------------------------------------------
def test_placeholders_are_filled_from_dict_and_list() -> None:
    assert fill_placeholders("No such entity with %fieldName = %fieldValue",
                             {"fieldName": "customerId", "fieldValue": 5}) \
        == "No such entity with customerId = 5"
    args = [f"a{i}" for i in range(1, 11)]
    assert fill_placeholders("%1 and %10, %2 %3", args) == "a1 and a10, a2 a3"
    assert fill_placeholders("keep %missing", {"x": 1}) == "keep %missing"


def test_validation_error_message_is_filled_in(server: MagentoSandbox) -> None:
    client = make_client(server)
    with pytest.raises(FatalRemoteError) as info:
        client.call("GET", "customers/search")
    assert info.value.status == 400
    assert '"searchCriteria" is required' in str(info.value)


def test_deleted_customer_reads_as_none(server: MagentoSandbox) -> None:
    client = make_client(server)
    assert get_customer(client, 7)["id"] == 7  # type: ignore[index]
    server.shop.delete_customer(7)
    assert get_customer(client, 7) is None


def test_maintenance_mode_is_named(server: MagentoSandbox) -> None:
    server.maintenance = True
    client = make_client(server)
    with pytest.raises(RetriableError) as info:
        client.search("customers/search", SearchCriteria().page(1))
    assert "Magento is in maintenance mode" in str(info.value)
    assert info.value.exit_code == 3 and "<html" not in str(info.value)


def test_internal_error_shows_the_report_id(server: MagentoSandbox) -> None:
    server.fail_next(1, 500)
    client = make_client(server)
    with pytest.raises(RetriableError) as info:
        client.search("customers/search", SearchCriteria().page(1))
    assert info.value.hint is not None and "report id webapi-" in info.value.hint


def test_transient_failures_are_retried_by_the_session(server: MagentoSandbox) -> None:
    server.fail_next(2, 503)
    client = make_client(server, retry=RetryPolicy(budget=60.0, base_delay=0.001))
    assert client.search("customers/search", SearchCriteria().page(1))["total_count"] == 60
    assert [r.status for r in server.requests("GET")] == [503, 503, 200]


def test_missing_module_says_what_to_do(server: MagentoSandbox) -> None:
    server.emarsys_module = False
    client = make_client(server)
    with pytest.raises(RemoteConfigError) as info:
        list(iter_subscribers(client))
    text = str(info.value)
    assert info.value.exit_code == 2
    assert "Emarsys Magento module" in text and "magento.subscribers: none" in text


# -- subscribers ---------------------------------------------------------------------------
def test_subscribers_are_read_over_every_page(server: MagentoSandbox,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subs_mod, "SUBSCRIBER_PAGE_SIZE", 7)
    rows = list(iter_subscribers(make_client(server)))
    shop_rows = server.shop.subscribers
    assert sorted(r.subscriber_id for r in rows) == sorted(shop_rows)
    for r in rows:
        want = shop_rows[r.subscriber_id]
        assert (r.email, r.status, r.customer_id, r.website_id) == (
            want.subscriber_email, want.subscriber_status, want.customer_id, want.website_id)
        assert isinstance(r.status, int)
    pages = [dict(p.split("=") for p in r.query_string.split("&"))["page"]
             for r in server.requests("GET", r"/emarsys/subscriptions")]
    assert sorted(pages, key=int) == [str(i) for i in range(1, -(-len(shop_rows) // 7) + 1)]


def test_subscribers_per_configured_website(server: MagentoSandbox,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subs_mod, "SUBSCRIBER_PAGE_SIZE", 10)
    rows = list(iter_subscribers(make_client(server, website_ids=(2,))))
    expected = {s.subscriber_id for s in server.shop.subscribers.values() if s.website_id == 2}
    assert expected and {r.subscriber_id for r in rows} == expected
    assert all("website_id=2" in r.query_string
               for r in server.requests("GET", r"/emarsys/subscriptions"))


def test_no_subscriber_reads_with_subscribers_none(server: MagentoSandbox) -> None:
    assert list(iter_subscribers(make_client(server, subscribers="none"))) == []
    assert server.requests() == []


# -- opt-in writes -------------------------------------------------------------------------
def test_customer_opt_in_put_carries_no_addresses(server: MagentoSandbox) -> None:
    shop = server.shop
    cid = next(c for c, rec in shop.customers.items()
               if len(rec["addresses"]) >= 2 and rec["custom_attributes"]
               and not shop.is_subscribed(rec["email"]))
    before = shop.customer_dict(cid)
    saved = set_customer_subscription(make_client(server), cid, True)
    assert saved is not None and saved["extension_attributes"]["is_subscribed"] is True
    put = server.requests("PUT", rf"/customers/{cid}$")[-1]
    body = put.json()
    assert "addresses" not in body["customer"]
    assert body["customer"]["extension_attributes"]["is_subscribed"] is True
    assert body["customer"]["firstname"] == before["firstname"]
    after = shop.customer_dict(cid)
    assert after["addresses"] == before["addresses"]
    for key in ("custom_attributes", "dob", "gender", "default_billing", "group_id"):
        assert after.get(key) == before.get(key)
    assert shop.is_subscribed(after["email"])


def test_subscribe_needing_confirmation_reads_back_unsubscribed(server: MagentoSandbox
                                                               ) -> None:
    server.confirmation_required = True
    shop = server.shop
    cid = next(c for c, rec in shop.customers.items() if not shop.is_subscribed(rec["email"]))
    saved = set_customer_subscription(make_client(server), cid, True)
    assert saved is not None and saved["extension_attributes"]["is_subscribed"] is False
    email = shop.customers[cid]["email"]
    assert [s.subscriber_status for s in shop.subscribers_of(email)
            if s.customer_id == cid] == [2]


def test_customer_opt_in_of_a_deleted_customer_is_none(server: MagentoSandbox) -> None:
    server.shop.delete_customer(3)
    assert set_customer_subscription(make_client(server), 3, False) is None
    assert server.requests("PUT") == []


def test_guest_opt_in_posts_batches_and_returns_item_errors(server: MagentoSandbox) -> None:
    shop = server.shop
    guests = [s for s in shop.subscribers.values() if s.customer_id == 0][:3]
    assert len(guests) == 3
    wanted = [GuestOptIn(g.subscriber_email, g.website_id, g.subscriber_status != 1)
              for g in guests]
    errors = set_guest_subscriptions(make_client(server), [
        *wanted, GuestOptIn("not-an-email", 1, True)], batch_size=2)
    assert [(e.email, e.message) for e in errors] == [("not-an-email",
                                                       "Invalid subscriber_email")]
    posts = server.requests("POST", r"/emarsys/subscriptions$")
    assert [len(p.json()["subscriptions"]) for p in posts] == [2, 2]
    item = posts[0].json()["subscriptions"][0]
    assert item == {"subscriber_email": guests[0].subscriber_email,
                    "subscriber_status": wanted[0].subscribed,
                    "website_id": guests[0].website_id, "customer_id": 0}
    for g, w in zip(guests, wanted, strict=True):
        assert shop.subscribers[g.subscriber_id].subscriber_status == (1 if w.subscribed else 3)


# -- check ---------------------------------------------------------------------------------
def test_check_all_ok(server: MagentoSandbox) -> None:
    client = make_client(server)
    results = check_magento(client.cfg, client)
    assert [r.ok for r in results] == [True, True, True, True]
    assert "60 customers" in results[2].detail and "subscribers" in results[3].detail


def test_check_reports_bearer_refusal(server: MagentoSandbox) -> None:
    client = make_client(server, method="bearer")
    results = check_magento(client.cfg, client)
    assert [(r.name, r.ok) for r in results] == [("Magento reachable", True),
                                                 ("Magento credentials", False)]
    assert "enable_integration_as_bearer" in results[1].detail


def test_check_reports_maintenance_and_missing_module(server: MagentoSandbox) -> None:
    client = make_client(server)
    server.emarsys_module = False
    results = check_magento(client.cfg, client)
    assert [r.ok for r in results] == [True, True, True, False]
    assert "magento.subscribers: none" in results[3].detail
    server.maintenance = True
    results = check_magento(client.cfg, client)
    assert len(results) == 1 and not results[0].ok
    assert "maintenance mode" in results[0].detail
