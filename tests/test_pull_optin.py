"""``magsync pull-optin`` end to end: the real CLI against both simulators on loopback.

Opt-in changes made in the Emarsys UI (``ui_edit``, which getchanges reports) reach
Magento; magsync's own writes do not come back; consent conflicts, unknown keys, failing
rows, confirmation-required shops and ``--dry-run``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from magsync.emarsys.exports import ExportWait
from magsync.sandbox.base import Request, Response
from magsync.sandbox.magento.shop import Shop
from magsync.sandbox.pair import SandboxPair
from magsync.state import StateStore
from magsync.sync.pull import (
    EXPORT_POLL_ENV,
    PullOptions,
    changes_dates,
    export_wait,
    window_start,
)
from magsync.sync.pull_rows import find_columns, parse_row
from tests.helpers.export_checks import CUSTOMER_KEY, SUBSCRIBER_KEY, contact_ids
from tests.helpers.pull import counts_of, export_and_pull, fast_pulls
from tests.helpers.sandbox import clock_behind

CUSTOMER_PUT = r"/V1/customers/\d+$"
GUEST_POST = r"/V1/emarsys/subscriptions$"
UPSERT = r"/contact/?$"


@pytest.fixture
def pair() -> Iterator[SandboxPair]:
    """A smaller shop than the suite's default (40 customers, 30 subscribers): every
    test here starts with a full export."""
    with SandboxPair(40, 30, seed=3) as p:
        yield p


@pytest.fixture(autouse=True)
def fast_export_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_pulls(monkeypatch)


# -- helpers -------------------------------------------------------------------------------



def pull(magsync: Any, *args: str, config: Path | None = None) -> tuple[Any, dict[str, int]]:
    result = magsync("pull-optin", *args, config=config)
    return result, counts_of(result)


def linked(shop: Shop, status: int, skip: int = 0) -> tuple[int, int]:
    """(customer id, subscriber id) of a customer whose subscriber row has ``status``."""
    found = sorted((s.customer_id, s.subscriber_id) for s in shop.subscribers.values()
                   if s.customer_id and s.subscriber_status == status)
    return found[skip]


def guest(shop: Shop, status: int) -> int:
    return min(s.subscriber_id for s in shop.subscribers.values()
               if not s.customer_id and s.subscriber_status == status)


def unsubscribed_customer(shop: Shop) -> int:
    """A customer with addresses and no subscriber row (Emarsys holds opt-in 2)."""
    with_row = {s.customer_id for s in shop.subscribers.values()}
    return min(cid for cid, c in shop.customers.items()
               if cid not in with_row and c.get("addresses"))


def status_of(shop: Shop, sid: int) -> int:
    return shop.subscribers[sid].subscriber_status


def customer_row(shop: Shop, cid: int) -> Any:
    rows = [s for s in shop.subscribers.values() if s.customer_id == cid]
    assert len(rows) <= 1
    return rows[0] if rows else None


def edit_optin(pair: SandboxPair, key: str, optin: int | None) -> int:
    """Change a contact's opt-in as a person in the Emarsys UI would; its internal id."""
    ids = contact_ids(pair, key)
    assert len(ids) == 1, key
    pair.emarsys.ui_edit(ids[0], {31: optin})
    return ids[0]


def emarsys_optin(pair: SandboxPair, key: str) -> str | None:
    return pair.emarsys.account.contact(contact_ids(pair, key)[0])["31"]


def optin_upserts(pair: SandboxPair, since_seq: int = 0) -> list[dict[str, Any]]:
    """Contacts of every upsert (after ``since_seq``) that carried field 31."""
    out = []
    for r in pair.emarsys.requests("PUT", UPSERT):
        if r.seq > since_seq:
            out += [c for c in r.json()["contacts"] if "31" in c]
    return out


def last_seq(pair: SandboxPair) -> int:
    logged = pair.emarsys.requests()
    return logged[-1].seq if logged else 0


