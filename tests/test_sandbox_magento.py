"""The Magento simulator behaves as API-NOTES describes, over real HTTP on loopback."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from requests_oauthlib import OAuth1

from magsync.sandbox.magento.server import MagentoSandbox

# A copy of ../shared/specs (Adobe's published 2.4.9 schema), so the suite runs anywhere.
SWAGGER = Path(__file__).parent / "data" / "magento-2.4.9-customers.swagger.json"
NOT_AUTHORIZED = "The consumer isn't authorized to access %resources."


def auth(server: MagentoSandbox, **kwargs: Any) -> OAuth1:
    return OAuth1(server.consumer_key, server.consumer_secret, server.access_token,
                  server.access_token_secret, signature_method="HMAC-SHA256", **kwargs)


def criteria(groups: list[list[tuple[str, str, str]]] | None = None,
             sorts: list[tuple[str, str]] | None = None, page_size: int | None = None,
             page: int | None = None,
             camel: bool = False) -> dict[str, str]:
    """Bracketed searchCriteria query params (snake_case or camelCase keys)."""
    fg, ct, so = ("filterGroups", "conditionType", "sortOrders") if camel else (
        "filter_groups", "condition_type", "sort_orders")
    params: dict[str, str] = {}
    for g, group in enumerate(groups or []):
        for f, (field, value, cond) in enumerate(group):
            base = f"searchCriteria[{fg}][{g}][filters][{f}]"
            params.update({f"{base}[field]": field, f"{base}[value]": value,
                           f"{base}[{ct}]": cond})
    for k, (field, direction) in enumerate(sorts or []):
        params[f"searchCriteria[{so}][{k}][field]"] = field
        params[f"searchCriteria[{so}][{k}][direction]"] = direction
    if page_size is not None:
        params["searchCriteria[pageSize]"] = str(page_size)
    if page is not None:
        params["searchCriteria[currentPage]"] = str(page)
    return params or {"searchCriteria": ""}


def search(server: MagentoSandbox, params: dict[str, str], store: str = "all"
           ) -> requests.Response:
    prefix = f"/rest/{store}/V1" if store else "/rest/V1"
    return requests.get(server.url + prefix + "/customers/search", params=params,
                        auth=auth(server), timeout=10)


def ids_of(server: MagentoSandbox, groups: list[list[tuple[str, str, str]]],
           **kwargs: Any) -> list[int]:
    resp = search(server, criteria(groups, page_size=300, **kwargs))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["total_count"] == len(body["items"])
    return [c["id"] for c in body["items"]]


def schema_for(definition: str) -> dict[str, Any]:
    spec = json.loads(SWAGGER.read_text())
    return {"$ref": f"#/definitions/{definition}", "definitions": spec["definitions"]}


def put_body_schema() -> dict[str, Any]:
    spec = json.loads(SWAGGER.read_text())
    body = spec["paths"]["/V1/customers/{customerId}"]["put"]["parameters"][1]["schema"]
    return {**body, "definitions": spec["definitions"]}


# -- auth ------------------------------------------------------------------------------
def test_oauth1_hmac_sha256_with_bracketed_params_is_accepted(magento_sandbox):
    params = criteria([[("updated_at", "2020-01-01 00:00:00", "gteq")]], page_size=5)
    resp = search(magento_sandbox, params)
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["items"]) == 5


def test_query_changed_after_signing_is_refused(magento_sandbox):
    session = requests.Session()
    req = requests.Request("GET", magento_sandbox.url + "/rest/all/V1/customers/search",
                           params=criteria(page_size=5), auth=auth(magento_sandbox))
    prepared = session.prepare_request(req)
    prepared.url = prepared.url.replace("pageSize%5D=5", "pageSize%5D=6")
    resp = session.send(prepared, timeout=10)
    assert resp.status_code == 401
    assert resp.json() == {"message": "The signature is invalid. Verify and try again."}


def test_wrong_secret_is_refused(magento_sandbox):
    bad = OAuth1(magento_sandbox.consumer_key, "nope", magento_sandbox.access_token,
                 magento_sandbox.access_token_secret, signature_method="HMAC-SHA256")
    resp = requests.get(magento_sandbox.url + "/rest/V1/customers/1", auth=bad, timeout=10)
    assert resp.status_code == 401


def test_replayed_nonce_is_refused(magento_sandbox):
    fixed = auth(magento_sandbox, nonce="fixednonce123456", timestamp=str(int(time.time())))
    url = magento_sandbox.url + "/rest/V1/customers/1"
    assert requests.get(url, auth=fixed, timeout=10).status_code == 200
    again = requests.get(url, auth=fixed, timeout=10)
    assert again.status_code == 401
    assert again.json()["message"].startswith("The nonce is already being used")


def test_timestamp_far_off_is_refused(magento_sandbox):
    stale = auth(magento_sandbox, timestamp=str(int(time.time()) - 3600))
    resp = requests.get(magento_sandbox.url + "/rest/V1/customers/1", auth=stale, timeout=10)
    assert resp.status_code == 401
    assert "oauth_timestamp" in resp.json()["message"]


def test_other_signature_methods_are_refused(magento_sandbox):
    sha1 = OAuth1(magento_sandbox.consumer_key, magento_sandbox.consumer_secret,
                  magento_sandbox.access_token, magento_sandbox.access_token_secret,
                  signature_method="HMAC-SHA1")
    resp = requests.get(magento_sandbox.url + "/rest/V1/customers/1", auth=sha1, timeout=10)
    assert resp.status_code == 400
    assert resp.json() == {"message": "Signature method %1 is not supported",
                           "parameters": ["HMAC-SHA1"]}


def test_bearer_only_when_enabled(magento_sandbox):
    url = magento_sandbox.url + "/rest/V1/customers/1"
    headers = {"Authorization": f"Bearer {magento_sandbox.access_token}"}
    off = requests.get(url, headers=headers, timeout=10)
    assert off.status_code == 401
    assert off.json() == {"message": NOT_AUTHORIZED,
                          "parameters": {"resources": "Magento_Customer::customer"}}
    magento_sandbox.bearer_enabled = True
    assert requests.get(url, headers=headers, timeout=10).status_code == 200
    wrong = requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert wrong.status_code == 401
    assert requests.get(url, timeout=10).json()["message"] == NOT_AUTHORIZED


# -- searchCriteria ----------------------------------------------------------------------
def test_every_condition_type(magento_sandbox):
    shop = magento_sandbox.shop
    c3 = shop.customers[3]
    shop.edit_customer(4, taxvat="a,vip,b")
    all_ids = sorted(shop.customers)
    with_dob = [i for i in all_ids if "dob" in shop.customers[i]]
    org = [i for i in all_ids if shop.customers[i]["email"].endswith("@example.org")]
    created = sorted(c["created_at"] for c in shop.customers.values())
    lo, hi = created[10], created[30]
    in_window = [i for i in all_ids if lo <= shop.customers[i]["created_at"] <= hi]
    cases: list[tuple[tuple[str, str, str], list[int]]] = [
        (("email", c3["email"].upper(), "eq"), [3]),
        (("entity_id", "3", "neq"), [i for i in all_ids if i != 3]),
        (("entity_id", "57", "gt"), [58, 59, 60]),
        (("entity_id", "58", "gteq"), [58, 59, 60]),
        (("entity_id", "3", "lt"), [1, 2]),
        (("entity_id", "2", "lteq"), [1, 2]),
        (("entity_id", "5,1,9", "in"), [1, 5, 9]),
        (("entity_id", ",".join(map(str, all_ids[2:])), "nin"), [1, 2]),
        (("email", "%@example.org", "like"), org),
        (("dob", "", "notnull"), with_dob),
        (("dob", "", "null"), [i for i in all_ids if i not in with_dob]),
        (("created_at", lo, "from"), [i for i in all_ids if shop.customers[i]["created_at"] >= lo]),
        (("created_at", hi, "to"), [i for i in all_ids if shop.customers[i]["created_at"] <= hi]),
        (("taxvat", "vip", "finset"), [4]),
    ]
    for flt, expected in cases:
        assert ids_of(magento_sandbox, [[flt]]) == expected, flt
    assert ids_of(magento_sandbox, [[("created_at", lo, "from")], [("created_at", hi, "to")]]) \
        == in_window
    assert org and with_dob and len(with_dob) < len(all_ids)


def test_or_within_group_and_across_groups_in_both_spellings(magento_sandbox):
    shop = magento_sandbox.shop
    either = [("email", shop.customers[7]["email"], "eq"),
              ("email", shop.customers[9]["email"], "eq")]
    assert ids_of(magento_sandbox, [either]) == [7, 9]
    assert ids_of(magento_sandbox, [either, [("entity_id", "8", "gt")]]) == [9]
    assert ids_of(magento_sandbox, [either, [("entity_id", "8", "gt")]], camel=True) == [9]
    assert ids_of(magento_sandbox, [[("entity_id", "5", "gt")], [("entity_id", "8", "lt")]]) \
        == [6, 7]


def test_sort_orders(magento_sandbox):
    shop = magento_sandbox.shop
    got = ids_of(magento_sandbox, [], sorts=[("lastname", "ASC"), ("entity_id", "DESC")])
    expected = sorted(shop.customers, key=lambda i: (shop.customers[i]["lastname"].lower(), -i))
    assert got == expected
    assert ids_of(magento_sandbox, [], sorts=[("entity_id", "DESC")]) == sorted(
        shop.customers, reverse=True)


def test_paging_default_past_the_end_and_limits(magento_sandbox):
    default = search(magento_sandbox, criteria()).json()
    assert len(default["items"]) == 20 and default["total_count"] == 60
    page3 = search(magento_sandbox, criteria(page_size=25, page=3)).json()
    assert [c["id"] for c in page3["items"]] == list(range(51, 61))
    past = search(magento_sandbox, criteria(page_size=25, page=4)).json()
    assert past["items"] == [] and past["total_count"] == 60
    too_big = search(magento_sandbox, criteria(page_size=301))
    assert too_big.status_code == 400
    assert too_big.json() == {"message": "Maximum SearchCriteria pageSize is %max",
                              "parameters": {"max": 300}}
    assert search(magento_sandbox, criteria(page_size=300)).status_code == 200
    missing = requests.get(magento_sandbox.url + "/rest/V1/customers/search",
                           auth=auth(magento_sandbox), timeout=10)
    assert missing.status_code == 400
    assert missing.json()["parameters"] == {"fieldName": "searchCriteria"}


def test_keyset_read_returns_every_customer_once(magento_sandbox):
    seen: list[int] = []
    last = 0
    while True:
        resp = search(magento_sandbox, criteria([[("entity_id", str(last), "gt")]],
                                                sorts=[("entity_id", "ASC")], page_size=7),
                      store="")
        items = resp.json()["items"]
        if not items:
            break
        seen += [c["id"] for c in items]
        last = items[-1]["id"]
    assert seen == sorted(magento_sandbox.shop.customers)


def test_unknown_field_is_a_400(magento_sandbox):
    resp = search(magento_sandbox, criteria([[("shoe_size", "42", "eq")]]))
    assert resp.status_code == 400
    assert resp.json() == {"message": "Invalid attribute name: %1", "parameters": ["shoe_size"]}


def test_updated_at_ties_on_the_boundary(magento_sandbox):
    shop = magento_sandbox.shop
    frozen = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
    shop.now = lambda: frozen
    shop.edit_customer(12, firstname="Tie")
    shop.edit_customer(40, lastname="Tie")
    got = ids_of(magento_sandbox, [[("updated_at", "2026-06-01 12:00:00", "gteq")]])
    assert got == [12, 40]
    assert ids_of(magento_sandbox, [[("updated_at", "2026-06-01 12:00:00", "gt")]]) == []


# -- schema ------------------------------------------------------------------------------
def test_replies_and_put_body_validate_against_the_swagger_schema(magento_sandbox):
    body = search(magento_sandbox, criteria(page_size=300)).json()
    jsonschema.validate(body, schema_for("customer-data-customer-search-results-interface"))
    spec = json.loads(SWAGGER.read_text())["definitions"]
    allowed = set(spec["customer-data-customer-interface"]["properties"])
    address_keys = set(spec["customer-data-address-interface"]["properties"])
    for item in body["items"]:
        assert set(item) <= allowed
        for addr in item["addresses"]:
            assert set(addr) <= address_keys
    with_addresses = [c for c in body["items"] if c["addresses"]]
    assert with_addresses
    for item in with_addresses:
        assert item["default_billing"] in {str(a["id"]) for a in item["addresses"]}
    one = requests.get(magento_sandbox.url + "/rest/all/V1/customers/1",
                       auth=auth(magento_sandbox), timeout=10).json()
    jsonschema.validate(one, schema_for("customer-data-customer-interface"))
    put_body = {"customer": {k: v for k, v in one.items() if k != "addresses"}}
    jsonschema.validate(put_body, put_body_schema())
    resp = requests.put(magento_sandbox.url + "/rest/all/V1/customers/1", json=put_body,
                        auth=auth(magento_sandbox), timeout=10)
    assert resp.status_code == 200
    jsonschema.validate(resp.json(), schema_for("customer-data-customer-interface"))


def test_get_unknown_customer_is_404(magento_sandbox):
    resp = requests.get(magento_sandbox.url + "/rest/V1/customers/9999",
                        auth=auth(magento_sandbox), timeout=10)
    assert resp.status_code == 404
    assert resp.json() == {"message": "No such entity with %fieldName = %fieldValue",
                           "parameters": {"fieldName": "customerId", "fieldValue": 9999}}


# -- PUT ---------------------------------------------------------------------------------
def customer_url(server: MagentoSandbox, cid: int) -> str:
    return f"{server.url}/rest/all/V1/customers/{cid}"


def get_customer(server: MagentoSandbox, cid: int) -> dict[str, Any]:
    resp = requests.get(customer_url(server, cid), auth=auth(server), timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def put_customer(server: MagentoSandbox, cid: int, customer: dict[str, Any]
                 ) -> requests.Response:
    return requests.put(customer_url(server, cid), json={"customer": customer},
                        auth=auth(server), timeout=10)


def test_put_with_addresses_key_deletes_the_others_and_without_keeps_them(magento_sandbox):
    shop = magento_sandbox.shop
    cid = next(i for i, c in shop.customers.items() if len(c["addresses"]) == 2)
    before = get_customer(magento_sandbox, cid)
    shop.now = lambda: datetime(2026, 7, 1, 9, 30, tzinfo=timezone.utc)
    kept = put_customer(magento_sandbox, cid,
                        {k: v for k, v in before.items() if k != "addresses"})
    assert kept.status_code == 200
    assert kept.json()["addresses"] == before["addresses"]
    assert kept.json()["updated_at"] == "2026-07-01 09:30:00"
    first = before["addresses"][0]
    partial = put_customer(magento_sandbox, cid, {**before, "addresses": [first]}).json()
    assert [a["id"] for a in partial["addresses"]] == [first["id"]]
    assert partial.get("default_shipping") in (None, str(first["id"]))
    emptied = put_customer(magento_sandbox, cid, {**before, "addresses": []}).json()
    assert emptied["addresses"] == [] and "default_billing" not in emptied


def subscriber_row(server: MagentoSandbox, cid: int) -> Any:
    return next((s for s in server.shop.subscribers.values() if s.customer_id == cid), None)


def test_put_is_subscribed_follows_the_subscriber_rules(magento_sandbox):
    shop = magento_sandbox.shop
    cid = next(i for i in shop.customers if not shop.subscribers_of(shop.customers[i]["email"]))
    customer = {k: v for k, v in get_customer(magento_sandbox, cid).items() if k != "addresses"}
    customer["extension_attributes"] = {"is_subscribed": True}
    assert put_customer(magento_sandbox, cid, customer).json()[
        "extension_attributes"]["is_subscribed"] is True
    assert subscriber_row(magento_sandbox, cid).subscriber_status == 1
    customer["extension_attributes"] = {"is_subscribed": False}
    out = put_customer(magento_sandbox, cid, customer).json()
    assert out["extension_attributes"]["is_subscribed"] is False
    assert subscriber_row(magento_sandbox, cid).subscriber_status == 3
    magento_sandbox.confirmation_required = True
    customer["extension_attributes"] = {"is_subscribed": True}
    out = put_customer(magento_sandbox, cid, customer).json()
    assert subscriber_row(magento_sandbox, cid).subscriber_status == 2  # awaiting confirmation
    assert out["extension_attributes"]["is_subscribed"] is False


def test_is_subscribed_is_matched_by_email_across_websites(magento_sandbox):
    shop = magento_sandbox.shop
    cid = next(i for i, c in shop.customers.items()
               if c["website_id"] == 1 and not shop.subscribers_of(c["email"]))
    assert get_customer(magento_sandbox, cid)["extension_attributes"]["is_subscribed"] is False
    shop.add_subscriber(shop.customers[cid]["email"], website_id=2, status=1)
    assert get_customer(magento_sandbox, cid)["extension_attributes"]["is_subscribed"] is True


def test_put_validation_errors(magento_sandbox):
    url = customer_url(magento_sandbox, 1)
    resp = requests.put(url, json={}, auth=auth(magento_sandbox), timeout=10)
    assert resp.status_code == 400 and resp.json()["parameters"] == {"fieldName": "customer"}
    shop = magento_sandbox.shop
    taken = shop.create_customer(email="taken@example.com", firstname="T", lastname="K",
                                 website_id=shop.customers[1]["website_id"])
    dup = put_customer(magento_sandbox, 1, {"email": "TAKEN@example.com"})
    assert dup.status_code == 400
    assert dup.json()["message"].startswith("A customer with the same email address")
    assert put_customer(magento_sandbox, 1, {"email": "not-an-email"}).status_code == 400
    assert taken in shop.customers and shop.customers[1]["email"] != "TAKEN@example.com"
    assert put_customer(magento_sandbox, 9999, {"firstname": "A"}).status_code == 404


# -- the Emarsys module ------------------------------------------------------------------
def module(server: MagentoSandbox, **params: str) -> requests.Response:
    return requests.get(server.url + "/rest/all/V1/emarsys/subscriptions", params=params,
                        auth=auth(server), timeout=10)


def post_module(server: MagentoSandbox, items: list[dict[str, Any]]) -> requests.Response:
    return requests.post(server.url + "/rest/all/V1/emarsys/subscriptions",
                         json={"subscriptions": items}, auth=auth(server), timeout=10)


def test_module_get_pages_and_filters(magento_sandbox):
    shop = magento_sandbox.shop
    rows = sorted(shop.subscribers.values(), key=lambda s: s.subscriber_id)
    first = module(magento_sandbox, page="1", page_size="15").json()
    assert first["total_count"] == len(rows) == 40
    assert first["last_page"] == 3 and first["page_size"] == 15 and first["current_page"] == 1
    item = first["subscriptions"][0]
    assert set(item) == {"subscriber_id", "customer_id", "store_id", "website_id",
                         "subscriber_email", "subscriber_status"}
    assert item["subscriber_status"] == str(rows[0].subscriber_status)
    collected = []
    for page in (1, 2, 3):
        collected += module(magento_sandbox, page=str(page), page_size="15").json()["subscriptions"]
    assert [s["subscriber_id"] for s in collected] == [s.subscriber_id for s in rows]
    web1 = module(magento_sandbox, website_id="1", page_size="1000").json()["subscriptions"]
    assert [s["subscriber_id"] for s in web1] == [s.subscriber_id for s in rows
                                                  if s.website_id == 1]
    subscribed = module(magento_sandbox, subscribed="true").json()["subscriptions"]
    assert {s["subscriber_status"] for s in subscribed} == {"1"}
    guests = module(magento_sandbox, only_guest="true").json()["subscriptions"]
    assert guests and {s["customer_id"] for s in guests} == {0}


def test_module_post_sets_existing_guest_rows_and_skips_unknown(magento_sandbox):
    shop = magento_sandbox.shop
    guest = next(s for s in shop.subscribers.values() if s.customer_id == 0)
    shop.set_subscriber_status(guest.subscriber_id, 1)
    items = [{"subscriber_email": guest.subscriber_email, "subscriber_status": False,
              "website_id": guest.website_id, "customer_id": 0},
             {"subscriber_email": "nobody@example.com", "subscriber_status": True,
              "website_id": 1, "customer_id": 0}]
    before = len(shop.subscribers)
    assert post_module(magento_sandbox, items).json() == {"status": "ok"}
    assert guest.subscriber_status == 3 and len(shop.subscribers) == before
    items[0]["subscriber_status"] = True
    assert post_module(magento_sandbox, items[:1]).json() == {"status": "ok"}
    assert guest.subscriber_status == 1
    bad = post_module(magento_sandbox, [{"subscriber_email": "not-an-email",
                                         "subscriber_status": True, "website_id": 1,
                                         "customer_id": 0}]).json()
    assert bad["status"] == "error"
    assert bad["errors"][0]["email"] == "not-an-email" and bad["errors"][0]["message"]
    missing = requests.post(magento_sandbox.url + "/rest/all/V1/emarsys/subscriptions",
                            json={}, auth=auth(magento_sandbox), timeout=10)
    assert missing.status_code == 400


# -- switches and faults -----------------------------------------------------------------
def test_maintenance_mode_answers_503_html(magento_sandbox):
    magento_sandbox.maintenance = True
    resp = requests.get(magento_sandbox.url + "/rest/V1/customers/1",
                        auth=auth(magento_sandbox), timeout=10)
    assert resp.status_code == 503
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "Service Temporarily Unavailable" in resp.text


def test_removed_module_routes_404_like_unknown_routes(magento_sandbox):
    assert module(magento_sandbox).status_code == 200
    requests.post(magento_sandbox.url + "/_sandbox/magento", json={"emarsys_module": False},
                  timeout=10)
    resp = module(magento_sandbox)
    assert resp.status_code == 404
    assert resp.json() == {"message": "Request does not match any route."}


def test_faults_fail_drop_and_delay(magento_sandbox):
    url = magento_sandbox.url + "/rest/V1/customers/1"
    magento_sandbox.fail_next(2, 500)
    first = requests.get(url, auth=auth(magento_sandbox), timeout=10)
    assert first.status_code == 500 and first.json()["message"].startswith("Internal Error.")
    assert requests.get(url, auth=auth(magento_sandbox), timeout=10).status_code == 500
    assert requests.get(url, auth=auth(magento_sandbox), timeout=10).status_code == 200
    requests.post(magento_sandbox.url + "/_sandbox/faults", json={"drop_next": 1}, timeout=10)
    with pytest.raises(requests.ConnectionError):
        requests.get(url, auth=auth(magento_sandbox), timeout=10)
    assert requests.get(url, auth=auth(magento_sandbox), timeout=10).status_code == 200
    magento_sandbox.faults.set_latency(2000)
    with pytest.raises(requests.Timeout):
        requests.get(url, auth=auth(magento_sandbox), timeout=0.2)
    magento_sandbox.faults.clear()
    statuses = [r.status for r in magento_sandbox.requests("GET", r"/customers/1$")]
    assert statuses[:5] == [500, 500, 200, 0, 200]


# -- control plane ----------------------------------------------------------------------
def test_control_plane_mutates_the_shop_over_http(magento_sandbox):
    ctl = magento_sandbox.url + "/_sandbox"
    shop = magento_sandbox.shop
    clock = requests.post(ctl + "/shop/clock", json={"now": "2026-06-02 08:00:00"}, timeout=10)
    assert clock.json() == {"now": "2026-06-02 08:00:00"}
    new_id = requests.post(ctl + "/shop/customers", json={
        "email": "new@example.com", "firstname": "New", "lastname": "Person"},
        timeout=10).json()["id"]
    assert shop.customers[new_id]["updated_at"] == "2026-06-02 08:00:00"
    edited = requests.post(f"{ctl}/shop/customers/{new_id}", json={"lastname": "Changed"},
                           timeout=10).json()
    assert edited["lastname"] == "Changed"
    requests.post(f"{ctl}/shop/customers/{new_id}/email", json={"email": "moved@example.com"},
                  timeout=10)
    assert get_customer(magento_sandbox, new_id)["email"] == "moved@example.com"
    sub = requests.post(ctl + "/shop/subscribers", json={"email": "walkin@example.com",
                        "website_id": 1, "status": 4}, timeout=10).json()
    guest_id = requests.post(ctl + "/shop/guests", json={"email": "walkin@example.com",
                             "website_id": 1}, timeout=10).json()["id"]
    assert shop.subscribers[sub["subscriber_id"]].customer_id == guest_id
    requests.post(ctl + "/shop/clock", json={"now": "2026-06-03 08:00:00"}, timeout=10)
    changed = requests.post(f"{ctl}/shop/subscribers/{sub['subscriber_id']}",
                            json={"status": 1}, timeout=10).json()
    assert changed["subscriber_status"] == 1
    assert changed["change_status_at"] == "2026-06-03 08:00:00"
    assert shop.customers[guest_id]["updated_at"] == "2026-06-02 08:00:00"  # not bumped
    gone = requests.delete(f"{ctl}/shop/customers/{guest_id}", timeout=10)
    assert gone.json() == {"deleted": guest_id}
    assert guest_id not in shop.customers
    bad = requests.post(ctl + "/shop/subscribers/99999", json={"status": 1}, timeout=10)
    assert bad.status_code == 400
    switches = requests.post(ctl + "/magento", json={"bearer_enabled": True}, timeout=10)
    assert switches.json()["bearer_enabled"] is True and magento_sandbox.bearer_enabled
