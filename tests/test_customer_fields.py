"""The ``fields`` filter magsync puts on customer searches (``customer_fields_filter``).

The filter may drop anything the sync does not read, and nothing it does: mapping a
customer cut down by Magento's filter (the sandbox reproduces Magento's FieldsFilter)
must give the same contact as mapping the whole customer.
"""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import parse_qsl

from hypothesis import given, settings
from hypothesis import strategies as st

from magsync.config import parse_config
from magsync.magento.subscribers import set_customer_subscription
from magsync.mapping import customer_fields_filter, extract_value
from magsync.sandbox.magento.fields import apply_filter, parse_fields
from magsync.sandbox.magento.server import MagentoSandbox
from magsync.sandbox.pair import SandboxPair
from tests.helpers.magento import make_client
from tests.helpers.mapping import make_customer

# Paths of every kind the config accepts, including structured attributes mapped whole.
PATHS = [
    "email", "firstname", "lastname", "dob", "gender", "group_id", "middlename", "taxvat",
    "default_billing", "addresses", "custom_attributes", "extension_attributes",
    "custom_attributes.loyalty_tier", "custom_attributes.missing",
    "extension_attributes.is_subscribed", "extension_attributes.company_note",
    "addresses.default_billing.city", "addresses.default_billing.street",
    "addresses.default_billing.region", "addresses.default_billing.country_id",
    "addresses.default_shipping.city", "addresses.default_shipping.postcode",
    "addresses.default_shipping.id", "addresses.default_shipping.default_billing",
]
# What the sync reads besides the mapping (identity, website, change stamp, hint).
ALWAYS = ["id", "email", "website_id", "updated_at", "extension_attributes.is_subscribed"]

customers = st.sampled_from([
    make_customer(updated_at="2026-11-01 10:00:00"),
    make_customer(addresses=[]),
    make_customer(addresses=None, default_billing=None),
    make_customer(default_billing=None, default_shipping="999"),  # stale pointers
    make_customer(extension_attributes={}),
    make_customer(custom_attributes=[]),
    {"id": 7, "email": "bare@example.com"},
])


def filtered(customer: dict[str, Any], spec_text: str) -> dict[str, Any]:
    spec = parse_fields(spec_text)
    assert spec is not None, f"Magento would answer [] to fields={spec_text}"
    reply = {"items": [customer], "search_criteria": {}, "total_count": 1}
    out = apply_filter(copy.deepcopy(reply), spec)
    assert set(out) == {"items"}
    return dict(out["items"][0])


@settings(max_examples=300, deadline=None)
@given(paths=st.lists(st.sampled_from(PATHS), unique=True), customer=customers)
def test_every_path_the_sync_reads_survives_the_filter(paths: list[str],
                                                       customer: dict[str, Any]) -> None:
    cut = filtered(customer, customer_fields_filter(paths))
    for path in [*paths, *ALWAYS]:
        assert extract_value(cut, path) == extract_value(customer, path), path


def test_the_filter_leaves_out_what_the_mapping_does_not_read() -> None:
    text = customer_fields_filter(["firstname", "addresses.default_billing.city"])
    cut = filtered(make_customer(updated_at="2026-11-01 10:00:00"), text)

    assert set(cut) == {"id", "email", "website_id", "updated_at", "firstname",
                        "default_billing", "extension_attributes", "addresses"}
    assert cut["extension_attributes"] == {"is_subscribed": True}
    assert [set(a) for a in cut["addresses"]] == [{"id", "default_billing", "city"}] * 2


def test_every_kind_of_config_path_makes_a_valid_filter() -> None:
    cfg = parse_config({
        "magento": {"base_url": "https://shop.example", "auth": {
            "method": "bearer", "token": "t"}},
        "emarsys": {"auth": {"method": "wsse", "username": "u", "secret": "s"}},
        "contacts": {"customers": {"fields": {p: 100 + i for i, p in enumerate(PATHS)
                                              if p != "email"}}},
    }, env={})
    text = customer_fields_filter(f.path for f in cfg.contacts.customers.fields)
    assert parse_fields(text) is not None


def test_customer_searches_carry_the_filter(pair: SandboxPair, magsync: Any) -> None:
    assert magsync("export-initial").code == 0

    searches = pair.magento.requests("GET", r"/customers/search$")
    assert searches
    for req in searches:
        spec = dict(parse_qsl(req.query_string)).get("fields", "")
        # the page reads, and the one-customer probe for the highest id
        assert spec.startswith("items[id,email,website_id,updated_at,") \
            or spec == "items[id]", req.query_string


def test_an_optin_write_reads_and_puts_the_whole_customer(
        magento_sandbox: MagentoSandbox) -> None:
    # The filter is for reading what to send; a PUT built from a filtered customer would
    # blank every attribute the filter left out.
    server = magento_sandbox
    before = server.shop.customer_dict(3)
    set_customer_subscription(make_client(server), 3, True)
    reads = server.requests("GET", r"/customers/3$")
    puts = server.requests("PUT", r"/customers/3$")
    assert reads and all("fields" not in r.query_string for r in reads)
    sent = json.loads(puts[-1].body)["customer"]
    assert {k: v for k, v in before.items() if k not in ("addresses", "updated_at",
                                                         "extension_attributes")} \
        == {k: v for k, v in sent.items() if k not in ("updated_at", "extension_attributes")}
