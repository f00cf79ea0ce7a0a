"""Which ``getdata`` lookups a first send makes (SPEC 3 rules 4 and 6): by email always;
by subscriber id only for a subscriber magsync sent as a guest, since no other contact can
carry a subscriber id but one magsync sent. End to end through the CLI."""

from __future__ import annotations

from typing import Any

from magsync.sandbox.pair import SandboxPair
from tests.helpers.export_checks import (
    CUSTOMER_KEY,
    SUBSCRIBER_KEY,
    assert_export_complete,
    contact_ids,
)
from tests.helpers.sandbox import clock_behind

GETDATA = r"/contact/getdata$"


def _lookups(pair: SandboxPair) -> list[str]:
    return [r.json()["keyId"] for r in pair.emarsys.requests("POST", GETDATA)]


def test_a_guest_upserted_by_a_killed_run_who_then_registered_keeps_the_contact(
        pair: SandboxPair, magsync: Any) -> None:
    """The guest's contact exists (a run upserted it and was killed before it recorded
    it); the guest registers before the next run, which never saw them as a guest: the
    email lookup finds the contact carrying their subscriber id, and the customer id is
    attached to it (rule 4) rather than a second contact created."""
    shop = pair.magento.shop
    guest = next(s for s in sorted(shop.subscribers.values(), key=lambda s: s.subscriber_id)
                 if not s.customer_id and s.subscriber_status == 1)
    kept = pair.emarsys.seed_contact({3: guest.subscriber_email, 31: 1,
                                      int(SUBSCRIBER_KEY): guest.subscriber_id})
    cid = shop.register_guest(guest.subscriber_email, guest.website_id)

    result = magsync("export-initial")

    assert result.code == 0, result
    assert contact_ids(pair, f"c:{cid}") == [kept]
    contact = pair.emarsys.account.contact(kept)
    assert (contact[CUSTOMER_KEY], contact[SUBSCRIBER_KEY]) == (str(cid),
                                                                str(guest.subscriber_id))
    assert_export_complete(pair)
    assert set(_lookups(pair)) == {"3"}  # nobody was looked up by subscriber id


def _one_customer_subscriber_per_job(shop: Any, status: int, jobs: int = 3) -> list[Any]:
    """A customer's subscriber row in each of ``jobs`` jobs of 20 (``batch_size: 20``,
    customers sent in id order), each set to ``status``."""
    position = {cid: i for i, cid in enumerate(sorted(shop.customers))}
    blocks: dict[int, Any] = {}
    for s in sorted(shop.subscribers.values(), key=lambda s: s.subscriber_id):
        if s.customer_id:
            blocks.setdefault(position[s.customer_id] // 20, s)
    subs = list(blocks.values())[:jobs]
    assert len(subs) == jobs
    for s in subs:
        shop.set_subscriber_status(s.subscriber_id, status)
    return subs


def _resubscribe_run(pair: SandboxPair, magsync: Any, tmp_path: Any,
                     status_before: int) -> list[str]:
    """Export with three customers' rows at ``status_before`` (each in its own job),
    edit every customer, subscribe the three, run sync-realtime; the run's getdata key
    ids."""
    config = pair.write_config(tmp_path / "m.yaml", tmp_path / "state.db",
                               emarsys={"batch_size": 20},
                               sync={"subscriber_scan_minutes": 0})
    shop = pair.magento.shop
    subs = _one_customer_subscriber_per_job(shop, status_before)
    assert magsync("export-initial", config=config).code == 0
    clock_behind(shop)
    for cid in sorted(shop.customers):  # every customer edited: 6 jobs of 20
        shop.edit_customer(cid, lastname=f"Edited {cid}")
    for s in subs:
        shop.subscribe(s.subscriber_id)
    before = len(_lookups(pair))

    result = magsync("sync-realtime", config=config)

    assert result.code == 0, result
    for s in subs:
        [contact] = contact_ids(pair, f"c:{s.customer_id}")
        assert pair.emarsys.account.contact(contact)["31"] == "1"
    return _lookups(pair)[before:]


def test_a_runs_opt_in_checks_share_one_lookup(pair: SandboxPair, magsync: Any,
                                               tmp_path: Any) -> None:
    """A subscribe whose opt-in magsync never synced (the row was pending, status 2)
    needs the Emarsys opt-in read first (consent); the few in a run wait for the last
    job, so they cost one getdata, not one in every job."""
    assert _resubscribe_run(pair, magsync, tmp_path, status_before=2) == [CUSTOMER_KEY]


def test_a_resubscribe_over_magsyncs_own_opt_out_reads_nothing(
        pair: SandboxPair, magsync: Any, tmp_path: Any) -> None:
    """Magsync sent the opt-out (status 3) itself: whatever Emarsys holds now, opt-in 1
    is sent (a 2 there is no change on that side; 1 or empty agree), so no getdata."""
    assert _resubscribe_run(pair, magsync, tmp_path, status_before=3) == []


def test_a_subscribe_over_an_opt_out_made_in_emarsys_is_not_sent(
        pair: SandboxPair, magsync: Any, tmp_path: Any) -> None:
    """The row was pending when exported (no opt-in sent); meanwhile the person opted
    out in Emarsys. Magento's subscribe is read against that and not sent."""
    config = pair.write_config(tmp_path / "m.yaml", tmp_path / "state.db",
                               sync={"subscriber_scan_minutes": 0})
    shop = pair.magento.shop
    [sub] = _one_customer_subscriber_per_job(shop, 2, jobs=1)
    assert magsync("export-initial", config=config).code == 0
    [contact] = contact_ids(pair, f"c:{sub.customer_id}")
    pair.emarsys.account.ui_edit(contact, {31: 2})
    clock_behind(shop)
    shop.subscribe(sub.subscriber_id)

    result = magsync("sync-realtime", config=config)

    assert result.code == 0, result
    assert pair.emarsys.account.contact(contact)["31"] == "2"
    assert "consent" in (result.out + result.err).lower(), result
