"""Emarsys fields, contact lists, upsert and getdata against the sandbox (real HTTP)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from magsync.emarsys.client import EmarsysClient
from magsync.emarsys.contacts import (
    GetDataResult,
    add_to_list,
    find_list,
    find_or_create_list,
    get_data,
    merge_duplicates,
    split_batches,
    upsert_batch,
)
from magsync.emarsys.fields import (
    create_field,
    find_field,
    list_fields,
    read_choices,
    report_fields,
    resolve_field,
)
from magsync.errors import RemoteConfigError
from magsync.sandbox.emarsys.server import EmarsysSandbox
from tests.helpers.emarsys import make_client, make_config

CUST = 7001  # the sandbox's "Magento Customer ID"


@pytest.fixture()
def sandbox() -> Iterator[EmarsysSandbox]:
    with EmarsysSandbox() as srv:
        yield srv  # type: ignore[misc]


@pytest.fixture()
def client(sandbox: EmarsysSandbox) -> Iterator[EmarsysClient]:
    c = make_client(make_config(sandbox))
    yield c
    c.close()


# -- fields ------------------------------------------------------------------------------

def test_field_resolution_by_name_and_id(client: EmarsysClient,
                                         sandbox: EmarsysSandbox) -> None:
    assert resolve_field(client, "magento customer id").id == CUST
    assert resolve_field(client, 3).name == "E-Mail"
    assert resolve_field(client, "31").type == "singlechoice"
    with pytest.raises(RemoteConfigError, match="'Loyalty Tier' does not exist") as info:
        resolve_field(client, "Loyalty Tier")
    assert "--create-missing" in str(info.value) and info.value.exit_code == 2
    with pytest.raises(RemoteConfigError, match="id 999999 does not exist"):
        resolve_field(client, 999999)
    list_fields(client)
    assert len(sandbox.requests("GET", r"/field$")) == 1  # cached per client


def test_create_field_and_existing_name(client: EmarsysClient) -> None:
    made = create_field(client, "Loyalty Tier", "shorttext")
    assert made.type == "shorttext"
    assert find_field(client, "loyalty tier") == made  # cache refreshed
    again = create_field(client, "LOYALTY TIER", "shorttext")  # 9002 -> read back
    assert again.id == made.id


def test_read_choices(client: EmarsysClient) -> None:
    labels = {c.label: c.id for c in read_choices(client, 5)}
    assert labels == {"Male": 1, "Female": 2}


# -- upsert ------------------------------------------------------------------------------

def test_upsert_creates_then_updates(client: EmarsysClient, sandbox: EmarsysSandbox) -> None:
    contacts = [{str(CUST): str(i), "3": f"c{i}@example.com", "31": 1} for i in range(3)]
    first = upsert_batch(client, CUST, contacts)
    assert len(first.ids) == 3 and first.errors == {}
    second = upsert_batch(client, CUST, [{str(CUST): "1", "1": "Ann"}], create=False)
    assert second.ids == [first.ids[1]] and second.errors == {}
    assert sandbox.requests("PUT", r"/contact/?$")[0].query_string == "create_if_not_exists=1"
    assert sandbox.requests("PUT", r"/contact/?$")[1].query_string == ""


def test_upsert_returns_per_contact_errors(client: EmarsysClient,
                                           sandbox: EmarsysSandbox) -> None:
    sandbox.inject_contact_error(CUST, "2", 2010, "More than one contact found")
    result = upsert_batch(client, CUST, [{str(CUST): "1", "3": "a@example.com"},
                                         {str(CUST): "2", "3": "b@example.com"}])
    assert len(result.ids) == 1
    assert result.errors == {"2": {"2010": "More than one contact found"}}
    assert result.failed(2) and not result.failed("1")
    missing = upsert_batch(client, CUST, [{str(CUST): "404"}], create=False)
    assert list(missing.errors["404"]) == ["2008"]


def test_upsert_duplicate_keys_sent_once_last_wins(client: EmarsysClient,
                                                   sandbox: EmarsysSandbox) -> None:
    upsert_batch(client, CUST, [{str(CUST): "5", "1": "Old", "3": "x@example.com"},
                                {str(CUST): "5", "1": "New"}])
    body = sandbox.requests("PUT", r"/contact/?$")[0].json()
    assert body["contacts"] == [{str(CUST): "5", "1": "New", "3": "x@example.com"}]


def test_upsert_with_contact_list(client: EmarsysClient, sandbox: EmarsysSandbox) -> None:
    lst = find_or_create_list(client, "Magento customers", CUST)
    upsert_batch(client, CUST, [{str(CUST): "8", "3": "l@example.com"}],
                 contact_list_id=lst.id)
    assert len(sandbox.account.list_members(lst.id)) == 1


def test_unindexed_key_field_raises_remote_config_error(sandbox: EmarsysSandbox) -> None:
    client = make_client(make_config(sandbox))
    field = create_field(client, "Shop Number", "numeric")
    with pytest.raises(RemoteConfigError) as info:
        upsert_batch(client, field.id, [{str(field.id): "1", "3": "i@example.com"}])
    msg = str(info.value)
    assert "Emarsys must index field 'Shop Number'" in msg
    assert "ask Emarsys support to index it" in msg and info.value.exit_code == 2


def test_invalid_key_field_raises_remote_config_error(client: EmarsysClient) -> None:
    with pytest.raises(RemoteConfigError, match="does not accept"):
        upsert_batch(client, 987654, [{"987654": "1"}])


# -- split_batches -------------------------------------------------------------------------

def test_split_by_count() -> None:
    contacts = [{"k": str(i)} for i in range(25)]
    batches = list(split_batches(contacts, "k", batch_size=10))
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [c["k"] for b in batches for c in b] == [str(i) for i in range(25)]


def test_split_by_bytes() -> None:
    contacts = [{"k": str(i), "t": "x" * 1000} for i in range(50)]
    batches = list(split_batches(contacts, "k", batch_size=1000, max_bytes=10_000))
    assert len(batches) > 5
    for b in batches:
        body = json.dumps({"key_id": "k", "contacts": b})
        assert len(body) <= 10_000
    assert sum(len(b) for b in batches) == 50


def test_split_merges_duplicates_within_batch() -> None:
    contacts = [{"k": "1", "a": "x"}, {"k": "2"}, {"k": "1", "b": "y"}, {"k": "1", "a": "z"}]
    assert list(split_batches(contacts, "k", 10)) == [
        [{"k": "1", "a": "z", "b": "y"}, {"k": "2"}]]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 15), st.text(max_size=40)), max_size=60),
       st.integers(1, 7), st.integers(60, 400))
def test_split_properties(items: list[tuple[int, str]], size: int, max_bytes: int) -> None:
    contacts = [{"k": str(k), "v": v} for k, v in items]
    batches = list(split_batches(contacts, "k", size, max_bytes + 1024))
    for b in batches:
        keys = [c["k"] for c in b]
        assert len(keys) == len(set(keys)) and 1 <= len(b) <= size
        if len(b) > 1:
            assert len(json.dumps(b)) <= max_bytes + 1024
    last = {str(k): v for k, v in items}
    final = {c["k"]: c["v"] for b in batches for c in b}
    assert final == last  # every key survives; the latest value is the one kept last


def test_merge_duplicates_keeps_keyless() -> None:
    assert merge_duplicates([{"k": ""}, {"k": "1"}, {"k": "1", "x": 2}], "k") == [
        {"k": "1", "x": 2}, {"k": ""}]


# -- lists ------------------------------------------------------------------------------------

def test_list_find_or_create(client: EmarsysClient, sandbox: EmarsysSandbox) -> None:
    assert find_list(client, "Magento subscribers") is None
    made = find_or_create_list(client, "Magento subscribers", 7002)
    assert made.created
    again = find_or_create_list(client, "magento subscribers", 7002)
    assert again.id == made.id and not again.created
    assert len(sandbox.requests("POST", r"/contactlist/?$")) == 1


def test_add_to_list_in_chunks(client: EmarsysClient, sandbox: EmarsysSandbox) -> None:
    upsert_batch(client, CUST, [{str(CUST): str(i)} for i in range(7)])
    lst = find_or_create_list(client, "Magento customers", CUST)
    inserted, errors = add_to_list(client, lst.id, CUST, [*range(7), 99], chunk=3)
    assert inserted == 7 and list(errors) == ["99"]
    calls = sandbox.requests("POST", r"/contactlist/\d+/add")
    assert [len(c.json()["external_ids"]) for c in calls] == [3, 3, 2]


# -- getdata ----------------------------------------------------------------------------------

def test_get_data_in_chunks(client: EmarsysClient, sandbox: EmarsysSandbox) -> None:
    upsert_batch(client, 3, [{"3": f"g{i}@example.com", "31": 1} for i in range(5)])
    res = get_data(client, 3, [f"g{i}@example.com" for i in range(5)] + ["no@example.com"],
                   [31, CUST], chunk=2)
    assert len(res.result) == 5 and all(r["31"] in ("1", 1) for r in res.result)
    assert [e["key"] for e in res.errors] == ["no@example.com"]
    bodies = [r.json() for r in sandbox.requests("POST", r"/contact/getdata")]
    assert [len(b["keyValues"]) for b in bodies] == [2, 2, 2]
    assert bodies[0]["keyId"] == "3" and bodies[0]["fields"] == [31, CUST]
    nothing = get_data(client, 3, ["none@example.com"], [31])
    assert nothing.result == [] and len(nothing.errors) == 1


def test_get_data_errors_by_key(client: EmarsysClient, sandbox: EmarsysSandbox) -> None:
    upsert_batch(client, 3, [{"3": "once@example.com"}])
    twins = [sandbox.seed_contact({3: "Twin@Example.com"}) for _ in range(2)]
    res = get_data(client, 3, ["once@example.com", "twin@example.com", "no@example.com"],
                   [31])
    assert len(res.result) == 1 and twins
    assert set(res.errors_by_key()) == {"twin@example.com", "no@example.com"}
    assert list(res.errors_by_key(ignore=["2008"])) == ["twin@example.com"]
    assert "2010" in res.errors_by_key()["twin@example.com"]
    # keys are lower-cased on request (emails are compared folded)
    mapped = GetDataResult(errors=[{"key": "A@X.org", "errorCode": "2010",
                                    "errorMsg": "several"}])
    assert mapped.errors_by_key(fold=True) == {"a@x.org": {"2010": "several"}}


# -- magsync fields ----------------------------------------------------------------------------

def test_report_fields_and_create_missing(sandbox: EmarsysSandbox) -> None:
    cfg = make_config(sandbox, fields={
        "firstname": "First Name", "dob": {"field": 4, "convert": "date"},
        "custom_attributes.tier": {"field": "Loyalty Tier", "type": "longtext"},
        "taxvat": "Tax Number", "gender": {"field": 46, "convert": "gender"},
        "lastname": 4242},
        key_fields={"customer_id": "Shop Customer", "subscriber_id": 7002})
    client = make_client(cfg)
    rows = {r.attribute: r for r in report_fields(cfg, client)}
    assert rows["firstname"].exists and rows["firstname"].field.id == 1  # type: ignore[union-attr]
    assert rows["dob"].exists and not rows["dob"].problem
    assert not rows["custom_attributes.tier"].exists
    assert "--create-missing" in rows["taxvat"].problem
    assert "cannot be created" in rows["lastname"].problem
    assert rows["extension_attributes.is_subscribed"].field.id == 31  # type: ignore[union-attr]
    assert rows["email"].field.id == 3  # type: ignore[union-attr]
    assert not rows["id (customer id key)"].exists
    assert sandbox.requests("POST", r"/field/?$") == []

    rows = {r.attribute: r for r in report_fields(cfg, client, create_missing=True)}
    tier = rows["custom_attributes.tier"]
    assert tier.created and tier.field.type == "longtext"  # type: ignore[union-attr]
    assert rows["taxvat"].created and rows["taxvat"].field.type == "shorttext"  # type: ignore[union-attr]
    key = rows["id (customer id key)"]
    assert key.created and key.field.type == "numeric"  # type: ignore[union-attr]
    assert not rows["lastname"].exists and rows["lastname"].problem
    assert rows["subscriber_id (subscriber id key)"].field.id == 7002  # type: ignore[union-attr]
    assert len(sandbox.requests("POST", r"/field/?$")) == 3
    fresh = make_client(cfg)
    assert find_field(fresh, "Shop Customer") is not None
