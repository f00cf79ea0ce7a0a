"""The Magento sandbox for finding deletions: customer 404s, deletions through the control
plane, a subscriber list that fails mid-read, and the id-only keyset scan."""

from __future__ import annotations

from typing import Any

import requests

from magsync.sandbox.magento.server import MagentoSandbox
from tests.test_sandbox_magento import auth, criteria, customer_url, module, put_customer, search

NO_SUCH_ENTITY = "No such entity with %fieldName = %fieldValue"
NO_ROUTE = {"message": "Request does not match any route."}


def ctl(server: MagentoSandbox, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, f"{server.url}/_sandbox{path}", json=body, timeout=10)


def all_subscriptions(server: MagentoSandbox, page_size: int = 15) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    page = 1
    while True:
        body = module(server, page=str(page), page_size=str(page_size)).json()
        rows += body["subscriptions"]
        if page >= body["last_page"]:
            return rows
        page += 1


# -- customer 404s and unknown routes ----------------------------------------------------------
def test_a_deleted_customer_is_a_404_with_magentos_body(magento_sandbox: MagentoSandbox) -> None:
    cid = max(magento_sandbox.shop.customers)
    assert requests.get(customer_url(magento_sandbox, cid), auth=auth(magento_sandbox),
                        timeout=10).status_code == 200
    assert ctl(magento_sandbox, "DELETE", f"/shop/customers/{cid}").json() == {"deleted": cid}
    for resp in (requests.get(customer_url(magento_sandbox, cid), auth=auth(magento_sandbox),
                              timeout=10),
                 put_customer(magento_sandbox, cid, {"firstname": "Back"})):
        assert resp.status_code == 404
        assert resp.json() == {"message": NO_SUCH_ENTITY,
                               "parameters": {"fieldName": "customerId", "fieldValue": cid}}
    assert ctl(magento_sandbox, "DELETE", f"/shop/customers/{cid}").status_code == 400


def test_unknown_routes_are_404_before_any_auth(magento_sandbox: MagentoSandbox) -> None:
    base = magento_sandbox.url
    for path in ("/rest/V1/nothing", "/rest/all/V1/customers/1/nothing",
                 "/rest/all/V1/emarsys/nothing", "/index.php"):
        for kwargs in ({"auth": auth(magento_sandbox)}, {}):
            resp = requests.get(base + path, timeout=10, **kwargs)
            assert (resp.status_code, resp.json()) == (404, NO_ROUTE), path
    # a known route still wants auth
    assert requests.get(customer_url(magento_sandbox, 1), timeout=10).status_code == 401


# -- deletions through the control plane -------------------------------------------------------
def test_deleting_a_customer_takes_their_subscriber_rows(magento_sandbox: MagentoSandbox) -> None:
    shop = magento_sandbox.shop
    row = next(s for s in shop.subscribers.values() if s.customer_id)
    cid = row.customer_id
    own = {s.subscriber_id for s in shop.subscribers.values() if s.customer_id == cid}
    before = {s["subscriber_id"] for s in all_subscriptions(magento_sandbox)}
    ctl(magento_sandbox, "DELETE", f"/shop/customers/{cid}")
    after = {s["subscriber_id"] for s in all_subscriptions(magento_sandbox)}
    assert before - after == own and row.subscriber_id in own
    rows = requests.get(f"{magento_sandbox.url}/_sandbox/shop/subscribers",
                        params={"email": row.subscriber_email}, timeout=10).json()
    assert all(r["customer_id"] != cid for r in rows)


def test_deleting_a_guest_subscriber_leaves_no_trace(magento_sandbox: MagentoSandbox) -> None:
    guest = next(s for s in magento_sandbox.shop.subscribers.values() if s.customer_id == 0)
    total = module(magento_sandbox).json()["total_count"]
    gone = ctl(magento_sandbox, "DELETE", f"/shop/subscribers/{guest.subscriber_id}")
    assert gone.json() == {"deleted": guest.subscriber_id}
    body = module(magento_sandbox, page_size="1000").json()
    assert body["total_count"] == total - 1
    assert guest.subscriber_id not in {s["subscriber_id"] for s in body["subscriptions"]}
    again = ctl(magento_sandbox, "DELETE", f"/shop/subscribers/{guest.subscriber_id}")
    assert again.status_code == 400 and again.json() == {
        "message": f"no subscriber {guest.subscriber_id}"}


