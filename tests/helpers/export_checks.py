"""What a complete ``export-initial`` must have left in the sandbox Emarsys account.

Expected values are derived from the sandbox shop directly (not through magsync's mapping),
so a mapping bug shows up as a difference here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from magsync.sandbox.emarsys.countries import COUNTRIES
from magsync.sandbox.magento.shop import Shop
from magsync.sandbox.pair import SandboxPair

CUSTOMER_KEY, SUBSCRIBER_KEY = "7001", "7002"
CUSTOMERS_LIST, SUBSCRIBERS_LIST = "Magento customers", "Magento subscribers"
COUNTRY_CHOICE = {iso: str(cid) for cid, _, iso in COUNTRIES}
OPTIN_OF_STATUS = {1: "1", 3: "2", 2: None, 4: None}


def _billing(customer: dict[str, Any]) -> dict[str, Any] | None:
    wanted = customer.get("default_billing")
    for a in customer.get("addresses") or []:
        if a.get("default_billing") is True or (wanted and str(a["id"]) == str(wanted)):
            return a
    return None


def expected_contacts(shop: Shop) -> dict[str, dict[str, str | None]]:
    """Key (``c:<id>``/``s:<id>``) -> the field values its Emarsys contact must hold."""
    out: dict[str, dict[str, str | None]] = {}
    linked = {s.customer_id: s for s in shop.subscribers.values() if s.customer_id}
    for cid, c in shop.customers.items():
        sub = linked.get(cid)
        addr = _billing(c)
        out[f"c:{cid}"] = {
            "1": c["firstname"], "2": c["lastname"], "3": c["email"],
            "4": c.get("dob"), "5": {1: "1", 2: "2"}.get(c.get("gender")),
            "11": addr["city"] if addr else None,
            "14": COUNTRY_CHOICE[addr["country_id"]] if addr else None,
            CUSTOMER_KEY: str(cid),
            SUBSCRIBER_KEY: str(sub.subscriber_id) if sub else None,
            "31": OPTIN_OF_STATUS[sub.subscriber_status] if sub else "2",
        }
    for s in shop.subscribers.values():
        if not s.customer_id:
            out[f"s:{s.subscriber_id}"] = {
                "3": s.subscriber_email, SUBSCRIBER_KEY: str(s.subscriber_id),
                CUSTOMER_KEY: None, "31": OPTIN_OF_STATUS[s.subscriber_status]}
    return out


def contact_ids(pair: SandboxPair, key: str) -> list[int]:
    """Internal ids of the Emarsys contacts carrying a ``c:``/``s:`` key."""
    kind, _, value = key.partition(":")
    return pair.emarsys.find_contacts(int(CUSTOMER_KEY if kind == "c" else SUBSCRIBER_KEY),
                                      value)


def assert_export_complete(pair: SandboxPair, *, customers: bool = True, guests: bool = True,
                           fields: bool = True, skip: Iterable[str] = (),
                           shared_emails: Iterable[str] = (),
                           overrides: dict[str, dict[str, str | None]] | None = None
                           ) -> dict[str, int]:
    """Every expected contact exactly once, with the right fields and list memberships.

    ``skip``: keys left out (e.g. queued contacts); ``overrides``: expected values that
    differ from the shop (e.g. an adopted contact's opt-out); ``shared_emails``: keys whose
    email may also be on contacts that are not magsync's. Returns key -> internal id.
    """
    acc = pair.emarsys.account
    expected = {k: v for k, v in expected_contacts(pair.magento.shop).items()
                if k not in set(skip) and (customers or not k.startswith("c:"))
                and (guests or not k.startswith("s:"))}
    ids: dict[str, int] = {}
    problems: list[str] = []
    for key, want in expected.items():
        found = contact_ids(pair, key)
        if len(found) != 1:
            problems.append(f"{key}: {len(found)} contacts")
            continue
        ids[key] = found[0]
        have = acc.contact(found[0])
        want = {**want, **(overrides or {}).get(key, {})}
        checked = want if fields else {f: want[f] for f in ("3", CUSTOMER_KEY, SUBSCRIBER_KEY)
                                       if f in want}
        diff = {f: (have.get(f), v) for f, v in checked.items() if have.get(f) != v}
        if diff:
            problems.append(f"{key}: (have, want) {diff}")
        if key not in set(shared_emails) and len(pair.emarsys.find_contacts(3, want["3"])) != 1:
            problems.append(f"{key}: email {want['3']} on "
                            f"{len(pair.emarsys.find_contacts(3, want['3']))} contacts")
    assert not problems, f"{len(problems)} problem(s): {problems[:10]}"
    _assert_lists(pair, ids, expected)
    return ids


def _assert_lists(pair: SandboxPair, ids: dict[str, int],
                  expected: dict[str, dict[str, str | None]]) -> None:
    acc = pair.emarsys.account
    want_customers = {ids[k] for k in ids if k.startswith("c:")}
    want_subs = {ids[k] for k in ids if expected[k].get(SUBSCRIBER_KEY) is not None}
    have_customers = set(_members(acc, CUSTOMERS_LIST))
    have_subs = set(_members(acc, SUBSCRIBERS_LIST))
    assert want_customers <= have_customers, \
        f"missing from customers list: {sorted(want_customers - have_customers)[:10]}"
    assert want_subs <= have_subs, \
        f"missing from subscribers list: {sorted(want_subs - have_subs)[:10]}"
    not_subs = {ids[k] for k in ids if expected[k].get(SUBSCRIBER_KEY) is None}
    assert not (have_subs & not_subs), "contacts without a subscriber id in subscribers list"
    guests = {ids[k] for k in ids if k.startswith("s:")}
    assert not (have_customers & guests), "guests in the customers list"


def _members(acc: Any, name: str) -> list[int]:
    try:
        return list(acc.list_members(name))
    except KeyError:
        return []


def count_requests(pair: SandboxPair, method: str, path_re: str) -> int:
    """Successful Emarsys requests of one kind so far."""
    return sum(1 for r in pair.emarsys.requests(method, path_re) if r.status == 200)


def upserted_keys(pair: SandboxPair) -> list[str]:
    """Every ``c:``/``s:`` key in every successful upsert keyed on our key fields, in order."""
    out: list[str] = []
    for r in pair.emarsys.requests("PUT", r"/contact/?$"):
        body = r.json() or {}
        kid = str(body.get("key_id"))
        if r.status != 200 or kid not in (CUSTOMER_KEY, SUBSCRIBER_KEY):
            continue
        prefix = "c" if kid == CUSTOMER_KEY else "s"
        out += [f"{prefix}:{c[kid]}" for c in body.get("contacts", [])]
    return out
