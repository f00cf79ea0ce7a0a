"""Mapping: paths, converters, customers and guests -> contacts, build_mapping."""

from __future__ import annotations

import copy
from datetime import date, datetime, timezone
from typing import Any

import pytest

from magsync.errors import ConfigError
from magsync.mapping import (
    MappedField,
    build_mapping,
    convert_value,
    customer_contact,
    extract_value,
    guest_contact,
)
from magsync.model import Contact
from magsync.sandbox.emarsys.fields import COUNTRY
from tests.helpers.mapping import (
    CUSTOMER_KEY,
    DEFAULT_FIELDS,
    FIELD_IDS,
    SUBSCRIBER_KEY,
    account_choices,
    make_config,
    make_customer,
    make_mapping,
    row,
)

# -- paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "expected"), [
    ("email", "c5@example.com"),
    ("firstname", "Ana"),
    ("middlename", None),
    ("custom_attributes.loyalty_tier", "gold"),
    ("custom_attributes.missing", None),
    ("extension_attributes.is_subscribed", True),
    ("extension_attributes.missing", None),
    ("addresses.default_billing.city", "Lisbon"),
    ("addresses.default_billing.street", "Rua A, 2 Esq"),
    ("addresses.default_billing.region", "Lisboa"),
    ("addresses.default_billing.missing", None),
    ("addresses.default_shipping.city", "Porto"),
    ("addresses.default_shipping.country_id", "US"),
])
def test_extract_value_paths(path: str, expected: Any) -> None:
    assert extract_value(make_customer(), path) == expected


def test_default_address_falls_back_to_the_address_flag() -> None:
    customer = make_customer(default_billing=None, default_shipping="999")
    assert extract_value(customer, "addresses.default_billing.city") == "Lisbon"
    assert extract_value(customer, "addresses.default_shipping.city") == "Porto"


def test_default_address_pointer_wins_over_flags() -> None:
    customer = make_customer(default_billing="12")
    assert extract_value(customer, "addresses.default_billing.city") == "Porto"


@pytest.mark.parametrize("addresses", [[], None])
def test_no_addresses_gives_none(addresses: Any) -> None:
    customer = make_customer(addresses=addresses)
    assert extract_value(customer, "addresses.default_billing.city") is None


def test_street_skips_empty_lines_and_missing_blocks_are_none() -> None:
    customer = make_customer()
    customer["addresses"][0]["street"] = ["Rua A", "", None]
    assert extract_value(customer, "addresses.default_billing.street") == "Rua A"
    customer = make_customer(custom_attributes=None, extension_attributes=None)
    assert extract_value(customer, "custom_attributes.loyalty_tier") is None
    assert extract_value(customer, "extension_attributes.is_subscribed") is None


# -- converters -------------------------------------------------------------------------

M = make_mapping()
ENTRY = {e.convert: e for e in M.entries}


@pytest.mark.parametrize(("convert", "value", "expected"), [
    ("text", "Ana", "Ana"), ("text", 42, "42"), ("text", " x ", "x"), ("text", "", None),
    ("text", None, None), ("text", "   ", None), ("text", ["a", "b"], "a, b"),
    ("date", "1990-04-05", "1990-04-05"), ("date", "1990-04-05 13:14:15", "1990-04-05"),
    ("date", "1990-04-05T13:14:15+02:00", "1990-04-05"), ("date", date(2001, 2, 3), "2001-02-03"),
    ("date", datetime(2001, 2, 3, 4, tzinfo=timezone.utc), "2001-02-03"), ("date", None, None),
    ("gender", 1, "1"), ("gender", 2, "2"), ("gender", "2", "2"), ("gender", 3, None),
    ("gender", 0, None), ("gender", 7, None), ("gender", None, None),
    ("country", "PT", "129"), ("country", "us", "219"), ("country", "NL", "45"),
    ("country", "", None), ("country", None, None),
    ("choice", "Gold", "1"), ("choice", "gold", "1"), ("choice", "SILVER ", "2"),
    ("choice", "bronze  plus", "3"), ("choice", None, None),
])
def test_converters(convert: str, value: Any, expected: Any) -> None:
    assert convert_value(value, ENTRY[convert]) == expected


