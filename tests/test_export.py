"""``magsync export-initial`` end to end: the real CLI against both simulators on loopback.

What the whole export leaves in Emarsys, adoption of existing contacts, consent, the
command's options and its configuration errors.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from magsync.sandbox.base import Request, Response
from magsync.sandbox.pair import SandboxPair
from magsync.state import StateStore
from magsync.state.lock import StateLock
from tests.helpers.cli import status_of
from tests.helpers.export_checks import (
    CUSTOMER_KEY,
    SUBSCRIBER_KEY,
    assert_export_complete,
    count_requests,
    expected_contacts,
    upserted_keys,
)
from tests.helpers.sandbox import lowest_row

WRITE_PATHS = r"/contact/?$|/contactlist/\d+/add"


# -- a full export -------------------------------------------------------------------------

def test_full_export_sends_every_contact_once_with_its_fields_and_lists(
        pair: SandboxPair, magsync: Any, config_file: Path) -> None:
    result = magsync("export-initial")

    assert result.code == 0, result
    ids = assert_export_complete(pair)
    shop = pair.magento.shop
    guests = [s for s in shop.subscribers.values() if not s.customer_id]
    assert len(ids) == len(shop.customers) + len(guests)
    assert len(pair.emarsys.account.contacts) == len(ids)  # nothing else was created
    assert "created" in result.out and str(len(ids)) in result.out
    keys = upserted_keys(pair)
    assert sorted(keys) == sorted(set(keys)) == sorted(ids)  # each key upserted once


def test_linked_subscriber_lives_on_the_customer_contact(pair: SandboxPair,
                                                         magsync: Any) -> None:
    assert magsync("export-initial").code == 0

    linked = [s for s in pair.magento.shop.subscribers.values() if s.customer_id]
    assert linked
    for sub in linked:
        found = pair.emarsys.find_contacts(int(SUBSCRIBER_KEY), str(sub.subscriber_id))
        assert len(found) == 1, sub
        contact = pair.emarsys.account.contact(found[0])
        assert contact[CUSTOMER_KEY] == str(sub.customer_id)
        assert contact[SUBSCRIBER_KEY] == str(sub.subscriber_id)


def test_completed_export_sets_watermarks_and_clears_its_checkpoint(
        pair: SandboxPair, magsync: Any, config_file: Path, tmp_path: Path) -> None:
    assert magsync("export-initial").code == 0

    status = status_of(magsync)
    assert set(status["watermarks"]) >= {"sync-realtime", "sync-background"}
    run = status["runs"]["export-initial"]
    assert run["outcome"] == "ok" and run["exit_code"] == 0
    assert status["contacts"] == len(expected_contacts(pair.magento.shop))
    with StateStore.open(tmp_path / "state.db") as store:
        assert store.get_checkpoint("export-initial") is None
        started = store.last_runs()["export-initial"].started_at
        assert store.get_watermark("sync-realtime") == started


def test_every_contact_sent_has_its_emarsys_id_recorded(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    # one contact adopted (found by email), the rest created by the upserts
    cid = max(pair.magento.shop.customers)
    adopted = pair.emarsys.seed_contact({3: pair.magento.shop.customers[cid]["email"]})
    assert magsync("export-initial").code == 0

    ids = assert_export_complete(pair)
    with StateStore.open(tmp_path / "state.db") as store:
        records = store.get_contacts(ids)
    assert {k: r.emarsys_id for k, r in records.items()} == {k: str(v) for k, v in ids.items()}
    assert records[f"c:{cid}"].emarsys_id == str(adopted)


def test_second_export_sends_nothing(pair: SandboxPair, magsync: Any) -> None:
    assert magsync("export-initial").code == 0
    upserts = count_requests(pair, "PUT", r"/contact/?$")

    again = magsync("export-initial")

    assert again.code == 0, again
    assert count_requests(pair, "PUT", r"/contact/?$") == upserts
    assert_export_complete(pair)


# -- existing Emarsys contacts (SPEC section 3, rule 6) -------------------------------------

def test_existing_contacts_are_adopted_not_duplicated(pair: SandboxPair,
                                                      magsync: Any) -> None:
    shop = pair.magento.shop
    cid = min(shop.customers)
    guest = lowest_row(pair, guest=True)
    # a differently cased address is the same person
    seeded_c = pair.emarsys.seed_contact({3: shop.customers[cid]["email"].upper(), 1: "Old"})
    seeded_g = pair.emarsys.seed_contact({3: guest.subscriber_email})

    result = magsync("export-initial")

    assert result.code == 0, result
    ids = assert_export_complete(pair)
    assert ids[f"c:{cid}"] == seeded_c
    assert ids[f"s:{guest.subscriber_id}"] == seeded_g
    assert len(pair.emarsys.account.contacts) == len(ids)
    assert "adopted" in result.out


def test_adopted_opt_out_is_kept_and_reported_as_consent_conflict(
        pair: SandboxPair, magsync: Any) -> None:
    cid = lowest_row(pair).customer_id
    email = pair.magento.shop.customers[cid]["email"]
    seeded = pair.emarsys.seed_contact({3: email, 31: 2})

    result = magsync("export-initial")

    assert result.code == 0, result
    ids = assert_export_complete(pair, overrides={f"c:{cid}": {"31": "2"}})
    assert ids[f"c:{cid}"] == seeded
    assert all(w.get("31") != 1 for _, w in pair.emarsys.writes_for(seeded))
    assert "conflict" in result.out
    issues = status_of(magsync)["issues"]
    assert any(i["kind"] == "consent_conflict" and i["key"] == f"c:{cid}" for i in issues)
    assert status_of(magsync)["runs"]["export-initial"]["counts"].get("conflicts") == 1


def test_contact_with_another_key_is_left_alone(pair: SandboxPair, magsync: Any) -> None:
    cid = min(pair.magento.shop.customers)
    email = pair.magento.shop.customers[cid]["email"]
    foreign = pair.emarsys.seed_contact({3: email, 1: "Someone", int(CUSTOMER_KEY): 999999})
    before = pair.emarsys.account.contact(foreign)

    result = magsync("export-initial")

    assert result.code == 0, result
    ids = assert_export_complete(pair, shared_emails=[f"c:{cid}"])
    assert ids[f"c:{cid}"] != foreign
    assert pair.emarsys.account.contact(foreign) == before
    assert pair.emarsys.writes_for(foreign) == []


@pytest.mark.parametrize("answer", ["error", "rows"])
def test_email_matching_two_keyless_contacts_is_reported_and_queued(
        pair: SandboxPair, magsync: Any, tmp_path: Path, answer: str) -> None:
    # Emarsys answers a lookup that matches several contacts with a per-key error 2010
    # (as far as the evidence goes) or, by the other reading, with every row: both are
    # the same case.
    pair.emarsys.account.getdata_multi = answer
    cid = min(pair.magento.shop.customers)
    email = pair.magento.shop.customers[cid]["email"]
    twins = [pair.emarsys.seed_contact({3: email}) for _ in range(2)]

    result = magsync("export-initial")

    assert result.code == 1, result
    assert_export_complete(pair, skip=[f"c:{cid}"])
    assert pair.emarsys.find_contacts(int(CUSTOMER_KEY), str(cid)) == []
    assert all(pair.emarsys.writes_for(t) == [] for t in twins)
    with StateStore.open(tmp_path / "state.db") as store:
        queued = store.queue_items()
    assert [q.key for q in queued] == [f"c:{cid}"]
    assert status_of(magsync)["queue"]["queued"] == 1
    issues = [i for i in status_of(magsync)["issues"] if i["kind"] == "ambiguous_email"]
    assert [i["key"] for i in issues] == [f"c:{cid}"]
    assert email in issues[0]["detail"]
    assert ("2010" in issues[0]["detail"]) == (answer == "error")
    assert "1 contact(s) failed" in result.err  # on stderr, once
    assert "1 contact(s) failed" not in result.out


def test_a_lookup_answered_with_another_error_is_queued_never_created(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    cid = min(pair.magento.shop.customers)
    email = pair.magento.shop.customers[cid]["email"]
    before = pair.emarsys.before_route

    def refuse_one_email(req: Request) -> Response | None:
        # getdata answers this one email with a per-key error that is not "not found"
        if req.path.endswith("/contact/getdata") and email in req.json()["keyValues"]:
            body = req.json()
            rest = [v for v in body["keyValues"] if v != email]
            answer = pair.emarsys.account.get_data(body["keyId"], rest, body["fields"])
            return Response.json({"replyCode": 0, "replyText": "OK", "data": {
                "result": answer[0], "errors": [*answer[1], {
                    "key": email, "errorCode": "2013",
                    "errorMsg": "Temporarily unable to search contacts"}]}})
        return before(req)

    pair.emarsys.before_route = refuse_one_email  # type: ignore[method-assign]

    result = magsync("export-initial")

    assert result.code == 1, result
    assert pair.emarsys.find_contacts(int(CUSTOMER_KEY), str(cid)) == []  # not created
    assert_export_complete(pair, skip=[f"c:{cid}"])
    with StateStore.open(tmp_path / "state.db") as store:
        [queued] = store.queue_items()
    assert queued.key == f"c:{cid}" and "2013" in (queued.last_error or "")
    issues = status_of(magsync)["issues"]
    assert any(i["kind"] == "lookup_failed" and i["key"] == f"c:{cid}" for i in issues)


# -- options ------------------------------------------------------------------------------

def test_dry_run_writes_nothing_and_prints_counts(pair: SandboxPair, magsync: Any,
                                                 tmp_path: Path) -> None:
    result = magsync("export-initial", "--dry-run")

    assert result.code == 0, result
    assert pair.emarsys.requests("PUT") == []
    assert pair.emarsys.requests("POST", WRITE_PATHS) == []
    assert pair.emarsys.requests("POST", r"/contactlist/?$") == []  # lists not created
    assert pair.emarsys.account.contacts == {}
    assert pair.magento.requests("PUT") == [] and pair.magento.requests("POST") == []
    assert "dry run" in result.out
    assert str(len(expected_contacts(pair.magento.shop))) in result.out
    status = status_of(magsync)
    assert status["watermarks"] == {} and status["contacts"] == 0
    with StateStore.open(tmp_path / "state.db") as store:
        assert store.get_checkpoint("export-initial") is None


def test_dry_run_with_verbose_shows_payload_samples(pair: SandboxPair, magsync: Any) -> None:
    result = magsync("-v", "export-initial", "--dry-run")

    assert result.code == 0, result
    assert "sample payload" in result.out
    assert pair.emarsys.account.contacts == {}


def test_restart_sends_every_mapped_field_again(pair: SandboxPair, magsync: Any) -> None:
    assert magsync("export-initial").code == 0
    first = len(pair.emarsys.requests("PUT"))
    cid = min(pair.magento.shop.customers)
    contact_id = pair.emarsys.find_contacts(int(CUSTOMER_KEY), str(cid))[0]
    first_write = pair.emarsys.writes_for(contact_id)[0][1]

    result = magsync("export-initial", "--restart")

    assert result.code == 0, result
    assert len(pair.emarsys.requests("PUT")) > first
    writes = pair.emarsys.writes_for(contact_id)
    assert len(writes) == 2
    assert set(writes[1][1]) >= set(first_write) - {"31"}  # every mapped field again
    keys = upserted_keys(pair)
    assert sorted(keys) == sorted(2 * list(expected_contacts(pair.magento.shop)))
    assert_export_complete(pair)


def test_customers_only(pair: SandboxPair, magsync: Any) -> None:
    result = magsync("export-initial", "--customers")

    assert result.code == 0, result
    assert_export_complete(pair, guests=False)
    guests = [s for s in pair.magento.shop.subscribers.values() if not s.customer_id]
    assert all(pair.emarsys.find_contacts(int(SUBSCRIBER_KEY), str(s.subscriber_id)) == []
               for s in guests)
    assert all(k.startswith("c:") for k in upserted_keys(pair))


def test_subscribers_only(pair: SandboxPair, magsync: Any) -> None:
    result = magsync("export-initial", "--subscribers")

    assert result.code == 0, result
    assert_export_complete(pair, customers=False)
    assert all(k.startswith("s:") for k in upserted_keys(pair))
    assert pair.emarsys.find_contacts(int(CUSTOMER_KEY), "1") == []


def test_missing_mapped_field_stops_before_any_write(pair: SandboxPair, magsync: Any,
                                                     tmp_path: Path) -> None:
    cfg = pair.write_config(tmp_path / "bad.yaml", tmp_path / "state.db",
                            mapping={"firstname": 1, "taxvat": "Tax Number"})

    result = magsync("export-initial", config=cfg)

    assert result.code == 2, result
    assert "Tax Number" in result.err
    assert "magsync fields --create-missing" in result.err
    assert pair.emarsys.requests("PUT") == []
    assert pair.emarsys.requests("POST", r"/contactlist|/contact/") == []
    assert pair.emarsys.account.contacts == {}


def test_key_field_not_indexed_exits_2_naming_the_field(pair: SandboxPair, magsync: Any,
                                                        tmp_path: Path) -> None:
    pair.emarsys.account.set_indexed("Magento Customer ID", False)

    result = magsync("export-initial")

    assert result.code == 2, result
    assert "Magento Customer ID" in result.err or "7001" in result.err
    assert "support" in result.err.lower()
    with StateStore.open(tmp_path / "state.db") as store:
        assert store.queue_items(dead=None) == []
        assert store.watermarks() == {}
    assert pair.emarsys.find_contacts(int(CUSTOMER_KEY), "1") == []


def test_second_run_while_locked_exits_75_naming_the_holder(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    with StateLock(tmp_path / "state.db", command="sync-background"):
        result = magsync("export-initial")
        quiet = magsync("-q", "export-initial")

    assert result.code == 75, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "sync-background" in lines[0] and "pid" in lines[0]
    assert result.out == ""
    assert (quiet.code, quiet.out, quiet.err) == (75, "", "")
    assert pair.emarsys.requests() == [] and pair.magento.requests() == []


def test_customer_pages_are_read_while_emarsys_is_still_starting_up(
        pair: SandboxPair, magsync: Any) -> None:
    """Magento need not be idle while Emarsys resolves fields and lists: once the
    subscriber list is read, the first customer pages are fetched (and wait)."""
    from urllib.parse import unquote

    pair.emarsys.faults.set_latency(300)  # a slow Emarsys start-up: several round trips
    result = magsync("export-initial")
    assert result.code == 0, result
    startup = [r.at for r in pair.emarsys.requests()
               if not re.search(r"/contact/|/add$", r.path)]
    pages = [r.at for r in pair.magento.requests("GET", r"customers/search")
             if "[condition_type]=gt" in unquote(r.query_string)]
    assert startup and pages
    assert min(pages) < max(startup)  # the first page came back before Emarsys was ready
    assert_export_complete(pair)