# -- the subscriber list failing mid-read ------------------------------------------------------
def test_the_subscriber_list_fails_from_a_page_on_until_cleared(
        magento_sandbox: MagentoSandbox) -> None:
    armed = ctl(magento_sandbox, "POST", "/magento-faults",
                {"subscriptions_fail_from_page": 2, "status": 500})
    assert armed.json() == {"subscriptions_fail_from_page": 2, "status": 500, "times": None}
    assert module(magento_sandbox, page="1", page_size="15").status_code == 200
    for page in ("2", "2", "3"):  # a retry meets the same failure
        resp = module(magento_sandbox, page=page, page_size="15")
        assert resp.status_code == 500
        assert resp.json()["message"].startswith("Internal Error.")
    assert requests.get(customer_url(magento_sandbox, 1), auth=auth(magento_sandbox),
                        timeout=10).status_code == 200  # other routes are untouched
    cleared = ctl(magento_sandbox, "POST", "/magento-faults", {"clear": True})
    assert cleared.json()["subscriptions_fail_from_page"] is None
    assert len(all_subscriptions(magento_sandbox)) == 40


def test_the_subscriber_list_fault_can_be_counted_and_a_503(
        magento_sandbox: MagentoSandbox) -> None:
    ctl(magento_sandbox, "POST", "/magento-faults",
        {"subscriptions_fail_from_page": 3, "status": 503, "times": 2})
    statuses = [module(magento_sandbox, page=p, page_size="15").status_code
                for p in ("1", "2", "3", "3", "3")]
    assert statuses == [200, 200, 503, 503, 200]
    assert ctl(magento_sandbox, "GET", "/magento-faults").json()[
        "subscriptions_fail_from_page"] is None
    bad = ctl(magento_sandbox, "POST", "/magento-faults", {"subscriptions_fail_from_page": 0})
    assert bad.status_code == 400


# -- the id-only keyset scan -------------------------------------------------------------------
def id_scan(server: MagentoSandbox, after: int, size: int, fields: str = "items[id]"
            ) -> requests.Response:
    params = criteria([[("entity_id", str(after), "gt")]], sorts=[("entity_id", "ASC")],
                      page_size=size)
    return search(server, {**params, "fields": fields})


def test_an_id_scan_counts_only_rows_after_the_keyset(magento_sandbox: MagentoSandbox) -> None:
    resp = id_scan(magento_sandbox, 50, 4, "items[id],total_count")
    assert resp.json() == {"items": [{"id": i} for i in (51, 52, 53, 54)], "total_count": 10}
    assert id_scan(magento_sandbox, 50, 4).json() == {
        "items": [{"id": i} for i in (51, 52, 53, 54)]}  # total_count only when named
    ctl(magento_sandbox, "DELETE", "/shop/customers/52")
    assert id_scan(magento_sandbox, 50, 4, "items[id],total_count").json() == {
        "items": [{"id": i} for i in (51, 53, 54, 55)], "total_count": 9}


def test_an_id_scan_ends_on_an_empty_page_that_is_null(magento_sandbox: MagentoSandbox) -> None:
    last = max(magento_sandbox.shop.customers)
    assert id_scan(magento_sandbox, last, 50).json() == {"items": None}
    assert id_scan(magento_sandbox, last, 50, "items[id],total_count").json() == {
        "items": None, "total_count": 0}
    seen: list[int] = []
    after = 0
    while items := id_scan(magento_sandbox, after, 7).json()["items"]:
        seen += [item["id"] for item in items]
        after = seen[-1]
    assert seen == sorted(magento_sandbox.shop.customers)