def magento_writes(pair: SandboxPair) -> list[Any]:
    return pair.magento.requests("PUT", CUSTOMER_PUT) + pair.magento.requests("POST",
                                                                            GUEST_POST)


def open_state(tmp_path: Path) -> StateStore:
    return StateStore.open(tmp_path / "state.db")


@pytest.fixture
def exported(pair: SandboxPair, magsync: Any) -> SandboxPair:
    return export_and_pull(pair, magsync)


# -- magsync's own writes ------------------------------------------------------------------

def test_first_pull_after_export_applies_nothing_and_waits_for_the_export(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    assert magsync("export-initial").code == 0
    pair.magento.clear_log()

    result, counts = pull(magsync)

    assert result.code == 0, result
    # getchanges lists every contact magsync just created; each equals what was sent.
    assert counts["read"] == len(pair.emarsys.account.contacts)
    assert counts["unchanged"] == counts["read"]
    assert "applied" not in counts and "unknown" not in counts
    assert magento_writes(pair) == []
    # Classified from the state alone: no customer is read for a row that is no change.
    assert pair.magento.requests("GET", CUSTOMER_PUT) == []
    polls = pair.emarsys.requests("GET", r"/export/\d+$")
    # two exports (getchanges, getresponses), each "scheduled", "in progress", then
    # done: really polled
    assert len(polls) == 6
    assert len(pair.emarsys.requests("GET", r"/export/\d+/data")) == 2
    with open_state(tmp_path) as store:
        assert store.get_watermark("pull-optin") == store.last_runs()["pull-optin"].started_at


def test_getchanges_asks_for_both_keys_email_and_optin_over_the_window(
        exported: SandboxPair, magsync: Any) -> None:
    assert magsync("pull-optin", "--since", "3d").code == 0

    body = exported.emarsys.requests("POST", r"/contact/getchanges")[0].json()
    assert body["contact_fields"] == [int(CUSTOMER_KEY), int(SUBSCRIBER_KEY), 3, 31]
    assert body["distribution_method"] == "local"
    first, last = (date.fromisoformat(d) for d in body["time_range"])
    today = datetime.now(timezone.utc).date()
    # --since 3d, less a day of margin (CET dates may run a day ahead of UTC's).
    assert first <= today - timedelta(days=3) and last >= today + timedelta(days=1)
    # the campaign unsubscribes of the same days
    responses = exported.emarsys.requests("POST", r"/email/getresponses")[0].json()
    assert responses["sources"] == ["unsubscribe"]
    assert responses["contact_fields"] == body["contact_fields"]
    assert responses["time_range"] == [f"{first} 00:00:00",
                                       f"{last + timedelta(days=1)} 00:00:00"]


# -- changes made in Emarsys reach Magento ---------------------------------------------------

def test_optouts_and_an_optin_reach_magento_without_touching_anything_else(
        exported: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    shop = exported.magento.shop
    cid, sid = linked(shop, 1)
    gsid = guest(shop, 1)
    new_cid = unsubscribed_customer(shop)
    before = {c: shop.customer_dict(c) for c in (cid, new_cid)}
    edit_optin(exported, f"c:{cid}", 2)
    edit_optin(exported, f"s:{gsid}", 2)
    edit_optin(exported, f"c:{new_cid}", 1)

    result, counts = pull(magsync)

    assert result.code == 0, result
    assert counts["applied"] == 3 and "failed" not in counts
    assert status_of(shop, sid) == 3 and status_of(shop, gsid) == 3
    assert customer_row(shop, new_cid).subscriber_status == 1
    puts = exported.magento.requests("PUT", CUSTOMER_PUT)
    assert sorted(int(p.path.rsplit("/", 1)[1]) for p in puts) == sorted([cid, new_cid])
    for p in puts:
        assert "addresses" not in p.json()["customer"]
    for c, old in before.items():
        now = shop.customer_dict(c)
        for name in ("updated_at", "extension_attributes"):
            now.pop(name)
            old.pop(name)
        assert now == old  # addresses and every other attribute kept
    guests = exported.magento.requests("POST", GUEST_POST)
    assert [g.json()["subscriptions"][0]["subscriber_status"] for g in guests] == [False]
    with open_state(tmp_path) as store:
        assert store.get_contact(f"c:{cid}").sent["31"] == 2  # type: ignore[union-attr]
        assert store.get_contact(f"c:{new_cid}").sent["_m31"] == 1  # type: ignore[union-attr]
        assert store.mirror_get(sid).status == 3  # type: ignore[union-attr]
        assert store.mirror_get(gsid).status == 3  # type: ignore[union-attr]


def test_what_pull_wrote_is_not_echoed_by_the_next_runs(
        exported: SandboxPair, magsync: Any) -> None:
    shop = exported.magento.shop
    cid, _ = linked(shop, 1)
    gsid = guest(shop, 1)
    new_cid = unsubscribed_customer(shop)
    edit_optin(exported, f"c:{cid}", 2)
    edit_optin(exported, f"s:{gsid}", 2)
    edit_optin(exported, f"c:{new_cid}", 1)
    assert pull(magsync)[1]["applied"] == 3
    mark = last_seq(exported)
    exported.magento.clear_log()

    again, counts = pull(magsync)
    realtime = magsync("sync-realtime")
    background = magsync("sync-background")

    assert again.code == 0 and "applied" not in counts
    assert magento_writes(exported) == []
    assert realtime.code == 0, realtime
    assert background.code == 0, background
    assert optin_upserts(exported, mark) == []  # no opt-in went back to Emarsys
    assert emarsys_optin(exported, f"c:{cid}") == "2"
    assert emarsys_optin(exported, f"c:{new_cid}") == "1"


def test_empty_emarsys_value_is_no_change(exported: SandboxPair, magsync: Any) -> None:
    shop = exported.magento.shop
    cid, sid = linked(shop, 1)
    edit_optin(exported, f"c:{cid}", None)

    result, counts = pull(magsync)

    assert result.code == 0
    assert "applied" not in counts and counts["unchanged"] >= 1
    assert status_of(shop, sid) == 1
    assert magento_writes(exported) == []


def test_change_on_both_sides_ends_as_optout_on_both(pair: SandboxPair, magsync: Any,
                                                    tmp_path: Path) -> None:
    shop = pair.magento.shop
    cid, sid = linked(shop, 1)
    # Emarsys already held an opt-out for this person: the export adopts the contact
    # and keeps the opt-out (a consent conflict), so magsync knows 31=2, Magento 1.
    pair.emarsys.seed_contact({3: shop.customers[cid]["email"], 31: 2})
    assert magsync("export-initial").code == 0
    assert emarsys_optin(pair, f"c:{cid}") == "2"
    # Then both sides change: the person opts in by an Emarsys form, and unsubscribes
    # in the shop.
    edit_optin(pair, f"c:{cid}", 1)
    shop.unsubscribe(sid)
    mark = last_seq(pair)

    result, counts = pull(magsync)

    assert result.code == 0, result
    assert counts["conflicts"] == 1
    assert status_of(shop, sid) == 3
    assert emarsys_optin(pair, f"c:{cid}") == "2"
    assert optin_upserts(pair, mark) == [{CUSTOMER_KEY: str(cid), "31": 2}]
    with open_state(tmp_path) as store:
        kinds = [(k, key) for k, key, _, _ in store.reports(store.last_runs()[
            "pull-optin"].id)]
        assert ("consent_conflict", f"c:{cid}") in kinds
    mark = last_seq(pair)
    assert magsync("sync-realtime").code == 0
    assert optin_upserts(pair, mark) == []


# -- confirmation required -------------------------------------------------------------------

def test_subscribe_landing_as_not_active_is_not_written_again(
        exported: SandboxPair, magsync: Any) -> None:
    shop = exported.magento.shop
    exported.magento.confirmation_required = True
    cid, sid = linked(shop, 3)
    edit_optin(exported, f"c:{cid}", 1)

    first, counts = pull(magsync)
    assert first.code == 0 and counts["applied"] == 1
    assert status_of(shop, sid) == 2  # awaiting the shopper's confirmation
    exported.magento.clear_log()

    again, counts = pull(magsync)

    assert again.code == 0 and "applied" not in counts
    assert magento_writes(exported) == []  # no second confirmation mail
    assert status_of(shop, sid) == 2


# -- unknown keys and failing rows --------------------------------------------------------------

def test_unknown_keys_are_reported_and_skipped(exported: SandboxPair, magsync: Any,
                                               tmp_path: Path) -> None:
    sb = exported.emarsys
    ghost_customer = sb.seed_contact({3: "ghost@example.com", int(CUSTOMER_KEY): "99999"})
    ghost_guest = sb.seed_contact({3: "gone@example.com", int(SUBSCRIBER_KEY): "88888"})
    stranger = sb.seed_contact({3: "stranger@example.com"})
    for cid in (ghost_customer, ghost_guest, stranger):
        sb.ui_edit(cid, {31: 2})

    result, counts = pull(magsync)

    assert result.code == 0, result
    assert counts["unknown"] == 2 and counts["ignored"] == 1
    assert magento_writes(exported) == []
    assert "unknown_key c:99999" in result.out and "unknown_key s:88888" in result.out
    with open_state(tmp_path) as store:
        assert store.queue_items(dead=None, kind=None) == []
        assert store.get_contact("c:99999") is None
        assert store.get_watermark("pull-optin") == store.last_runs()["pull-optin"].started_at


def test_failing_row_holds_the_watermark_until_it_is_dead(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    config = pair.write_config(tmp_path / "two.yaml", tmp_path / "state.db",
                               sync={"max_attempts": 2})
    shop = pair.magento.shop
    assert magsync("export-initial", config=config).code == 0
    assert magsync("pull-optin", config=config).code == 0
    cid, sid = linked(shop, 1)
    ok_cid, ok_sid = linked(shop, 1, skip=1)
    edit_optin(pair, f"c:{cid}", 2)
    edit_optin(pair, f"c:{ok_cid}", 2)
    # A record Magento's validation now refuses (a required attribute went empty): the
    # shop answers every PUT of this customer with HTTP 400.
    shop.edit_customer(cid, firstname="")
    with open_state(tmp_path) as store:
        mark = store.get_watermark("pull-optin")

    first, counts = pull(magsync, config=config)

    assert first.code == 1, first
    assert counts["failed"] == 1 and counts["applied"] == 1 and "dead" not in counts
    assert f"c:{cid}" in first.err and "watermark stays" in first.err
    assert status_of(shop, ok_sid) == 3 and status_of(shop, sid) == 1
    with open_state(tmp_path) as store:
        assert store.get_watermark("pull-optin") == mark
        [item] = store.queue_items(dead=None, kind="pull")
        assert (item.key, item.attempts, item.dead) == (f"c:{cid}", 1, False)
        assert "firstname" in (item.last_error or "")
        assert store.get_contact(f"c:{cid}").sent["31"] == 1  # type: ignore[union-attr]

    second, counts = pull(magsync, config=config)

    assert second.code == 1, second
    assert counts["failed"] == 1 and counts["dead"] == 1
    assert "watermark stays" not in second.out
    with open_state(tmp_path) as store:
        assert store.get_watermark("pull-optin") == store.last_runs()["pull-optin"].started_at
        [item] = store.queue_items(dead=True, kind="pull")
        assert (item.key, item.attempts) == (f"c:{cid}", 2)
    listed = magsync("queue", "list", "--dead", config=config)
    assert f"c:{cid}" in listed.out

    third, counts = pull(magsync, config=config)

    assert third.code == 0, third  # an old dead row neither fails the run nor holds it
    assert "failed" not in counts


def test_row_that_succeeds_later_leaves_the_pull_queue(
        exported: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    shop = exported.magento.shop
    cid, sid = linked(shop, 1)
    edit_optin(exported, f"c:{cid}", 2)
    name = shop.customers[cid]["firstname"]
    shop.edit_customer(cid, firstname="")
    assert magsync("pull-optin").code == 1
    shop.edit_customer(cid, firstname=name)

    result, counts = pull(magsync)

    assert result.code == 0, result
    assert counts["applied"] == 1 and status_of(shop, sid) == 3
    with open_state(tmp_path) as store:
        assert store.queue_items(dead=None, kind=None) == []
        assert store.get_watermark("pull-optin") == store.last_runs()["pull-optin"].started_at


def test_outage_at_the_write_stops_the_run_and_holds_the_watermark(
        exported: SandboxPair, magsync: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGSYNC_RETRY_BUDGET", "0.3")
    cid, sid = linked(exported.magento.shop, 1)
    edit_optin(exported, f"c:{cid}", 2)
    with open_state(tmp_path) as store:
        mark = store.get_watermark("pull-optin")
    shop_before_route = exported.magento.before_route

    def down_for_writes(req: Request) -> Response | None:
        # Magento answers reads but fails every customer save with a 500.
        if req.method == "PUT":
            return Response.json({"message": "Internal Error. Report ID: webapi-1"}, 500)
        return shop_before_route(req)

    exported.magento.before_route = down_for_writes  # type: ignore[method-assign]

    result = magsync("pull-optin")

    assert result.code == 3, result  # an outage, not a refused row: nothing is queued
    with open_state(tmp_path) as store:
        assert store.get_watermark("pull-optin") == mark
        assert store.queue_items(dead=None, kind=None) == []
    exported.magento.before_route = shop_before_route  # type: ignore[method-assign]
    assert pull(magsync)[1]["applied"] == 1
    assert status_of(exported.magento.shop, sid) == 3


def test_guest_who_registered_is_written_as_the_customer_and_keeps_one_contact(
        exported: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    shop = exported.magento.shop
    # The shop's clock runs a few seconds behind, so that the customer's updated_at is
    # safely inside the next sync's window (its upper bound is exclusive, in seconds).
    clock_behind(shop, timedelta(seconds=5))
    gsid = guest(shop, 1)
    contact_id = edit_optin(exported, f"s:{gsid}", 2)
    cid = shop.register_guest(shop.subscribers[gsid].subscriber_email)

    result, counts = pull(magsync)

    assert result.code == 0, result
    assert counts["applied"] == 1 and status_of(shop, gsid) == 3
    [put] = exported.magento.requests("PUT", CUSTOMER_PUT)
    assert put.path.endswith(f"/customers/{cid}")
    assert exported.magento.requests("POST", GUEST_POST) == []  # the module is for guests
    with open_state(tmp_path) as store:
        assert store.get_contact(f"c:{cid}") is None
        assert store.get_contact(f"s:{gsid}").sent["31"] == 2  # type: ignore[union-attr]
    mark = last_seq(exported)
    assert magsync("sync-realtime").code == 0
    # The next sync takes the guest's contact over (SPEC 3, rule 4): one contact, no
    # opt-in sent back.
    assert exported.emarsys.find_contacts(int(CUSTOMER_KEY), str(cid)) == [contact_id]
    assert optin_upserts(exported, mark) == []


# -- dry run ----------------------------------------------------------------------------------

def test_dry_run_reads_everything_and_writes_nothing(exported: SandboxPair, magsync: Any,
                                                    tmp_path: Path) -> None:
    shop = exported.magento.shop
    cid, sid = linked(shop, 1)
    gsid = guest(shop, 1)
    edit_optin(exported, f"c:{cid}", 2)
    edit_optin(exported, f"s:{gsid}", 2)
    with open_state(tmp_path) as store:
        mark = store.get_watermark("pull-optin")
        records = {k: store.get_contact(k) for k in (f"c:{cid}", f"s:{gsid}")}

    result, counts = pull(magsync, "--dry-run")

    assert result.code == 0, result
    assert "dry run" in result.out and counts["applied"] == 2
    assert magento_writes(exported) == []
    assert exported.emarsys.requests("PUT", UPSERT) == []
    assert status_of(shop, sid) == 1 and status_of(shop, gsid) == 1
    with open_state(tmp_path) as store:
        assert store.get_watermark("pull-optin") == mark
        assert {k: store.get_contact(k) for k in records} == records
        assert store.queue_items(dead=None, kind=None) == []
    assert pull(magsync)[1]["applied"] == 2  # the real run still finds both


# -- subscribers: none --------------------------------------------------------------------------

def test_without_the_module_a_customer_optout_uses_is_subscribed(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    config = pair.write_config(tmp_path / "none.yaml", tmp_path / "state.db",
                               magento={"subscribers": "none"})
    shop = pair.magento.shop
    assert magsync("export-initial", config=config).code == 0
    cid, sid = linked(shop, 1)
    edit_optin(pair, f"c:{cid}", 2)
    stray = pair.emarsys.seed_contact({3: "stray@example.com", int(SUBSCRIBER_KEY): "77"})
    pair.emarsys.ui_edit(stray, {31: 2})  # a subscriber id means nothing without the module

    result, counts = pull(magsync, config=config)

    assert result.code == 0, result
    assert counts["applied"] == 1 and status_of(shop, sid) == 3
    assert counts["unknown"] == 1 and "unknown_key s:77" in result.out
    assert pair.magento.requests("GET", GUEST_POST) == []  # no subscriber list read


# -- pieces ---------------------------------------------------------------------------------------

def test_window_starts_one_day_back_then_at_the_watermark_widened_by_since(
        tmp_path: Path) -> None:
    now = datetime(2026, 5, 10, 12, tzinfo=timezone.utc)
    with StateStore.open(tmp_path / "s.db") as store:
        assert window_start(store, now, None) == now - timedelta(days=1)
        store.set_watermark("pull-optin", now - timedelta(hours=2))
        assert window_start(store, now, None) == now - timedelta(hours=2)
        assert window_start(store, now, now - timedelta(hours=1)) == now - timedelta(hours=2)
        assert window_start(store, now, now - timedelta(days=3)) == now - timedelta(days=3)
    # 22:30 UTC is already the next day in CET (summer: UTC+2): the dates are CET's.
    late = datetime(2026, 5, 10, 23, 30, tzinfo=timezone.utc)
    assert changes_dates(late - timedelta(hours=1), late) == (date(2026, 5, 10),
                                                              date(2026, 5, 12))


def test_columns_are_found_by_field_name_and_values_parsed() -> None:
    names = {7001: "Magento Customer ID", 7002: "Magento Subscriber ID", 31: "Opt-In"}
    cols = find_columns(["user_id", "magento customer id", "Magento Subscriber ID",
                         "Opt-In"], names, 7001, 7002)
    row = parse_row({"user_id": "1", "magento customer id": "12.0",
                     "Magento Subscriber ID": "", "Opt-In": "False"}, cols)
    assert (row.customer_id, row.subscriber_id, row.optin) == (12, None, "False")
    assert parse_row({"magento customer id": "x1", "Opt-In": ""}, cols).bad_key == "x1"
    with pytest.raises(Exception, match="no opt-in or key column"):
        find_columns(["user_id", "Magento Customer ID"], names, 7001, 7002)


def test_export_wait_from_options_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    own = ExportWait(first=0.5)
    assert export_wait(PullOptions(wait=own)) is own
    monkeypatch.setenv(EXPORT_POLL_ENV, "0.25")
    assert (export_wait(PullOptions()).first, export_wait(PullOptions()).most) == (0.25, 0.25)
    monkeypatch.setenv(EXPORT_POLL_ENV, "soon")
    with pytest.raises(Exception, match=EXPORT_POLL_ENV):
        export_wait(PullOptions())


def test_status_lists_the_pull_run(exported: SandboxPair, magsync: Any) -> None:
    data = json.loads(magsync("status", "--json").out)
    assert "pull-optin" in data["watermarks"]
    assert data["runs"]["pull-optin"]["outcome"] == "ok"
