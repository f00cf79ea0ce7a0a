"""The Emarsys sandbox: campaign responses (email/getresponses and the getchanges blind
spot) and contact edits made outside the API, key fields included."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from magsync.sandbox.emarsys.server import EmarsysSandbox
from tests.test_sandbox_emarsys_contacts import (
    CUSTOMER,
    GETCHANGES,
    T0,
    UPSERT,
    Api,
    FakeClock,
    _poll_and_read,
)

CET = dt.timezone(dt.timedelta(hours=2))  # Berlin in May (CEST)
GETRESPONSES = {"time_range": ["2026-05-02 00:00:00", "2026-05-03 00:00:00"],
                "sources": ["unsubscribe"], "contact_fields": [7001, 3, 31],
                "distribution_method": "local"}


@pytest.fixture
def sb() -> Iterator[EmarsysSandbox]:
    with EmarsysSandbox(clock=FakeClock()) as server:
        assert isinstance(server, EmarsysSandbox)
        yield server


@pytest.fixture
def api(sb: EmarsysSandbox) -> Api:
    return Api(sb)


def control(sb: EmarsysSandbox, path: str, body: Any = None) -> requests.Response:
    if body is None:
        return requests.get(f"{sb.url}/_sandbox{path}", timeout=10)
    return requests.post(f"{sb.url}/_sandbox{path}", json=body, timeout=10)


def responses(api: Api, **override: Any) -> list[list[str]]:
    status, body = api.call("POST", "/email/getresponses", {**GETRESPONSES, **override})
    assert status == 200, body
    header, rows = _poll_and_read(api, body["data"]["id"])
    assert header[0] == "user_id"
    return rows


def changes(api: Api) -> list[str]:
    status, body = api.call("POST", "/contact/getchanges", GETCHANGES)
    assert status == 200, body
    return [row[0] for row in _poll_and_read(api, body["data"]["id"])[1]]


# -- campaign responses ------------------------------------------------------------------------
def test_a_campaign_unsubscribe_is_in_getresponses_not_in_getchanges(
        sb: EmarsysSandbox, api: Api) -> None:
    cid = sb.seed_contact({CUSTOMER: 5, "3": "five@example.com", "31": 1})
    r = control(sb, f"/contacts/{cid}/campaign_response", {"source": "unsubscribe"})
    assert r.json() == {"ok": True}
    assert sb.account.contact(cid)["31"] == "2"
    assert changes(api) == []  # the blind spot
    status, body = api.call("POST", "/email/getresponses", GETRESPONSES)
    assert status == 200
    header, rows = _poll_and_read(api, body["data"]["id"])
    assert header == ["user_id", "Magento Customer ID", "E-Mail", "Opt-In"]
    assert rows == [[str(cid), "5", "five@example.com", "False"]]
    edit = control(sb, f"/contacts/{cid}").json()["edits"]
    assert edit == [{"at": T0, "source": "campaign", "fields": {"31": "2"}, "reported": False}]


def test_a_flag_lets_getchanges_list_a_campaign_unsubscribe(sb: EmarsysSandbox,
                                                            api: Api) -> None:
    cid = sb.seed_contact({CUSTOMER: 6, "31": 1})
    control(sb, f"/contacts/{cid}/campaign_response",
            {"source": "unsubscribe", "in_getchanges": True})
    assert changes(api) == [str(cid)]
    assert responses(api) == [[str(cid), "6", "", "False"]]


def test_sources_and_the_time_window(sb: EmarsysSandbox, api: Api) -> None:
    unsub, complaint, bounce, early = (sb.seed_contact({CUSTOMER: n, "31": 1}) for n in range(4))
    at = dt.datetime(2026, 5, 2, 12, 0, tzinfo=CET).timestamp()
    for cid, source in ((unsub, "unsubscribe"), (complaint, "complaint"), (bounce, "bounce")):
        control(sb, f"/contacts/{cid}/campaign_response", {"source": source, "at": at})
    # 23:30 UTC on 1 May is already 2 May in Berlin: inside a window that starts at 00:00
    late = dt.datetime(2026, 5, 1, 23, 30, tzinfo=dt.timezone.utc).timestamp()
    control(sb, f"/contacts/{early}/campaign_response", {"source": "bounce", "at": late})
    assert [r[0] for r in responses(api, sources=["bounce"])] == [str(bounce), str(early)]
    both = responses(api, sources=["unsubscribe", "complaint"])
    assert [r[0] for r in both] == [str(unsub), str(complaint)]
    assert [r[0] for r in responses(api, sources=["bounce"], time_range=[
        "2026-05-02 02:00:00", "2026-05-02 12:00:00"])] == []  # [start, end)
    # a bounce leaves the opt-in alone; an unsubscribe and a complaint set it to 2
    assert [sb.account.contact(c)["31"] for c in (unsub, complaint, bounce)] == ["2", "2", "1"]


@pytest.mark.parametrize("override", [
    {"time_range": ["2026-05-02", "2026-05-03"]},
    {"time_range": ["2026-05-03 00:00:00", "2026-05-02 00:00:00"]},
    {"sources": ["opened"]}, {"sources": []},
    {"contact_fields": []}, {"contact_fields": [99999]},
])
def test_getresponses_validates_its_body(api: Api, override: dict[str, Any]) -> None:
    status, body = api.call("POST", "/email/getresponses", {**GETRESPONSES, **override})
    assert status == 400 and body["replyCode"] != 0


def test_campaign_response_control_refuses_bad_input(sb: EmarsysSandbox) -> None:
    cid = sb.seed_contact({CUSTOMER: 1})
    assert control(sb, "/contacts/1/campaign_response", {}).status_code == 400
    assert control(sb, f"/contacts/{cid}/campaign_response",
                   {"source": "opened"}).status_code == 400
    assert control(sb, "/state").json()["responses"] == 0


# -- edits outside the API: key fields, e-mail, imports -----------------------------------------
def test_a_ui_edit_can_give_a_contact_another_customers_key(sb: EmarsysSandbox,
                                                            api: Api) -> None:
    mine = int(api.upsert([{CUSTOMER: "1", "3": "one@example.com"}])["ids"][0])
    other = int(api.upsert([{CUSTOMER: "2", "3": "two@example.com"}])["ids"][0])
    assert control(sb, f"/contacts/{other}/ui_edit", {"fields": {CUSTOMER: 1}}).ok
    assert sb.find_contacts(7001, 1) == [mine, other]
    status, body = api.call("PUT", UPSERT, {"key_id": CUSTOMER,
                                            "contacts": [{CUSTOMER: "1", "1": "X"}]})
    assert status == 200
    assert list(body["data"]["errors"]["1"]) == ["2010"]
    _, body = api.call("POST", "/contact/getdata", {"keyId": CUSTOMER, "keyValues": ["1"],
                                                    "fields": [3]})
    assert body["data"]["errors"][0]["errorCode"] == "2010"
    edits = control(sb, f"/contacts/{other}").json()["edits"]
    assert edits == [{"at": T0, "source": "ui", "fields": {CUSTOMER: "1"}, "reported": False}]


def test_getchanges_lists_ui_email_edits_but_not_key_edits_or_imports(
        sb: EmarsysSandbox, api: Api) -> None:
    keyed, emailed, imported = (sb.seed_contact({CUSTOMER: n, "3": f"{n}@example.com"})
                                for n in (1, 2, 3))
    control(sb, f"/contacts/{keyed}/ui_edit", {"fields": {CUSTOMER: 9}})
    control(sb, f"/contacts/{emailed}/ui_edit", {"fields": {"3": "new@example.com"}})
    control(sb, f"/contacts/{imported}/ui_import", {"fields": {"3": "imp@example.com",
                                                               CUSTOMER: 8}})
    assert changes(api) == [str(emailed)]
    assert sb.find_contacts(7001, 8) == [imported]
    edit = control(sb, f"/contacts/{imported}").json()["edits"]
    assert [(e["source"], e["reported"]) for e in edit] == [("import", False)]
    bad = control(sb, f"/contacts/{keyed}/ui_edit", {"fields": {"32": "x"}})
    assert bad.status_code == 400  # read-only in the UI too


def test_a_malformed_control_request_is_a_400_not_a_dropped_connection(
        sb: EmarsysSandbox) -> None:
    for path, body in (("/contacts", {"contacts": [{"31": "yes"}]}), ("/indexed", {}),
                       ("/emarsys-switches", ["rows"]), ("/contacts/1/ui_edit", [])):
        resp = control(sb, path, body)
        assert resp.status_code == 400, path
        assert resp.json()["message"].startswith("bad control request")
