"""``?fields=`` partial replies: Magento's FieldsFilter, its quirks, and the sandbox's HTTP
face (signed with OAuth 1.0a, the filter part of the signed query)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import requests
from requests_oauthlib import OAuth1

from magsync.sandbox.magento.fields import (
    FieldsTypeError,
    apply_filter,
    parse_fields,
    requested_filter,
)
from magsync.sandbox.magento.server import MagentoSandbox

CUSTOMER: dict[str, Any] = {
    "id": 7, "email": "ann@example.com", "firstname": "Ann",
    "addresses": [
        {"id": 1, "city": "Lisbon", "country_id": "PT", "street": ["Rua A 1", "2 esq"],
         "region": {"region_code": "LI", "region": "Lisboa", "region_id": 9}},
        {"id": 2, "city": "Porto", "country_id": "PT", "street": ["Rua B 2"],
         "region": {"region_code": "PO", "region": "Porto", "region_id": 10}},
    ],
    "custom_attributes": [],
    "extension_attributes": {"is_subscribed": True},
}


# -- parse -----------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "spec"), [
    ("id", {"id": 1}),
    ("id,email", {"id": 1, "email": 1}),
    ("items[id,email,addresses[city,country_id]],total_count",
     {"items": {"id": 1, "email": 1, "addresses": {"city": 1, "country_id": 1}},
      "total_count": 1}),
    ("customer[id,email],addresses[city,postcode,region[region_code,region]]",
     {"customer": {"id": 1, "email": 1},
      "addresses": {"city": 1, "postcode": 1, "region": {"region_code": 1, "region": 1}}}),
    (",", {}),  # valid, and empty: every object filters down to []
    ("a,,b,", {"a": 1, "b": 1}),
    ("a[]", {"a": {}}),
    ("a[b],a", {"a": 1}),  # a later plain name replaces the nested filter
    ("a,[b]", {"a": {"b": 1}}),  # a bracket belongs to the last name read...
    ("a[b][c]", {"a": {"b": 1}, "b": {"c": 1}}),
    ("[b]", {"": {"b": 1}}),  # ...or to PHP's null, the key ""
    ("Field_9", {"Field_9": 1}),
])
def test_parse(text: str, spec: dict[str, Any]) -> None:
    assert parse_fields(text) == spec


@pytest.mark.parametrize("text", [
    "", "id email", "id;email", "a.b", "a-b", "a*", "prénom", "items[id,email]\n",
    "items[id", "a[b[c]", "a]", "a[b]]", "]", "[",
])
def test_parse_refuses_bad_characters_and_unbalanced_brackets(text: str) -> None:
    assert parse_fields(text) is None


# -- apply -----------------------------------------------------------------------------
def test_whole_value_keys_keep_their_value_in_the_objects_order() -> None:
    out = apply_filter(CUSTOMER, {"custom_attributes": 1, "addresses": 1, "id": 1,
                                  "nope": 1})
    assert list(out) == ["id", "addresses", "custom_attributes"]
    assert out["addresses"] == CUSTOMER["addresses"] and out["custom_attributes"] == []


def test_nested_objects_and_lists_of_objects() -> None:
    spec = parse_fields("id,addresses[city,region[region_code]],extension_attributes[x]")
    assert spec is not None
    assert apply_filter(CUSTOMER, spec) == {
        "id": 7,
        "addresses": [{"city": "Lisbon", "region": {"region_code": "LI"}},
                      {"city": "Porto", "region": {"region_code": "PO"}}],
        "extension_attributes": [],  # an object left without keys is PHP's empty array
    }


def test_a_list_reply_is_filtered_item_by_item() -> None:
    rows = [{"a": 1, "b": 2}, {"b": 3}]
    assert apply_filter(rows, {"b": 1}) == [{"b": 2}, {"b": 3}]
    assert apply_filter(rows, {"a": 1}) == [{"a": 1}, []]


def test_an_empty_list_under_a_nested_filter_becomes_null() -> None:
    customer = {**CUSTOMER, "addresses": [], "custom_attributes": []}
    out = apply_filter(customer, {"id": 1, "addresses": {"city": 1}, "custom_attributes": 1})
    assert out == {"id": 7, "addresses": None, "custom_attributes": []}
    assert apply_filter([], {"a": 1}) is None
    assert apply_filter({}, {"a": 1}) is None  # {} has no string key: a list to PHP
    assert apply_filter({"x": {}}, {"x": {"a": 1}}) == {"x": None}


def test_a_nested_filter_on_a_scalar_keeps_the_scalar() -> None:
    assert apply_filter(CUSTOMER, {"email": {"x": 1}, "id": {}}) == {
        "id": 7, "email": "ann@example.com"}


def test_an_empty_nested_filter_empties_objects() -> None:
    assert apply_filter(CUSTOMER, {"addresses": {}, "id": 1}) == {"id": 7, "addresses": [[], []]}
    assert apply_filter(CUSTOMER, {}) == []


def test_scalar_list_items_under_a_nested_filter_fail_as_php_does() -> None:
    spec = parse_fields("addresses[street[x]]")
    assert spec is not None
    with pytest.raises(FieldsTypeError):
        apply_filter(CUSTOMER, spec)
    assert apply_filter(CUSTOMER, {"addresses": {"street": 1}}) == {
        "addresses": [{"street": ["Rua A 1", "2 esq"]}, {"street": ["Rua B 2"]}]}


def test_php_integer_keys() -> None:
    # lists inside lists are intersected by index; keys 0..n-1 come out as a list
    assert apply_filter([[10, 11, 12]], {"0": 1, "1": 1}) == [[10, 11]]
    assert apply_filter([[10, 11, 12]], {"0": 1, "2": 1}) == [{"0": 10, "2": 12}]
    # an object with only integer keys is a list to PHP: each value is filtered
    assert apply_filter({"3": {"a": 1, "b": 2}}, {"a": 1}) == {"3": {"a": 1}}
    assert apply_filter({"0": {"a": 1, "b": 2}}, {"a": 1}) == [{"a": 1}]


def test_the_input_is_not_changed() -> None:
    before = copy.deepcopy(CUSTOMER)
    spec = parse_fields("id,addresses[city,region[region_code]],extension_attributes")
    assert spec is not None
    out = apply_filter(CUSTOMER, spec)
    out["addresses"][0]["city"] = "changed"
    assert before == CUSTOMER


@pytest.mark.parametrize(("query", "expected"), [
    ([], (False, None)),
    ([("fields", "")], (False, None)),
    ([("fields", "0")], (False, None)),  # falsy in PHP: no filtering at all
    ([("fields", "id")], (True, {"id": 1})),
    ([("fields", "id"), ("fields", "email")], (True, {"email": 1})),  # the last one wins
    ([("fields", "id email")], (True, None)),
    ([("fields[]", "id")], (True, None)),  # a PHP array: FieldsFilter answers []
    ([("fields[]", "id"), ("fields", "id")], (True, {"id": 1})),
    ([("fieldsx", "id"), ("field", "id")], (False, None)),
])
def test_requested_filter(query: list[tuple[str, str]], expected: Any) -> None:
    assert requested_filter(query) == expected


# -- over HTTP, signed -----------------------------------------------------------------
def auth(server: MagentoSandbox) -> OAuth1:
    return OAuth1(server.consumer_key, server.consumer_secret, server.access_token,
                  server.access_token_secret, signature_method="HMAC-SHA256")


def get(server: MagentoSandbox, path: str, params: dict[str, str] | None = None
        ) -> requests.Response:
    return requests.get(server.url + "/rest/all/V1" + path, params=params,
                        auth=auth(server), timeout=10)


PAGE = {"searchCriteria[pageSize]": "50", "searchCriteria[currentPage]": "1"}


def test_search_keeps_only_the_requested_keys(magento_sandbox: MagentoSandbox) -> None:
    full = get(magento_sandbox, "/customers/search", PAGE)
    cut = get(magento_sandbox, "/customers/search",
              {**PAGE, "fields": "items[id,email,addresses[city]],total_count"})
    assert cut.status_code == 200, cut.text
    assert cut.headers["Content-Type"] == "application/json"
    body, whole = cut.json(), full.json()
    assert list(body) == ["items", "total_count"]
    assert body["total_count"] == whole["total_count"] == 60
    assert len(body["items"]) == 50
    seen_null = False
    for item, customer in zip(body["items"], whole["items"], strict=True):
        assert item == {"id": customer["id"], "email": customer["email"],
                        "addresses": [{"city": a["city"]} for a in customer["addresses"]]
                        or None}
        seen_null = seen_null or item["addresses"] is None
    assert seen_null  # the seeded shop has customers without addresses


def test_search_filter_with_extension_attributes_and_whole_items(
        magento_sandbox: MagentoSandbox) -> None:
    whole = get(magento_sandbox, "/customers/search", PAGE).json()
    subs = get(magento_sandbox, "/customers/search",
               {**PAGE, "fields": "items[id,extension_attributes[is_subscribed]]"}).json()
    assert subs == {"items": [{"id": c["id"], "extension_attributes": c["extension_attributes"]}
                              for c in whole["items"]]}
    assert get(magento_sandbox, "/customers/search",
               {**PAGE, "fields": "items"}).json() == {"items": whole["items"]}
    echo = get(magento_sandbox, "/customers/search",
               {**PAGE, "fields": "search_criteria[page_size],x"}).json()
    assert echo == {"search_criteria": {"page_size": 50}}


def test_an_empty_page_under_a_nested_filter_is_null(magento_sandbox: MagentoSandbox) -> None:
    resp = get(magento_sandbox, "/customers/search",
               {"searchCriteria[pageSize]": "50", "searchCriteria[currentPage]": "9",
                "fields": "items[id],total_count"})
    assert resp.json() == {"items": None, "total_count": 60}


def test_an_invalid_filter_answers_an_empty_array(magento_sandbox: MagentoSandbox) -> None:
    for value in ("items[id", "items[id,e-mail]"):
        resp = get(magento_sandbox, "/customers/search", {**PAGE, "fields": value})
        assert resp.status_code == 200
        assert resp.text == "[]"


def test_get_customer_with_fields(magento_sandbox: MagentoSandbox) -> None:
    whole = get(magento_sandbox, "/customers/3").json()
    resp = get(magento_sandbox, "/customers/3", {"fields": "email,id"})
    assert resp.status_code == 200
    assert list(resp.json().items()) == [("id", 3), ("email", whole["email"])]
    assert get(magento_sandbox, "/customers/3", {"fields": "0"}).json() == whole
    assert get(magento_sandbox, "/customers/3", {"fields": "nope"}).text == "[]"


def test_errors_are_not_filtered(magento_sandbox: MagentoSandbox) -> None:
    plain = get(magento_sandbox, "/customers/999999")
    cut = get(magento_sandbox, "/customers/999999", {"fields": "id"})
    assert plain.status_code == cut.status_code == 404
    assert cut.json() == plain.json() == {
        "message": "No such entity with %fieldName = %fieldValue",
        "parameters": {"fieldName": "customerId", "fieldValue": 999999}}
    bad = get(magento_sandbox, "/customers/search",
              {"searchCriteria[pageSize]": "x", "fields": "items[id]"})
    assert bad.status_code == 400 and "message" in bad.json()


def test_scalar_list_items_under_a_filter_are_a_500(magento_sandbox: MagentoSandbox) -> None:
    resp = get(magento_sandbox, "/customers/1", {"fields": "addresses[street[x]]"})
    assert resp.status_code == 500
    assert resp.json()["message"].startswith("Internal Error. Details are available in")


def test_put_reply_is_filtered_after_the_save(magento_sandbox: MagentoSandbox) -> None:
    url = magento_sandbox.url + "/rest/all/V1/customers/4"
    resp = requests.put(url, params={"fields": "id,firstname,updated_at"},
                        json={"customer": {"firstname": "Zed"}},
                        auth=auth(magento_sandbox), timeout=10)
    assert resp.status_code == 200, resp.text
    assert list(resp.json()) == ["id", "updated_at", "firstname"]
    assert resp.json()["firstname"] == "Zed"
    assert magento_sandbox.shop.customers[4]["firstname"] == "Zed"
    invalid = requests.put(url, params={"fields": "id["}, json={"customer": {"lastname": "Q"}},
                           auth=auth(magento_sandbox), timeout=10)
    assert invalid.text == "[]"
    assert magento_sandbox.shop.customers[4]["lastname"] == "Q"


def test_emarsys_module_replies_are_filtered(magento_sandbox: MagentoSandbox) -> None:
    whole = get(magento_sandbox, "/emarsys/subscriptions", {"page_size": "5"}).json()
    cut = get(magento_sandbox, "/emarsys/subscriptions",
              {"page_size": "5", "fields": "subscriptions[subscriber_email],last_page"})
    assert cut.json() == {
        "subscriptions": [{"subscriber_email": s["subscriber_email"]}
                          for s in whole["subscriptions"]],
        "last_page": whole["last_page"]}
    post = requests.post(magento_sandbox.url + "/rest/all/V1/emarsys/subscriptions",
                         params={"fields": "errors[message]"},
                         json={"subscriptions": [{"subscriber_email": "nope"}]},
                         auth=auth(magento_sandbox), timeout=10)
    assert post.json() == {"errors": [{"message": "Invalid subscriber_email"}]}


def test_fields_is_part_of_the_signed_query(magento_sandbox: MagentoSandbox) -> None:
    session = requests.Session()
    req = requests.Request("GET", magento_sandbox.url + "/rest/all/V1/customers/1",
                           params={"fields": "id,email"}, auth=auth(magento_sandbox))
    prepared = session.prepare_request(req)
    assert "fields=id%2Cemail" in (prepared.url or "")
    prepared.url = (prepared.url or "").replace("fields=id%2Cemail", "fields=id")
    resp = session.send(prepared, timeout=10)
    assert resp.status_code == 401
    assert resp.json() == {"message": "The signature is invalid. Verify and try again."}


def test_filtered_json_keeps_non_ascii_text(magento_sandbox: MagentoSandbox) -> None:
    magento_sandbox.shop.edit_customer(2, firstname="Zoë")
    resp = get(magento_sandbox, "/customers/2", {"fields": "firstname"})
    assert resp.content == '{"firstname":"Zoë"}'.encode()  # UTF-8, not \u escapes
