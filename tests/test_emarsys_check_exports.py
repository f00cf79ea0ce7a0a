"""`magsync check` for Emarsys and getchanges exports, against the sandbox."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from magsync.emarsys.check import check_emarsys
from magsync.emarsys.contacts import find_list, upsert_batch
from magsync.emarsys.exports import (
    ExportWait,
    MalformedExport,
    fetch_changes,
    iter_export_rows,
    parse_export_csv,
    start_changes_export,
    wait_for_export,
    wait_for_exports,
)
from magsync.emarsys.fields import create_field
from magsync.errors import EXIT_REMOTE, RemoteError, RetriableError
from magsync.sandbox.emarsys.server import EmarsysSandbox
from tests.helpers.emarsys import make_client, make_config

CUST, SUBS = 7001, 7002


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture()
def sandbox() -> Iterator[EmarsysSandbox]:
    with EmarsysSandbox(export_polls=3) as srv:
        yield srv  # type: ignore[misc]


def by_name(results: list) -> dict:  # type: ignore[type-arg]
    return {r.name: r for r in results}


# -- check ------------------------------------------------------------------------------------

def test_check_all_good(sandbox: EmarsysSandbox) -> None:
    cfg = make_config(sandbox, fields={"firstname": "First Name",
                                       "dob": {"field": 4, "convert": "date"}})
    results = check_emarsys(cfg, make_client(cfg))
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    named = by_name(results)
    assert "wsse accepted" in named["Emarsys credentials"].detail
    assert "will be created" in named["Emarsys customers contact list"].detail
    assert "is indexed" in named["Emarsys customer id key field indexed"].detail
    assert "(id 7001" in named["Emarsys customer id key field"].detail
    assert "Emarsys field for firstname" in named
    assert find_list(make_client(cfg), "Magento customers") is None  # no changes made
    assert sandbox.find_contacts(CUST, "x") == []


def test_check_reports_problems(sandbox: EmarsysSandbox) -> None:
    client = make_client(make_config(sandbox))
    shop = create_field(client, "Shop Customer", "numeric")  # exists, not indexed
    cfg = make_config(sandbox, key_fields={"customer_id": "Shop Customer",
                                           "subscriber_id": "Nope Field"},
                      fields={"gender": {"field": "First Name", "convert": "gender"},
                              "taxvat": 4242})
    named = by_name(check_emarsys(cfg, make_client(cfg)))
    assert named["Emarsys customer id key field"].ok
    assert not named["Emarsys subscriber id key field"].ok
    assert "--create-missing" in named["Emarsys subscriber id key field"].detail
    indexed = named["Emarsys customer id key field indexed"]
    assert not indexed.ok and f"id {shop.id}" in indexed.detail
    assert "ask Emarsys support to index it" in indexed.detail
    assert "Emarsys subscriber id key field indexed" not in named
    assert not named["Emarsys field for gender"].ok
    assert "cannot take converter 'gender'" in named["Emarsys field for gender"].detail
    assert not named["Emarsys field for taxvat"].ok
    assert sandbox.find_contacts(shop.id, "x") == []


def test_check_bad_credentials_stops_early(sandbox: EmarsysSandbox) -> None:
    cfg = make_config(sandbox, secret="wrong-secret-abc")
    results = check_emarsys(cfg, make_client(cfg))
    assert len(results) == 1 and not results[0].ok
    assert "refused the credentials" in results[0].detail
    assert "wrong-secret-abc" not in results[0].detail


def test_check_existing_list(sandbox: EmarsysSandbox) -> None:
    cfg = make_config(sandbox)
    client = make_client(cfg)
    client.call("POST", "/contactlist", json={"key_id": "3", "name": "Magento customers"})
    named = by_name(check_emarsys(cfg, client))
    assert "(id " in named["Emarsys customers contact list"].detail


# -- getchanges -------------------------------------------------------------------------------

def seed_changes(sandbox: EmarsysSandbox) -> None:
    client = make_client(make_config(sandbox))
    upsert_batch(client, CUST, [{str(CUST): "1", "3": "a@example.com", "31": 1},
                                {str(CUST): "2", "3": "b,\"quoted\"@example.com", "31": 2}])


def window() -> tuple:  # type: ignore[type-arg]
    today = datetime.now(timezone.utc).date()
    return today - timedelta(days=1), today + timedelta(days=1)


def test_getchanges_waits_and_parses(sandbox: EmarsysSandbox) -> None:
    seed_changes(sandbox)
    t = FakeTime()
    wait = ExportWait(timeout=60, first=1, most=4, sleep=t.sleep, clock=t.clock)
    rows = list(fetch_changes(make_client(make_config(sandbox)), *window(),
                              [CUST, SUBS, 31], wait))
    assert len(rows) == 2
    assert list(rows[0]) == ["user_id", "Magento Customer ID", "Magento Subscriber ID",
                             "Opt-In"]
    got = {r["Magento Customer ID"]: r["Opt-In"] for r in rows}
    assert got == {"1": "True", "2": "False"}
    assert all(r["user_id"].isdigit() for r in rows)
    body = sandbox.requests("POST", r"/contact/getchanges")[0].json()
    assert body["distribution_method"] == "local" and body["contact_fields"] == [CUST, SUBS, 31]
    assert body["add_field_names_header"] == 1 and body["delimiter"] == ","
    polls = sandbox.requests("GET", r"/export/\d+/?$")
    assert len(polls) == 4 and t.sleeps == [1, 2, 4]  # 3 not-ready polls, then done


def test_two_exports_are_waited_for_together(sandbox: EmarsysSandbox) -> None:
    seed_changes(sandbox)
    client = make_client(make_config(sandbox))
    ids = [start_changes_export(client, *window(), [CUST, 31]) for _ in range(2)]
    t = FakeTime()
    wait_for_exports(client, ids, ExportWait(timeout=60, first=1, most=4, sleep=t.sleep,
                                             clock=t.clock))
    assert t.sleeps == [1, 2, 4]  # one pause per round of polls, not one per export
    assert len(sandbox.requests("GET", r"/export/\d+/?$")) == 8


def test_data_in_progress_keeps_waiting(sandbox: EmarsysSandbox) -> None:
    seed_changes(sandbox)
    client = make_client(make_config(sandbox))
    export_id = start_changes_export(client, *window(), [CUST, 31])
    t = FakeTime()

    # The data URL answers 404/4005 until the export is done; the sandbox finishes an
    # export after some status polls, so poll the status while the download waits.
    def sleep_and_poll(seconds: float) -> None:
        t.sleep(seconds)
        client.call("GET", f"/export/{export_id}")

    wait = ExportWait(timeout=60, first=1, most=1, sleep=sleep_and_poll, clock=t.clock)
    rows = list(iter_export_rows(client, export_id, wait))
    assert len(rows) == 2
    statuses = [r.status for r in sandbox.requests("GET", r"/export/\d+/data")]
    assert statuses[0] == 404 and statuses[-1] == 200


def test_export_wait_times_out(sandbox: EmarsysSandbox) -> None:
    seed_changes(sandbox)
    client = make_client(make_config(sandbox))
    export_id = start_changes_export(client, *window(), [31])
    t = FakeTime()
    with pytest.raises(RetriableError, match=f"export {export_id} was not ready"):
        wait_for_export(client, export_id,
                        ExportWait(timeout=2.5, first=1, most=1, sleep=t.sleep, clock=t.clock))


def test_export_error_status_raises(sandbox: EmarsysSandbox) -> None:
    client = make_client(make_config(sandbox))
    export_id = start_changes_export(client, *window(), [31])
    sandbox.exports.expire(export_id)
    with pytest.raises(RemoteError, match="failed"):
        wait_for_export(client, export_id)
    with pytest.raises(RemoteError, match="4003") as info:
        list(iter_export_rows(client, export_id))
    assert info.value.exit_code == EXIT_REMOTE


def test_parse_export_csv() -> None:
    lines = ['\ufeffuser_id,Opt-In,Note\n', '1,True,"a, ""b"" c"\r\n', '\n', '2,False,\n']
    rows = list(parse_export_csv(lines))
    assert rows == [{"user_id": "1", "Opt-In": "True", "Note": 'a, "b" c'},
                    {"user_id": "2", "Opt-In": "False", "Note": ""}]
    big = "x" * (200 * 1024)  # over the csv module's default limit, under 1 MB
    text = io.StringIO(f"user_id,Note\n1,{big}\n2,\"{big}\"\n")
    assert [r["Note"] for r in parse_export_csv(text)] == [big, big]


@pytest.mark.parametrize("body, why", [
    # a quote left open would swallow the following rows
    ('user_id,E-Mail,Opt-In\n1,"a@example.com,False\n2,b@example.com,False\n',
     "unterminated quote"),
    ('user_id,E-Mail,Opt-In\n1,"a@example.com,False\n2,"b@example.com",False\n',
     "unterminated quote"),
    ('user_id,E-Mail,Opt-In\n1,a@example.com,False\n2,"b"x,False\n', "line 3"),
    ('user_id,E-Mail,Opt-In\n1,a@example.com\n', "2 fields, the header 3"),
    ('user_id,E-Mail,Opt-In\n1,a@example.com,False,extra\n', "4 fields, the header 3"),
    ("user_id,E-Mail,Opt-In\n1," + "é" * (600 * 1024) + ",False\n", "over 1 MB"),
    ("user_id,E-Mail,Opt-In\n1," + "x" * (1024 * 1024 + 1) + ",False\n", "over 1 MB"),
    ("user_id,E-Mail,Opt-In\n1," + "x" * (8 * 1024 * 1024) + ",False\n", "over 1 MB"),
])
def test_malformed_export_csv_is_refused_whole(body: str, why: str) -> None:
    seen: list[dict[str, str]] = []
    with pytest.raises(MalformedExport, match=why) as info:
        for row in parse_export_csv(io.StringIO(body), export_id=2140):
            seen.append(row)
    assert info.value.exit_code == EXIT_REMOTE
    assert "Emarsys export 2140 is malformed" in str(info.value)
    assert len(seen) <= 1  # nothing after the damage was read as a row
