"""Which ``getdata`` lookups a first send makes (SPEC 3 rules 4 and 6): by email always;
by subscriber id only for a subscriber magsync sent as a guest, since no other contact can
carry a subscriber id but one magsync sent. End to end through the CLI."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from magsync.sandbox.pair import SandboxPair
from tests.helpers.export_checks import (
    CUSTOMER_KEY,
    SUBSCRIBER_KEY,
    assert_export_complete,
    contact_ids,
)

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


def test_a_runs_opt_in_checks_share_one_lookup(pair: SandboxPair, magsync: Any,
                                               tmp_path: Any) -> None:
    """Only a re-subscribe needs the Emarsys opt-in read first (consent); the few in a
    run wait for the last job, so they cost one getdata, not one in every job."""
    config = pair.write_config(tmp_path / "m.yaml", tmp_path / "state.db",
                               emarsys={"batch_size": 20},
                               sync={"subscriber_scan_minutes": 0})
    assert magsync("export-initial", config=config).code == 0
    shop = pair.magento.shop
    shop.now = lambda: datetime.now(timezone.utc) - timedelta(seconds=3)
    position = {cid: i for i, cid in enumerate(sorted(shop.customers))}
    blocks: dict[int, Any] = {}  # one unsubscribed customer in each of 3 jobs of 20
    for s in sorted(shop.subscribers.values(), key=lambda s: s.subscriber_id):
        if s.customer_id and s.subscriber_status == 3:
            blocks.setdefault(position[s.customer_id] // 20, s)
    subs = list(blocks.values())[:3]
    assert len(subs) == 3
    for cid in sorted(shop.customers):  # every customer edited: 6 jobs of 20
        shop.edit_customer(cid, lastname=f"Edited {cid}")
    for s in subs:  # spread over those jobs, each needs its opt-in read
        shop.subscribe(s.subscriber_id)
    before = len(_lookups(pair))

    result = magsync("sync-realtime", config=config)

    assert result.code == 0, result
    assert _lookups(pair)[before:] == [CUSTOMER_KEY]
    for s in subs:
        [contact] = contact_ids(pair, f"c:{s.customer_id}")
        assert pair.emarsys.account.contact(contact)["31"] == "1"
