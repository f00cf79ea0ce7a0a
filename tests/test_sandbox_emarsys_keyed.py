"""The Emarsys sandbox: calls keyed on values that may name several contacts (getdata,
checkids), deleting contacts, removing from lists, and deleted lists."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from magsync.sandbox.emarsys.server import EmarsysSandbox
from tests.test_sandbox_emarsys_contacts import CUSTOMER, UPSERT, Api, FakeClock


@pytest.fixture
def sb() -> Iterator[EmarsysSandbox]:
    with EmarsysSandbox(clock=FakeClock()) as server:
        assert isinstance(server, EmarsysSandbox)
        yield server


@pytest.fixture
def api(sb: EmarsysSandbox) -> Api:
    return Api(sb)


def control(sb: EmarsysSandbox, method: str, path: str, body: Any = None
            ) -> requests.Response:
    return requests.request(method, f"{sb.url}/_sandbox{path}", json=body, timeout=10)


def getdata(api: Api, key_id: str, values: list[str]) -> dict[str, Any]:
    status, body = api.call("POST", "/contact/getdata",
                            {"keyId": key_id, "keyValues": values, "fields": [31, 7001]})
    assert status == 200, body
    data: dict[str, Any] = body["data"]
    return data


# -- getdata and checkids on a non-unique key ------------------------------------------------
def test_getdata_answers_a_key_with_several_contacts_with_2010(sb: EmarsysSandbox,
                                                               api: Api) -> None:
    sb.seed_contact({"3": "dup@example.com", "31": 1})
    sb.seed_contact({"3": "DUP@example.com", CUSTOMER: 9})  # e-mail matching ignores case
    one = sb.seed_contact({"3": "one@example.com", CUSTOMER: 4})
    data = getdata(api, "3", ["dup@example.com", "one@example.com"])
    assert data["result"] == [{"id": str(one), "31": None, "7001": "4"}]
    assert data["errors"] == [{
        "key": "dup@example.com", "errorCode": "2010",
        "errorMsg": "More contacts found with the external identifier: 3 - dup@example.com"}]
    assert getdata(api, "3", ["dup@example.com"])["result"] is False


def test_a_switch_makes_getdata_return_every_row_instead(sb: EmarsysSandbox, api: Api) -> None:
    a = sb.seed_contact({"3": "dup@example.com"})
    b = sb.seed_contact({"3": "dup@example.com"})
    assert control(sb, "GET", "/emarsys-switches").json() == {"getdata_multi": "error"}
    r = control(sb, "POST", "/emarsys-switches", {"getdata_multi": "rows"})
    assert r.json() == {"getdata_multi": "rows"}
    data = getdata(api, "3", ["dup@example.com"])
    assert [row["id"] for row in data["result"]] == [str(a), str(b)]
    assert data["errors"] == []
    assert control(sb, "POST", "/emarsys-switches", {"getdata_multi": "x"}).status_code == 400
    control(sb, "POST", "/emarsys-switches", {"getdata_multi": "error"})
    assert getdata(api, "3", ["dup@example.com"])["errors"][0]["errorCode"] == "2010"


def test_checkids_lists_every_id_only_when_asked(sb: EmarsysSandbox, api: Api) -> None:
    a = sb.seed_contact({"3": "dup@example.com"})
    b = sb.seed_contact({"3": "dup@example.com"})
    one = sb.seed_contact({"3": "one@example.com"})
    values = ["dup@example.com", "one@example.com", "none@example.com"]
    status, body = api.call("POST", "/contact/checkids", {"key_id": "3", "external_ids": values})
    assert status == 200
    assert body["data"]["ids"] == {"one@example.com": str(one)}
    assert {k: list(v) for k, v in body["data"]["errors"].items()} == {
        "dup@example.com": ["2010"], "none@example.com": ["2008"]}
    _, body = api.call("POST", "/contact/checkids", {"key_id": "3", "external_ids": values,
                                                     "get_multiple_ids": True})
    assert body["data"]["ids"] == {"dup@example.com": [str(a), str(b)],
                                   "one@example.com": [str(one)]}
    assert list(body["data"]["errors"]) == ["none@example.com"]
    status, body = api.call("POST", "/contact/checkids", {
        "key_id": "3", "external_ids": [str(i) for i in range(1001)]})
    assert (status, body["replyCode"]) == (400, 1000)


# -- contact/delete --------------------------------------------------------------------------
def delete(api: Api, key_id: str, values: list[Any]) -> tuple[int, Any]:
    return api.call("POST", "/contact/delete", {"key_id": key_id, key_id: values})


def test_delete_removes_exactly_one_match_per_value(sb: EmarsysSandbox, api: Api) -> None:
    gone = sb.seed_contact({CUSTOMER: 12, "3": "twelve@example.com"})
    twins = [sb.seed_contact({CUSTOMER: 14}), sb.seed_contact({CUSTOMER: 14})]
    list_id, _ = sb.account.create_list("Magento customers", CUSTOMER, ["12"])
    status, body = delete(api, CUSTOMER, ["12", "13", "14"])
    assert (status, body["replyCode"]) == (200, 0)
    assert body["data"]["deleted_contacts"] == 1
    errors = body["data"]["errors"]
    assert errors["13"] == {"2008": "No contact found with the external id: 7001 - 13"}
    assert list(errors["14"]) == ["2010"]
    assert gone not in sb.account.contacts and all(t in sb.account.contacts for t in twins)
    assert sb.account.list_members(list_id) == []
    assert sb.find_contacts(3, "twelve@example.com") == []
    assert getdata(api, CUSTOMER, ["12"])["errors"][0]["errorCode"] == "2008"
    _, body = delete(api, CUSTOMER, ["12"])  # already gone
    assert body["data"] == {"deleted_contacts": 0, "errors": {"12": {
        "2008": "No contact found with the external id: 7001 - 12"}}}


def test_deletions_are_logged_with_the_request_that_made_them(sb: EmarsysSandbox,
                                                              api: Api) -> None:
    cid = sb.seed_contact({CUSTOMER: 12, "3": "twelve@example.com", "31": 1})
    delete(api, CUSTOMER, [12])
    [request] = sb.requests("POST", r"/contact/delete$")
    log = control(sb, "GET", "/deleted").json()
    assert log == [{"seq": request.seq, "id": str(cid), "key_id": CUSTOMER, "key_value": "12",
                    "fields": {"7001": "12", "3": "twelve@example.com", "31": "1"}}]
    one = control(sb, "GET", f"/contacts/{cid}")
    assert one.status_code == 404 and one.json()["deleted"] == log
    assert control(sb, "GET", "/state").json()["deleted"] == 1
    # a contact deleted and recreated is a new contact with a new internal id
    created = api.upsert([{CUSTOMER: "12"}])["ids"]
    assert isinstance(created[0], int) and created[0] != cid


def test_delete_by_internal_id_and_refusals(sb: EmarsysSandbox, api: Api) -> None:
    cid = sb.seed_contact({"3": "a@example.com"})
    status, body = delete(api, "id", [str(cid)])
    assert (status, body["data"]["deleted_contacts"]) == (200, 1)
    status, body = delete(api, CUSTOMER, [str(i) for i in range(1001)])
    assert (status, body["replyCode"]) == (400, 1000)
    status, body = api.call("POST", "/contact/delete", {"key_id": CUSTOMER, "values": ["1"]})
    assert status == 400 and body["replyCode"] != 0
    _, body = delete(api, "99999", ["1"])
    assert list(body["data"]["errors"]["1"]) == ["2004"]


def test_an_unindexed_key_cannot_delete() -> None:
    with EmarsysSandbox(clock=FakeClock(), indexed_fields=[7002]) as sb:
        sb.seed_contact({CUSTOMER: 1})
        _, body = delete(Api(sb), CUSTOMER, ["1"])
        assert body["data"]["deleted_contacts"] == 0
        assert list(body["data"]["errors"]["1"]) == ["2015"]
        assert len(sb.account.contacts) == 1


# -- removing from a list ----------------------------------------------------------------------
def test_list_removal_keeps_the_contact(sb: EmarsysSandbox, api: Api) -> None:
    ids = [int(i) for i in api.upsert([{CUSTOMER: str(n)} for n in (1, 2, 3)])["ids"]]
    list_id, _ = sb.account.create_list("Magento customers", CUSTOMER, ["1", "2", "3"])
    status, body = api.call("POST", f"/contactlist/{list_id}/delete",
                            {"key_id": CUSTOMER, "external_ids": ["1", "404"]})
    assert status == 200
    assert body["data"]["deleted_contacts"] == 1
    assert list(body["data"]["errors"]["404"]) == ["2008"]
    assert sb.account.list_members(list_id) == ids[1:]
    assert ids[0] in sb.account.contacts
    _, body = api.call("POST", f"/contactlist/{list_id}/delete",
                       {"key_id": CUSTOMER, "external_ids": ["1"]})
    assert body["data"] == {"deleted_contacts": 0, "errors": {}}  # not a member any more
    status, body = api.call("POST", f"/contactlist/{list_id}/delete",
                            {"key_id": CUSTOMER, "external_ids": list(range(10_001))})
    assert (status, body["replyCode"]) == (400, 3002)
    status, body = api.call("POST", "/contactlist/404/delete",
                            {"key_id": CUSTOMER, "external_ids": ["2"]})
    assert (status, body["replyCode"]) == (404, 3004)


# -- lists on the upsert, and a list deleted in Emarsys ------------------------------------------
def test_a_deleted_list_fails_the_upsert_whole_with_2020(sb: EmarsysSandbox, api: Api) -> None:
    list_id, _ = sb.account.create_list("Magento customers")
    api.upsert([{CUSTOMER: "1"}], contact_list_id=list_id)
    assert len(sb.account.list_members(list_id)) == 1
    assert control(sb, "DELETE", f"/lists/{list_id}").json() == {"deleted": list_id}
    assert control(sb, "DELETE", f"/lists/{list_id}").status_code == 404
    _, body = api.call("GET", "/contactlist")
    assert body["data"] == []
    status, body = api.call("PUT", UPSERT, {"key_id": CUSTOMER, "contact_list_id": list_id,
                                            "contacts": [{CUSTOMER: "2"}]})
    assert (status, body["replyCode"]) == (400, 2020)
    assert sb.find_contacts(7001, 2) == []  # nothing of the batch was written
    status, body = api.call("POST", f"/contactlist/{list_id}/add",
                            {"key_id": CUSTOMER, "external_ids": ["1"]})
    assert (status, body["replyCode"]) == (404, 3004)
    # recreated by name: a new id, and the upsert works with it
    _, body = api.call("POST", "/contactlist", {"name": "Magento customers"})
    new_id = body["data"]["id"]
    assert new_id != list_id
    api.upsert([{CUSTOMER: "2"}], contact_list_id=new_id)
    assert sb.account.list_members(new_id) == sb.find_contacts(7001, 2)


def test_the_upsert_adds_to_the_list_only_the_contacts_it_wrote(sb: EmarsysSandbox,
                                                                api: Api) -> None:
    list_id, _ = sb.account.create_list("Magento customers")
    sb.inject_contact_error(CUSTOMER, "2", 2007, "Invalid value")
    data = api.upsert([{CUSTOMER: "1"}, {CUSTOMER: "2"}], contact_list_id=str(list_id))
    assert list(data["errors"]) == ["2"]
    assert sb.account.list_members(list_id) == sb.find_contacts(7001, 1)
    for bad in ("abc", True, -1):
        status, body = api.call("PUT", UPSERT, {"key_id": CUSTOMER, "contact_list_id": bad,
                                                "contacts": [{CUSTOMER: "3"}]})
        assert (status, body["replyCode"]) == (400, 2020), bad
