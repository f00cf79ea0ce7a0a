"""The sandbox shop: deterministic generation, mutations, and the search engine's index
fast paths agreeing with a brute-force evaluation."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from magsync.sandbox.magento.search import Criteria, Filter, run_search
from magsync.sandbox.magento.shop import Shop
from magsync.sandbox.magento.shop_gen import generate_records, generate_shop

ANCHOR = datetime(2026, 5, 1, tzinfo=timezone.utc)
FROZEN = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def test_generation_is_deterministic():
    first = generate_records(300, 200, seed=42, anchor=ANCHOR)
    assert first == generate_records(300, 200, seed=42, anchor=ANCHOR)
    assert first != generate_records(300, 200, seed=43, anchor=ANCHOR)


def test_hundred_thousand_customers_are_realistic():
    shop = generate_shop(100_000, 60_000, seed=3, anchor=ANCHOR)
    assert sorted(shop.customers)[:3] == [1, 2, 3] and len(shop.customers) == 100_000
    stamp = "2026-05-01 00:00:00"
    assert all(c["updated_at"] < stamp and c["created_at"] <= c["updated_at"]
               for c in shop.customers.values())
    countries = {a["country_id"] for c in shop.customers.values() for a in c["addresses"]}
    assert {"US", "DE", "GB", "FR", "NL", "AT", "CH", "CZ", "KR"} <= countries
    assert {c["gender"] for c in shop.customers.values()} == {1, 2, 3}
    assert {c["website_id"] for c in shop.customers.values()} == {1, 2}
    assert len({c["email"].lower() for c in shop.customers.values()}) == 100_000
    with_addr = [c for c in shop.customers.values() if c["addresses"]]
    assert all(c["default_billing"] in {str(a["id"]) for a in c["addresses"]} for c in with_addr)
    assert 0 < len(with_addr) < 100_000
    subs = list(shop.subscribers.values())
    assert {s.subscriber_status for s in subs} == {1, 2, 3, 4}
    assert any(s.customer_id == 0 for s in subs) and any(s.customer_id for s in subs)
    assert all(s.change_status_at and s.change_status_at < stamp for s in subs)
    # a mass action leaves many customers with one identical updated_at
    stamps: dict[str, int] = {}
    for c in shop.customers.values():
        stamps[c["updated_at"]] = stamps.get(c["updated_at"], 0) + 1
    assert max(stamps.values()) > 100
    ids, total, _ = run_search(shop, Criteria([[Filter("entity_id", "99900", "gt")]],
                                              [("entity_id", "ASC")], 300))
    assert total == 100 and ids == list(range(99_901, 100_001))


def small_shop() -> Shop:
    return generate_shop(50, 30, seed=5, anchor=ANCHOR, now=lambda: FROZEN)


def test_edit_and_email_change_bump_updated_at_and_move_subscriber_rows():
    shop = small_shop()
    linked = next(s for s in shop.subscribers.values() if s.customer_id)
    cid = linked.customer_id
    shop.change_email(cid, "renamed@example.com")
    assert shop.customers[cid]["updated_at"] == "2026-06-01 12:00:00"
    assert linked.subscriber_email == "renamed@example.com"
    assert shop.ids_updated_between("2026-06-01 12:00:00", "2026-06-01 12:00:00") == [cid]


def test_subscription_changes_do_not_bump_the_customer_but_change_its_json():
    shop = small_shop()
    linked = next(s for s in shop.subscribers.values() if s.customer_id)
    cid = linked.customer_id
    before = shop.customers[cid]["updated_at"]
    shop.set_subscriber_status(linked.subscriber_id, 3)
    assert json.loads(shop.customer_json(cid))["extension_attributes"]["is_subscribed"] is False
    assert shop.subscribe(linked.subscriber_id) is True
    assert json.loads(shop.customer_json(cid))["extension_attributes"]["is_subscribed"] is True
    assert linked.change_status_at == "2026-06-01 12:00:00"
    assert shop.customers[cid]["updated_at"] == before


def test_register_guest_links_the_row_and_delete_removes_everything():
    shop = small_shop()
    guest = next(s for s in shop.subscribers.values() if s.customer_id == 0)
    cid = shop.register_guest(guest.subscriber_email, guest.website_id)
    assert guest.customer_id == cid and cid == 51
    shop.delete_customer(cid)
    assert cid not in shop.customers and guest.subscriber_id not in shop.subscribers
    assert shop.ids_between(0, 10**9)[-1] == 50
    assert cid not in shop.ids_updated_between("", "\uffff")


BOUND = st.sampled_from(["gt", "gteq", "lt", "lteq", "eq", "from", "to"])
PROPERTY_SHOP = generate_shop(120, 10, seed=9, anchor=ANCHOR)
STAMPS = sorted(c["updated_at"] for c in PROPERTY_SHOP.customers.values())
TEXT_OPS = {"gt": str.__gt__, "gteq": str.__ge__, "from": str.__ge__, "lt": str.__lt__,
            "lteq": str.__le__, "to": str.__le__}
WINDOW = st.tuples(st.sampled_from(["gt", "gteq", "from"]), st.integers(0, 119),
                   st.sampled_from(["lt", "lteq", "to"]), st.integers(0, 119))


@settings(max_examples=80, deadline=None)
@given(bounds=st.lists(st.tuples(BOUND, st.integers(-5, 130)), max_size=3),
       website=st.sampled_from([None, 1, 2]), extra=st.booleans(),
       window=st.one_of(st.none(), WINDOW), desc=st.booleans(), page=st.integers(1, 4),
       size=st.integers(1, 40))
def test_index_paths_agree_with_brute_force(bounds, website, extra, window, desc, page, size):
    shop = PROPERTY_SHOP
    groups = [[Filter("entity_id", str(v), cond)] for cond, v in bounds]
    if website is not None:
        groups.append([Filter("website_id", str(website), "eq")])
    if extra:  # a two-filter group is never folded into an index bound
        groups.append([Filter("updated_at", "2025-01-01 00:00:00", "gteq"),
                       Filter("gender", "3", "eq")])
    if window is not None:
        groups.append([Filter("updated_at", STAMPS[window[1]], window[0])])
        groups.append([Filter("updated_at", STAMPS[window[3]], window[2])])
    ops = {"gt": int.__gt__, "gteq": int.__ge__, "from": int.__ge__, "lt": int.__lt__,
           "lteq": int.__le__, "to": int.__le__, "eq": int.__eq__}

    def wanted(cid: int, c: dict) -> bool:
        stamp = c["updated_at"]
        return (all(ops[cond](cid, v) for cond, v in bounds)
                and (website is None or c["website_id"] == website)
                and (not extra or stamp >= "2025-01-01 00:00:00" or c["gender"] == 3)
                and (window is None or (TEXT_OPS[window[0]](stamp, STAMPS[window[1]])
                                        and TEXT_OPS[window[2]](stamp, STAMPS[window[3]]))))

    expected = [cid for cid, c in sorted(shop.customers.items()) if wanted(cid, c)]
    if desc:
        expected.reverse()
    got, total, _ = run_search(shop, Criteria(groups, [("entity_id", "DESC" if desc else "ASC")],
                                              size, page))
    assert total == len(expected)
    assert got == expected[(page - 1) * size:page * size]
