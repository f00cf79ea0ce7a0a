"""``magsync export-initial`` end to end: the real CLI against both simulators on loopback.

What the whole export leaves in Emarsys, adoption of existing contacts, consent, the
command's options and its configuration errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from magsync.sandbox.pair import SandboxPair
from magsync.state import StateStore
from magsync.statelock import StateLock
from tests.helpers.export_checks import (
    CUSTOMER_KEY,
    SUBSCRIBER_KEY,
    assert_export_complete,
    count_requests,
    expected_contacts,
    upserted_keys,
)

WRITE_PATHS = r"/contact/?$|/contactlist/\d+/add"


def _status(magsync: Any) -> dict[str, Any]:
    result = magsync("status", "--json")
    assert result.code == 0, result
    return dict(json.loads(result.out))


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

    status = _status(magsync)
    assert set(status["watermarks"]) >= {"sync-realtime", "sync-background"}
    run = status["runs"]["export-initial"]
    assert run["outcome"] == "ok" and run["exit_code"] == 0
    assert status["contacts"] == len(expected_contacts(pair.magento.shop))
    with StateStore.open(tmp_path / "state.db") as store:
        assert store.get_checkpoint("export-initial") is None
        started = store.last_runs()["export-initial"].started_at
        assert store.get_watermark("sync-realtime") == started


def test_second_export_sends_nothing(pair: SandboxPair, magsync: Any) -> None:
    assert magsync("export-initial").code == 0
    upserts = count_requests(pair, "PUT", r"/contact/?$")

    again = magsync("export-initial")

    assert again.code == 0, again
    assert count_requests(pair, "PUT", r"/contact/?$") == upserts
    assert_export_complete(pair)
