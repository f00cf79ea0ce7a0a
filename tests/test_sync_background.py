"""``magsync sync-background`` end to end: background-only mode, ``--since`` (which only
widens the window), a mapping change reaching every contact, ``--dry-run`` and an outage.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from magsync.sandbox.pair import DEFAULT_MAPPING, SandboxPair
from tests.helpers.cli import status_of
from tests.helpers.export_checks import CUSTOMER_KEY, contact_ids
from tests.helpers.sandbox import clock_behind, request_seq

UPSERT = r"/contact/?$"
LOYALTY = "custom_attributes.loyalty_tier"



def _upserted(pair: SandboxPair, since: int) -> dict[str, dict[str, Any]]:
    """Customer id -> payload of each accepted upsert keyed on customer id after ``since``."""
    out: dict[str, dict[str, Any]] = {}
    for r in pair.emarsys.requests("PUT", UPSERT):
        body = r.json() or {}
        if r.seq > since and r.status == 200 and str(body.get("key_id")) == CUSTOMER_KEY:
            out.update({str(c[CUSTOMER_KEY]): c for c in body["contacts"]})
    return out


def _field(pair: SandboxPair, cid: int, field: str) -> Any:
    found = contact_ids(pair, f"c:{cid}")
    assert len(found) == 1, (cid, found)
    return pair.emarsys.account.contact(found[0]).get(field)


@pytest.fixture
def background(pair: SandboxPair, tmp_path: Path) -> Path:
    """A ``background-only`` config for the pair."""
    return pair.write_config(tmp_path / "background.yaml", tmp_path / "state.db",
                             sync={"mode": "background-only"})


# -- background-only mode and --since ---------------------------------------------------------

def test_background_only_mode_sends_the_changes_since_its_last_run(
        pair: SandboxPair, magsync: Any, background: Path) -> None:
    shop = pair.magento.shop
    assert magsync("export-initial", config=background).code == 0
    clock_behind(shop)
    edited = sorted(shop.customers)[:5]
    for cid in edited:
        shop.edit_customer(cid, lastname=f"Background{cid}")
    seq = request_seq(pair)

    result = magsync("sync-background", config=background)

    assert result.code == 0, result
    assert sorted(_upserted(pair, seq)) == sorted(str(c) for c in edited)
    for cid in edited:
        assert _upserted(pair, seq)[str(cid)] == {CUSTOMER_KEY: str(cid),
                                                  "2": f"Background{cid}"}
    status = status_of(magsync, background)
    assert status["runs"]["sync-background"]["exit_code"] == 0
    assert status["watermarks"]["sync-background"] > status["runs"]["export-initial"][
        "started_at"]
    seq = request_seq(pair)

    again = magsync("sync-background", config=background)

    assert again.code == 0, again
    assert _upserted(pair, seq) == {}


def test_since_widens_the_window_to_older_changes(pair: SandboxPair, magsync: Any,
                                                  background: Path) -> None:
    shop = pair.magento.shop
    assert magsync("export-initial", config=background).code == 0
    old = min(shop.customers)
    # a change Magento dated three days back (e.g. an import that kept its timestamps)
    clock_behind(shop, timedelta(days=3))
    shop.edit_customer(old, firstname="ThreeDaysAgo")
    seq = request_seq(pair)

    plain = magsync("sync-background", config=background)

    assert plain.code == 0, plain
    assert str(old) not in _upserted(pair, seq)
    seq = request_seq(pair)

    later = magsync("sync-background", "--since", "1h", config=background)

    assert later.code == 0, later  # a --since later than the watermark changes nothing
    assert _upserted(pair, seq) == {}
    seq = request_seq(pair)

    wider = magsync("sync-background", "--since", "4d", config=background)

    assert wider.code == 0, wider
    assert _upserted(pair, seq) == {str(old): {CUSTOMER_KEY: str(old), "1": "ThreeDaysAgo"}}
    assert _field(pair, old, "1") == "ThreeDaysAgo"


def test_since_takes_an_iso_date_too(pair: SandboxPair, magsync: Any,
                                     background: Path) -> None:
    shop = pair.magento.shop
    assert magsync("export-initial", config=background).code == 0
    old = max(shop.customers)
    clock_behind(shop, timedelta(days=5))
    shop.edit_customer(old, firstname="FiveDaysAgo")
    when = (datetime.now() - timedelta(days=6)).date().isoformat()  # local date

    result = magsync("sync-background", "--since", when, config=background)

    assert result.code == 0, result
    assert _field(pair, old, "1") == "FiveDaysAgo"


def test_a_bad_since_is_a_usage_error(pair: SandboxPair, magsync: Any,
                                      background: Path) -> None:
    result = magsync("sync-background", "--since", "yesterday-ish", config=background)

    assert result.code == 2, result
    assert "--since" in result.err
    assert pair.emarsys.requests("PUT", UPSERT) == []


# -- a mapping change --------------------------------------------------------------------------

def _loyalty_config(pair: SandboxPair, tmp_path: Path) -> Path:
    return pair.write_config(tmp_path / "loyalty.yaml", tmp_path / "state.db",
                             mapping={**DEFAULT_MAPPING, LOYALTY: "Loyalty tier"})


def _tier(customer: dict[str, Any]) -> str | None:
    return next((a["value"] for a in customer.get("custom_attributes") or []
                 if a["attribute_code"] == "loyalty_tier"), None)


def test_a_newly_mapped_field_reaches_every_customer_through_sync_background(
        pair: SandboxPair, magsync: Any, config_file: Path, tmp_path: Path) -> None:
    shop = pair.magento.shop
    assert magsync("export-initial").code == 0
    old_hash = status_of(magsync, config_file)["mapping_hash"]
    loyalty = _loyalty_config(pair, tmp_path)

    missing = magsync("sync-realtime", config=loyalty)

    assert missing.code == 2, missing  # the field does not exist yet
    assert "Loyalty tier" in missing.err and "fields --create-missing" in missing.err
    assert magsync("fields", "--create-missing", config=loyalty).code == 0
    field = pair.emarsys.account.field_by_name("Loyalty tier")
    assert field is not None
    fid = str(field.id)
    clock_behind(shop)
    edited = min(shop.customers)
    shop.edit_customer(edited, firstname="RealtimeFirst")

    realtime = magsync("sync-realtime", config=loyalty)

    assert realtime.code == 0, realtime
    assert _field(pair, edited, fid) == _tier(shop.customers[edited])
    assert status_of(magsync, loyalty)["mapping_hash"] == old_hash  # not recorded
    seq = request_seq(pair)

    result = magsync("sync-background", config=loyalty)

    assert result.code == 0, result
    assert "mapping changed" in result.out
    sent = _upserted(pair, seq)
    tiered = {cid for cid, c in shop.customers.items() if _tier(c)}
    assert tiered and len(tiered) < len(shop.customers)
    # every customer with a tier got it, and nothing but it (edited: already had it)
    assert set(sent) == {str(c) for c in tiered - {edited}}
    for cid in tiered - {edited}:
        assert sent[str(cid)] == {CUSTOMER_KEY: str(cid), fid: _tier(shop.customers[cid])}
    for cid in tiered:
        assert _field(pair, cid, fid) == _tier(shop.customers[cid])
    new_hash = status_of(magsync, loyalty)["mapping_hash"]
    assert new_hash and new_hash != old_hash
    seq = request_seq(pair)

    again = magsync("sync-background", config=loyalty)

    assert again.code == 0, again
    assert "mapping changed" not in again.out
    assert _upserted(pair, seq) == {}


def test_dry_run_records_no_mapping_and_moves_no_watermark(
        pair: SandboxPair, magsync: Any, config_file: Path, tmp_path: Path) -> None:
    assert magsync("export-initial").code == 0
    loyalty = _loyalty_config(pair, tmp_path)
    assert magsync("fields", "--create-missing", config=loyalty).code == 0
    before = status_of(magsync, loyalty)
    seq = request_seq(pair)

    result = magsync("sync-background", "--dry-run", config=loyalty)

    assert result.code == 0, result
    assert "dry run" in result.out
    assert [r for r in pair.emarsys.requests() if r.seq > seq and r.method != "GET"
            and not r.path.endswith("/getdata")] == []
    after = status_of(magsync, loyalty)
    assert after["mapping_hash"] == before["mapping_hash"]
    assert after["watermarks"] == before["watermarks"]

    real = magsync("sync-background", config=loyalty)

    assert real.code == 0, real
    assert "mapping changed" in real.out


# -- an outage ---------------------------------------------------------------------------------

def test_emarsys_down_holds_the_background_watermark_and_the_mapping(
        pair: SandboxPair, magsync: Any, background: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGSYNC_RETRY_BUDGET", "0.3")
    shop = pair.magento.shop
    assert magsync("export-initial", config=background).code == 0
    before = status_of(magsync, background)
    clock_behind(shop)
    shop.edit_customer(min(shop.customers), firstname="AfterOutage")
    pair.emarsys.faults.fail_next(100000, 503)
    try:
        down = magsync("sync-background", config=background)
    finally:
        pair.emarsys.faults.clear()

    assert down.code == 3, down
    after = status_of(magsync, background)
    assert after["watermarks"] == before["watermarks"]
    assert after["queue"] == {"queued": 0, "dead": 0}

    back = magsync("sync-background", config=background)

    assert back.code == 0, back
    assert _field(pair, min(shop.customers), "1") == "AfterOutage"