@pytest.mark.parametrize(("convert", "value", "message"), [
    ("country", "XK", "unknown country 'XK'"), ("country", "Portugal", "unknown country"),
    ("date", "05/04/1990", "not a date"), ("date", "0000-00-00", "not a date"),
    ("choice", "Platinum", "no choice 'Platinum' in field 7100"),
    ("text", {"a": 1}, "structure"),
])
def test_unconvertible_values_raise(convert: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        convert_value(value, ENTRY[convert])


def test_gender_on_a_custom_choice_field_uses_its_labels() -> None:
    entry = MappedField("gender", 7200, "gender", {"1": "20", "2": "21"})
    assert convert_value(1, entry) == "20"
    m = build_mapping(make_config({"gender": {"field": 7200, "convert": "gender"}}),
                      FIELD_IDS, {7200: [("21", "Female"), ("20", "Male")]})
    assert m.entries[0].choices == {"1": "20", "2": "21"}


# -- contacts ---------------------------------------------------------------------------


def test_customer_contact_with_linked_subscriber() -> None:
    c = customer_contact(make_customer(), [row(9, status=1)], M)
    assert c.key == "c:5" and c.key_field == CUSTOMER_KEY and c.key_value == "5"
    assert c.customer_id == 5 and c.subscriber_id == 9
    assert c.fields == {
        "1": "Ana", "2": "Lopes", "4": "1990-04-05", "5": "2", "11": "Lisbon",
        "12": "Lisboa", "10": "Main St 1", "14": "129", "7100": "1", "18": "VIP",
        "3": "c5@example.com", "7001": "5", "7002": "9", "31": 1}
    assert c.optin == 1
    assert c.lists == {"customers", "subscribers"}
    assert c.problems == ()
    assert c.key_fields == (CUSTOMER_KEY, SUBSCRIBER_KEY)


@pytest.mark.parametrize(("status", "optin"), [(1, 1), (2, None), (3, 2), (4, None)])
def test_optin_table_for_customers(status: int, optin: int | None) -> None:
    c = customer_contact(make_customer(), [row(status=status)], M)
    assert c.optin == optin
    assert c.fields.get("31") == optin
    assert ("31" in c.fields) == (optin is not None)


@pytest.mark.parametrize(("status", "optin"), [(1, 1), (2, None), (3, 2), (4, None)])
def test_optin_table_for_guests(status: int, optin: int | None) -> None:
    c = guest_contact(row(9, cid=0, status=status), M)
    assert c.optin == optin and c.fields.get("31") == optin


def test_customer_without_subscriber_row_is_opted_out() -> None:
    c = customer_contact(make_customer(), [], M)
    assert c.optin == 2 and c.fields["31"] == 2
    assert c.subscriber_id is None and "7002" not in c.fields
    assert c.lists == {"customers"}


def test_subscriber_row_of_the_customers_website_is_chosen() -> None:
    rows = [row(9, website=2, status=3), row(10, website=1, status=1)]
    c = customer_contact(make_customer(), rows, M)
    assert c.subscriber_id == 10 and c.optin == 1
    only_other = customer_contact(make_customer(), [row(9, website=2, status=1)], M)
    assert only_other.subscriber_id is None and only_other.optin == 2


def test_rows_of_other_customers_are_ignored() -> None:
    c = customer_contact(make_customer(), [row(9, cid=6)], M)
    assert c.subscriber_id is None


@pytest.mark.parametrize(("flag", "optin"), [(True, 1), (False, 2), (None, None)])
def test_subscribers_none_uses_is_subscribed(flag: bool | None, optin: int | None) -> None:
    m = make_mapping(subscribers="none")
    customer = make_customer(extension_attributes={"is_subscribed": flag})
    c = customer_contact(customer, [row(9)], m)
    assert c.optin == optin and c.subscriber_id is None and "7002" not in c.fields
    assert c.lists == {"customers"}


def test_guest_contact_sends_email_optin_and_subscriber_key_only() -> None:
    c = guest_contact(row(9, cid=0, status=1), M)
    assert c == Contact(
        key="s:9", key_field=SUBSCRIBER_KEY, key_value="9", customer_id=None, subscriber_id=9,
        email="s9@example.com", fields={"3": "s9@example.com", "7002": "9", "31": 1},
        optin=1, lists=frozenset({"subscribers"}), key_fields=(CUSTOMER_KEY, SUBSCRIBER_KEY))


def test_unconvertible_value_is_left_out_and_reported() -> None:
    customer = make_customer()
    customer["addresses"][0]["country_id"] = "XK"
    c = customer_contact(customer, [], M)
    assert "14" not in c.fields and c.fields["11"] == "Lisbon"
    assert c.problems == ("addresses.default_billing.country_id: unknown country 'XK'",)


def test_empty_values_are_present_as_none() -> None:
    c = customer_contact(make_customer(firstname="", dob=None, addresses=[]), [], M)
    assert c.fields["1"] is None and c.fields["4"] is None and c.fields["11"] is None
    assert c.problems == ()


def test_email_mapped_elsewhere_moves_the_email_field() -> None:
    m = make_mapping({"email": 7300, "firstname": 1})
    assert m.email_field == 7300
    c = customer_contact(make_customer(), [], m)
    assert c.fields["7300"] == "c5@example.com" and "3" not in c.fields
    assert guest_contact(row(9, cid=0), m).fields["7300"] == "s9@example.com"


def test_mapping_does_not_mutate_its_input() -> None:
    customer, rows = make_customer(), [row(9)]
    before = copy.deepcopy(customer)
    customer_contact(customer, rows, M)
    assert customer == before and rows == [row(9)]


# -- build_mapping ----------------------------------------------------------------------


def test_build_mapping_resolves_ids_and_field_ids() -> None:
    assert M.customer_key_field == CUSTOMER_KEY and M.subscriber_key_field == SUBSCRIBER_KEY
    assert M.email_field == 3 and M.on_empty == "skip" and M.subscribers_mode == "emarsys-module"
    assert M.field_ids() == {"1", "2", "3", "4", "5", "10", "11", "12", "14", "18", "31",
                             "7001", "7002", "7100"}
    assert M.country_unmatched == ()


def test_hash_is_stable_and_follows_the_mapping() -> None:
    assert make_mapping().hash == M.hash
    reordered = dict(reversed(list(DEFAULT_FIELDS.items())))
    assert make_mapping(reordered).hash == M.hash
    assert make_mapping({**DEFAULT_FIELDS, "middlename": 7400}).hash != M.hash
    assert make_mapping({**DEFAULT_FIELDS, "firstname": 7400}).hash != M.hash
    assert make_mapping({**DEFAULT_FIELDS, "dob": 4}).hash != M.hash
    assert make_mapping(on_empty="clear").hash == M.hash


@pytest.mark.parametrize(("fields", "message"), [
    ({"firstname": "No such field"}, "'No such field' does not exist"),
    ({"firstname": 31}, "opt-in field"),
    ({"firstname": 7001}, "customer key field"),
    ({"firstname": "Loyalty tier", "lastname": 7100}, "already mapped"),
    ({"lastname": {"field": 7500, "convert": "choice"}}, "no choice list"),
])
def test_build_mapping_rejects_bad_entries(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_mapping(fields)
    assert any(message in p for p in info.value.problems), info.value.problems


def test_missing_key_field_is_reported() -> None:
    with pytest.raises(ConfigError) as info:
        build_mapping(make_config({}), {"Magento Customer ID": 7001}, {})
    assert info.value.problems == [
        "emarsys.key_fields.subscriber_id: Emarsys field 'Magento Subscriber ID' does not "
        "exist (run `magsync fields --create-missing`)"]


def test_country_labels_that_fit_no_country_are_listed() -> None:
    choices = {**account_choices(), COUNTRY: [("1", "Portugal"), ("2", "Narnia")]}
    m = build_mapping(make_config(), FIELD_IDS, choices)
    assert m.country_unmatched == ("Narnia",)
    entry = next(e for e in m.entries if e.convert == "country")
    assert convert_value("PT", entry) == "1"
    with pytest.raises(ValueError, match="unknown country 'US'"):
        convert_value("US", entry)
