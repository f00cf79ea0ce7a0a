"""The client calls that find and apply deletions, against the simulators: the id-only
customer scan, the 404 that confirms a deletion, ``contact/delete`` and list removal;
and the merge of the two sorted id streams."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from magsync.emarsys.client import EmarsysClient
from magsync.emarsys.contacts import delete_contacts, remove_from_list
from magsync.errors import FatalRemoteError
from magsync.magento.customers import (
    CustomerId,
    customer_deleted,
    is_no_such_customer,
    iter_customer_ids,
)
from magsync.sandbox.emarsys.server import EmarsysSandbox
from magsync.sandbox.magento.server import MagentoSandbox
from magsync.state.deletions import SentCustomer
from magsync.sync.reconcile import merge_sorted
from tests.helpers.emarsys import make_client as emarsys_client
from tests.helpers.emarsys import make_config
from tests.helpers.magento import make_client

KEY = 7001  # the sandbox account's customer key field
SEARCH = r"/V1/customers/search$"


@pytest.fixture
def emarsys() -> Iterator[tuple[EmarsysSandbox, EmarsysClient]]:
    with EmarsysSandbox() as srv:
        client = emarsys_client(make_config(srv))  # type: ignore[arg-type]
        yield srv, client  # type: ignore[misc]
        client.close()


# -- the id-only scan ------------------------------------------------------------------------

def test_the_id_scan_reads_every_website_by_keyset_until_an_empty_page(
        magento_sandbox: MagentoSandbox) -> None:
    shop = magento_sandbox.shop
    gone = sorted(shop.customers)[10]
    shop.delete_customer(gone)
    client = make_client(magento_sandbox, page_size=7, website_ids=(1,))

    pages = list(iter_customer_ids(client))

    assert any(c["website_id"] == 2 for c in shop.customers.values())
    assert [c.id for page in pages for c in page] == sorted(shop.customers)  # website 2 too
    searches = magento_sandbox.requests("GET", SEARCH)
    assert len(searches) == -(-59 // 7) + 1  # the last request is the empty page
    assert all("fields=items%5Bid%5D" in r.query_string for r in searches)
    assert all("total_count" not in r.query_string for r in searches)


def test_the_id_scan_reads_is_subscribed_when_asked(magento_sandbox: MagentoSandbox) -> None:
    shop = magento_sandbox.shop
    client = make_client(magento_sandbox, page_size=50)

    found = {c.id: c.is_subscribed for page in iter_customer_ids(client,
                                                                 with_subscription=True)
             for c in page}

    assert found == {cid: shop.is_subscribed(c["email"]) for cid, c in shop.customers.items()}


# -- confirming a deletion ---------------------------------------------------------------------

def test_only_magentos_no_such_entity_404_confirms_a_deletion(
        magento_sandbox: MagentoSandbox) -> None:
    shop = magento_sandbox.shop
    client = make_client(magento_sandbox)
    gone, kept = max(shop.customers), min(shop.customers)
    shop.delete_customer(gone)

    assert customer_deleted(client, gone) is True
    assert customer_deleted(client, kept) is False
    magento_sandbox.fail_next(1, 404)  # a 404 with another message
    with pytest.raises(FatalRemoteError, match="not its own \"No such entity\""):
        customer_deleted(client, gone)


def _reply(status: int, body: Any) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return resp


@pytest.mark.parametrize(("body", "deleted"), [
    ({"message": "No such entity with %fieldName = %fieldValue",
      "parameters": {"fieldName": "customerId", "fieldValue": 12}}, True),
    ({"message": "No such entity with customerId = 12"}, True),  # already filled in
    ({"message": "No such entity with %fieldName = %fieldValue",
      "parameters": {"fieldName": "email", "fieldValue": "a@b"}}, False),
    ({"message": "Request does not match any route."}, False),
    (b"<html>Not Found</html>", False),
    ([], False),
])
def test_the_404_body_that_means_deleted(body: Any, deleted: bool) -> None:
    assert is_no_such_customer(_reply(404, body)) is deleted


# -- contact/delete and list removal --------------------------------------------------------------

def test_delete_contacts_batches_at_most_1000_values_and_returns_per_key_errors(
        emarsys: tuple[EmarsysSandbox, EmarsysClient]) -> None:
    srv, client = emarsys
    for value in range(1, 1201):
        srv.seed_contact({KEY: str(value)})
    srv.seed_contact({KEY: "5"})  # two contacts for key 5: 2010, none deleted

    calls = list(delete_contacts(client, KEY, [*range(1, 1201), 9999]))

    assert [len(batch) for batch, _ in calls] == [1000, 201]
    errors = {k: v for _, errs in calls for k, v in errs.items()}
    assert set(errors) == {"5", "9999"}
    assert list(errors["5"]) == ["2010"] and list(errors["9999"]) == ["2008"]
    assert len(srv.account.deleted) == 1199
    assert srv.find_contacts(KEY, "5") and not srv.find_contacts(KEY, "6")


def test_remove_from_list_takes_contacts_off_without_deleting_them(
        emarsys: tuple[EmarsysSandbox, EmarsysClient]) -> None:
    srv, client = emarsys
    ids = [srv.seed_contact({KEY: str(v)}) for v in (1, 2, 3)]
    list_id = srv.account.create_list("L", KEY, ["1", "2", "3"])[0]

    errors = remove_from_list(client, list_id, KEY, ["1", "2", "77"])

    assert list(errors) == ["77"] and "2008" in errors["77"]
    assert srv.account.list_members(list_id) == [ids[2]]
    assert all(srv.account.contact(i) for i in ids)


# -- merging the two sorted streams ------------------------------------------------------------

@given(st.sets(st.integers(1, 500)), st.sets(st.integers(1, 500)))
def test_merge_pairs_each_sent_id_with_magentos_or_none(magento: set[int],
                                                        sent: set[int]) -> None:
    pairs = list(merge_sorted((CustomerId(i) for i in sorted(magento)),
                              (SentCustomer(i, None) for i in sorted(sent))))

    assert [s.customer_id for s, _ in pairs] == sorted(sent)
    assert {s.customer_id for s, m in pairs if m is None} == sent - magento
    assert all(m.id == s.customer_id for s, m in pairs if m is not None)
