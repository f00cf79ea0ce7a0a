"""The Emarsys sandbox: contact upsert, per-contact errors, lists, getdata, getchanges."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from magsync.sandbox.emarsys.auth import wsse_header
from magsync.sandbox.emarsys.data import EmarsysAccount
from magsync.sandbox.emarsys.server import EmarsysSandbox

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 5, 2, 10, 0, tzinfo=UTC).timestamp()
CUSTOMER, SUBSCRIBER = "7001", "7002"
UPSERT = "/contact/?create_if_not_exists=1"


class FakeClock:
    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class Api:
    """Minimal WSSE caller; returns (HTTP status, envelope)."""

    def __init__(self, sb: EmarsysSandbox) -> None:
        self.sb = sb
        self.http = requests.Session()

    def raw(self, method: str, path: str, **kw: Any) -> requests.Response:
        created = dt.datetime.fromtimestamp(self.sb.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers = {"X-WSSE": wsse_header(self.sb.username, self.sb.secret, created=created)}
        return self.http.request(method, self.sb.api_url + path, headers=headers, timeout=30,
                                 **kw)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        r = self.raw(method, path, json=body)
        return r.status_code, r.json()

    def upsert(self, contacts: list[dict[str, Any]], key_id: str = CUSTOMER,
               create: bool = True, **extra: Any) -> dict[str, Any]:
        status, body = self.call("PUT", UPSERT if create else "/contact/",
                                 {"key_id": key_id, "contacts": contacts, **extra})
        assert status == 200, body
        data: dict[str, Any] = body["data"]
        return data


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sb(clock: FakeClock) -> Iterator[EmarsysSandbox]:
    with EmarsysSandbox(clock=clock) as server:
        assert isinstance(server, EmarsysSandbox)
        yield server


@pytest.fixture
def api(sb: EmarsysSandbox) -> Api:
    return Api(sb)


# -- upsert -----------------------------------------------------------------------------
def test_upsert_creates_then_updates_as_a_put(sb: EmarsysSandbox, api: Api) -> None:
    data = api.upsert([{CUSTOMER: "1", "3": "a@example.com", "1": "Ann", "31": 1}])
    assert "errors" not in data
    [created] = data["ids"]
    assert isinstance(created, int)  # created: an integer
    data = api.upsert([{CUSTOMER: 1, "1": "Anna"}, {CUSTOMER: "2", "3": "b@example.com"}])
    assert data["ids"][0] == str(created) and isinstance(data["ids"][1], int)
    assert sb.account.contact(created) == {CUSTOMER: "1", "3": "a@example.com", "1": "Anna",
                                           "31": "1"}


def test_upsert_can_blank_a_field_and_key_on_email(sb: EmarsysSandbox, api: Api) -> None:
    cid = sb.seed_contact({"3": "Mixed@Example.com", "2": "Doe"})
    data = api.upsert([{"3": "mixed@example.com", "2": ""}], key_id="3", create=False)
    assert data["ids"] == [str(cid)]
    assert sb.account.contact(cid)["2"] is None


def test_more_than_1000_contacts_is_refused_whole(api: Api) -> None:
    contacts = [{CUSTOMER: str(i)} for i in range(1001)]
    status, body = api.call("PUT", UPSERT, {"key_id": CUSTOMER, "contacts": contacts})
    assert (status, body["replyCode"]) == (400, 1000)
    assert api.upsert(contacts[:1000])["ids"][999] is not None


def test_a_body_over_8_mb_is_refused(api: Api) -> None:
    contacts = [{CUSTOMER: str(i), "10": "x" * 9000} for i in range(1000)]
    status, body = api.call("PUT", UPSERT, {"key_id": CUSTOMER, "contacts": contacts})
    assert (status, body["replyCode"]) == (400, 1000)


def test_update_only_gives_2008_for_an_unknown_key(sb: EmarsysSandbox, api: Api) -> None:
    data = api.upsert([{CUSTOMER: "404", "1": "Nobody"}], create=False)
    assert data["ids"] == []
    assert list(data["errors"]["404"]) == ["2008"]
    assert sb.account.contacts == {}


def test_key_id_id_updates_one_exact_contact_and_never_creates(
        sb: EmarsysSandbox, api: Api) -> None:
    cid = sb.seed_contact({"3": "x@example.com"})
    data = api.upsert([{"id": str(cid), CUSTOMER: 55}, {"id": "999", CUSTOMER: 56}],
                      key_id="id")
    assert data["ids"] == [str(cid)]
    assert list(data["errors"]["999"]) == ["2008"]
    assert sb.account.contact(cid)[CUSTOMER] == "55"
    assert sb.find_contacts(7001, 55) == [cid]


def test_an_ambiguous_key_gives_2010(sb: EmarsysSandbox, api: Api) -> None:
    sb.seed_contact({CUSTOMER: 124, "3": "one@example.com"})
    sb.seed_contact({CUSTOMER: 124, "3": "two@example.com"})
    data = api.upsert([{CUSTOMER: "124", "1": "X"}, {CUSTOMER: "125"}])
    assert list(data["errors"]["124"]) == ["2010"]
    assert len(data["ids"]) == 1


@pytest.mark.parametrize("value", ["1", True, 3, 1.0, "True"])
def test_optin_other_than_int_1_2_null_gives_2007(api: Api, value: Any) -> None:
    data = api.upsert([{CUSTOMER: "7", "31": value}])
    assert list(data["errors"]["7"]) == ["2007"]


@pytest.mark.parametrize(("field", "value"), [
    ("4", "02.05.1980"), ("4", "1980-02-30"), ("5", 3), ("5", "Male"), ("14", 100000),
    (CUSTOMER, "abc"),
])
def test_invalid_values_give_2007(api: Api, field: str, value: Any) -> None:
    data = api.upsert([{SUBSCRIBER: "9", field: value}], key_id=SUBSCRIBER)
    assert list(data["errors"]["9"]) == ["2007"]


def test_valid_choice_date_and_null_values_are_stored(sb: EmarsysSandbox, api: Api) -> None:
    country = sb.account.fields[14].choices
    assert country is not None
    us = next(cid for cid, label in country.items() if label == "United States of America")
    data = api.upsert([{CUSTOMER: "8", "4": "1980-02-29", "5": 2, "14": us, "31": None}])
    cid = int(data["ids"][0])
    stored = sb.account.contact(cid)
    assert stored.pop("31", None) is None
    assert stored == {CUSTOMER: "8", "4": "1980-02-29", "5": "2", "14": str(us)}


@pytest.mark.parametrize(("contact", "code"), [
    ({CUSTOMER: "1", "99999": "x"}, "2006"), ({CUSTOMER: "1", "32": "x"}, "2006"),
    ({CUSTOMER: "1", "first_name": "x"}, "2006"), ({"3": "no-key@example.com"}, "2005"),
    ({CUSTOMER: "1", "\u00b2": "x"}, "2006"),  # a digit to str.isdigit, not to int()
])
def test_bad_fields_and_missing_keys(api: Api, contact: dict[str, Any], code: str) -> None:
    data = api.upsert([contact])
    assert [list(e) for e in data["errors"].values()] == [[code]]


def test_invalid_key_field_gives_2004(api: Api) -> None:
    data = api.upsert([{"99999": "1"}], key_id="99999")
    assert list(data["errors"]["1"]) == ["2004"]


def test_unindexed_key_field_gives_2015_but_email_works(clock: FakeClock) -> None:
    with EmarsysSandbox(clock=clock, indexed_fields=[7002]) as sb:
        api = Api(sb)
        data = api.upsert([{CUSTOMER: "1", "3": "a@example.com"}])
        assert list(data["errors"]["1"]) == ["2015"]
        assert api.upsert([{SUBSCRIBER: "1"}], key_id=SUBSCRIBER)["ids"]
        assert api.upsert([{"3": "a@example.com"}], key_id="3")["ids"]
        _, body = api.call("POST", "/field", {"name": "Shop", "application_type": "numeric"})
        shop = str(body["data"]["id"])
        assert list(api.upsert([{shop: "3"}], key_id=shop)["errors"]["3"]) == ["2015"]
        sb.account.set_indexed(int(shop))
        assert api.upsert([{shop: "3"}], key_id=shop)["ids"]


def test_injected_contact_errors_hit_only_their_key(sb: EmarsysSandbox, api: Api) -> None:
    sb.inject_contact_error("7001", "123", 2007, "Invalid value")
    data = api.upsert([{CUSTOMER: "123"}, {CUSTOMER: "124"}])
    assert data["errors"] == {"123": {"2007": "Invalid value"}}
    assert len(data["ids"]) == 1


def test_post_contact_creates_only(sb: EmarsysSandbox, api: Api) -> None:
    status, body = api.call("POST", "/contact", {"key_id": CUSTOMER,
                                                 "contacts": [{CUSTOMER: "1"}]})
    assert status == 200 and isinstance(body["data"]["ids"][0], int)
    _, body = api.call("POST", "/contact", {"key_id": CUSTOMER, "contacts": [{CUSTOMER: "1"}]})
    assert list(body["data"]["errors"]["1"]) == ["2009"]


def test_write_log_names_the_request_and_the_fields(sb: EmarsysSandbox, api: Api) -> None:
    cid = int(api.upsert([{CUSTOMER: "1", "3": "a@example.com", "31": 1}])["ids"][0])
    api.upsert([{CUSTOMER: "1", "1": "Ann"}])
    seqs = [r.seq for r in sb.requests("PUT", r"/contact/$")]
    assert sb.writes_for(cid) == [(seqs[0], {CUSTOMER: "1", "3": "a@example.com", "31": 1}),
                                  (seqs[1], {CUSTOMER: "1", "1": "Ann"})]


def test_upsert_model_handles_large_batches() -> None:
    account = EmarsysAccount()
    for batch in range(20):
        result = account.upsert("7001", [{"7001": batch * 1000 + i, "3": f"{i}@x.org"}
                                         for i in range(1000)], create=True)
        assert not result.errors
    result = account.upsert("7001", [{"7001": i, "31": 1} for i in range(1000)], create=True)
    assert all(isinstance(i, str) for i in result.ids) and len(account.contacts) == 20_000


# -- contact lists ----------------------------------------------------------------------
def test_lists_create_duplicate_add_and_members(sb: EmarsysSandbox, api: Api) -> None:
    ids = [int(i) for i in api.upsert([{CUSTOMER: str(n)} for n in (1, 2, 3)])["ids"]]
    status, body = api.call("POST", "/contactlist", {"name": "Magento customers",
                                                     "key_id": CUSTOMER, "external_ids": ["1"]})
    assert status == 200
    list_id = body["data"]["id"]
    status, body = api.call("POST", "/contactlist", {"name": "Magento customers"})
    assert (status, body["replyCode"]) == (400, 3005)
    _, body = api.call("POST", f"/contactlist/{list_id}/add",
                       {"key_id": CUSTOMER, "external_ids": ["2", "3", "404"]})
    assert body["data"]["inserted_contacts"] == 2
    assert list(body["data"]["errors"]["404"]) == ["2008"]
    assert sb.account.list_members("Magento customers") == sorted(ids)
    _, body = api.call("GET", "/contactlist")
    assert body["data"] == [{"id": str(list_id), "name": "Magento customers", "created": ""}]
    status, body = api.call("POST", f"/contactlist/{list_id}/add",
                            {"key_id": CUSTOMER, "external_ids": list(range(10_001))})
    assert (status, body["replyCode"]) == (400, 3002)


def test_upsert_with_contact_list_id_adds_members(sb: EmarsysSandbox, api: Api) -> None:
    list_id, _ = sb.account.create_list("Subscribers")
    data = api.upsert([{SUBSCRIBER: "5"}], key_id=SUBSCRIBER, contact_list_id=list_id)
    assert sb.account.list_members(list_id) == [int(data["ids"][0])]


# -- getdata -------------------------------------------------------------------------------
def test_getdata_returns_every_match_and_errors(sb: EmarsysSandbox, api: Api) -> None:
    sb.account.getdata_multi = "rows"  # the default, a 2010, is in test_sandbox_emarsys_keyed
    a = sb.seed_contact({"3": "dup@example.com", "31": 2})
    b = sb.seed_contact({"3": "dup@example.com", CUSTOMER: 9})
    status, body = api.call("POST", "/contact/getdata", {
        "keyId": "3", "keyValues": ["dup@example.com", "none@example.com"],
        "fields": [31, 7001, 7002]})
    assert status == 200
    assert body["data"]["result"] == [
        {"id": str(a), "31": "2", "7001": None, "7002": None},
        {"id": str(b), "31": None, "7001": "9", "7002": None}]
    [error] = body["data"]["errors"]
    assert (error["key"], str(error["errorCode"])) == ("none@example.com", "2008")
    _, body = api.call("POST", "/contact/getdata", {"keyId": "3", "keyValues": ["x@y.z"],
                                                    "fields": [31]})
    assert body["data"]["result"] is False
    status, body = api.call("POST", "/contact/getdata", {
        "keyId": "3", "keyValues": [str(i) for i in range(1001)], "fields": [31]})
    assert (status, body["replyCode"]) == (400, 1000)


# -- getchanges ----------------------------------------------------------------------------
GETCHANGES = {"distribution_method": "local", "origin": "all", "origin_id": "0",
              "time_range": ["2026-05-01", "2026-05-03"], "contact_fields": [7001, 31, 5],
              "delimiter": ",", "add_field_names_header": 1, "language": "en"}


def _getchanges(api: Api, **override: Any) -> tuple[int, Any]:
    return api.call("POST", "/contact/getchanges", {**GETCHANGES, **override})


def _poll_and_read(api: Api, export_id: int) -> tuple[list[str], list[list[str]]]:
    statuses = []
    while not statuses or statuses[-1] != "done":
        statuses.append(api.call("GET", f"/export/{export_id}")[1]["data"]["status"])
        if statuses[-1] != "done":
            r = api.raw("GET", f"/export/{export_id}/data", params={"offset": 0, "limit": 10})
            assert (r.status_code, r.json()["replyCode"]) == (404, 4005)
        assert len(statuses) < 10
    assert statuses == ["scheduled", "in progress", "done"]
    r = api.raw("GET", f"/export/{export_id}/data", params={"offset": 0, "limit": 100})
    assert r.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    return rows[0], rows[1:]


def test_getchanges_reports_api_and_ui_changes_not_imports(
        sb: EmarsysSandbox, api: Api, clock: FakeClock) -> None:
    seeded = sb.seed_contact({"3": "old@example.com", "31": 1, CUSTOMER: 1})
    imported = sb.seed_contact({"3": "imp@example.com", "31": 1, CUSTOMER: 2})
    edited = sb.seed_contact({"3": "ui@example.com", "31": 1, CUSTOMER: 3, "5": 2})
    upserted = int(api.upsert([{CUSTOMER: "4", "3": "api@example.com", "31": 2}])["ids"][0])
    api.upsert([{CUSTOMER: "1", "1": "Name only"}])  # neither e-mail nor opt-in
    sb.ui_edit(edited, {"31": 2})
    sb.ui_import(imported, {"31": 2})
    sb.ui_edit(seeded, {"3": "long-ago@example.com"}, at=T0 - 30 * 86400)
    status, body = _getchanges(api)
    assert status == 200
    header, rows = _poll_and_read(api, body["data"]["id"])
    assert header == ["user_id", "Magento Customer ID", "Opt-In", "Gender"]
    assert rows == [[str(upserted), "4", "False", ""], [str(edited), "3", "False", "Female"]]


def test_getchanges_window_is_in_cet_days(sb: EmarsysSandbox, api: Api) -> None:
    cid = sb.seed_contact({CUSTOMER: 1, "31": 1})
    # 22:30 UTC on 3 May is already 4 May in Berlin (CEST): outside [1 May, 3 May].
    sb.ui_edit(cid, {"31": 2}, at=dt.datetime(2026, 5, 3, 22, 30, tzinfo=UTC).timestamp())
    _, body = _getchanges(api)
    assert _poll_and_read(api, body["data"]["id"])[1] == []
    _, body = _getchanges(api, time_range=["2026-05-03", "2026-05-04"])
    assert _poll_and_read(api, body["data"]["id"])[1] == [[str(cid), "1", "False", ""]]


@pytest.mark.parametrize("override", [
    {"time_range": ["2026-05-01 00:00:00", "2026-05-03"]},
    {"time_range": ["2026-05-02", "2026-05-02"]},
    {"time_range": ["2026-05-03", "2026-05-01"]},
    {"time_range": ["2026-05-01"]},
    {"contact_fields": []},
    {"contact_fields": list(range(1, 22))},
    {"contact_fields": [99999]},
])
def test_getchanges_validates_its_body(api: Api, override: dict[str, Any]) -> None:
    status, body = _getchanges(api, **override)
    assert status == 400 and body["replyCode"] != 0


def test_export_paging_delimiter_and_expiry(sb: EmarsysSandbox, api: Api) -> None:
    api.upsert([{CUSTOMER: str(i), "31": 1} for i in range(5)])
    _, body = _getchanges(api, delimiter=";", contact_fields=[7001])
    export_id = body["data"]["id"]
    for _ in range(3):
        api.call("GET", f"/export/{export_id}")
    pages = [api.raw("GET", f"/export/{export_id}/data", params={"offset": o, "limit": 2}).text
             for o in (0, 2, 4, 6)]
    assert pages[0].splitlines()[0] == "user_id;Magento Customer ID"
    assert [len(p.splitlines()) - 1 for p in pages] == [2, 2, 1, 0]
    sb.exports.expire(export_id)
    r = api.raw("GET", f"/export/{export_id}/data", params={"offset": 0, "limit": 2})
    assert (r.status_code, r.json()["replyCode"]) == (410, 4003)
