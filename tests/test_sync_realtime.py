"""``magsync sync-realtime`` end to end: the real CLI against both simulators on loopback.

After an export: edits, a new customer, an email change, a guest who registers and an
unsubscribe reach Emarsys (changed fields only, one contact per person, lists right); a
change made during a run goes with the next run; an Emarsys outage holds the watermark;
``--dry-run``, ``-q``, the run lock and ``status``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from magsync.sandbox.pair import SandboxPair
from magsync.state.lock import StateLock
from magsync.util.timeutil import utcnow
from tests.helpers.cli import status_of
from tests.helpers.export_checks import (
    CUSTOMER_KEY,
    CUSTOMERS_LIST,
    SUBSCRIBER_KEY,
    SUBSCRIBERS_LIST,
    assert_export_complete,
    contact_ids,
)
from tests.helpers.sandbox import clock_behind, lowest_row, request_seq
from tests.helpers.state import mark_exported

UPSERT = r"/contact/?$"
SEARCH = r"/V1/customers/search"
LIST_ADD = r"/contactlist/\d+/add$"



def _upserts(pair: SandboxPair) -> list[Any]:
    return [r for r in pair.emarsys.requests("PUT", UPSERT) if r.status == 200]


def _writes_since(pair: SandboxPair, contact_id: int, seq: int) -> list[dict[str, Any]]:
    return [fields for s, fields in pair.emarsys.writes_for(contact_id) if s > seq]


def _one(pair: SandboxPair, key: str) -> int:
    found = contact_ids(pair, key)
    assert len(found) == 1, (key, found)
    return found[0]


def _exported(magsync: Any, pair: SandboxPair) -> int:
    """Run the initial export; afterwards the shop clock runs a few seconds behind, so
    every edit lands safely inside the next run's window. Returns the request seq."""
    assert magsync("export-initial").code == 0
    clock_behind(pair.magento.shop)
    return request_seq(pair)


# -- what a run sends -----------------------------------------------------------------------

def test_changes_after_an_export_are_sent_once_with_only_the_changed_fields(
        pair: SandboxPair, magsync: Any) -> None:
    shop = pair.magento.shop
    seq = _exported(magsync, pair)
    unsub = lowest_row(pair)
    unsub_cid, unsub_sid = unsub.customer_id, unsub.subscriber_id
    edited = next(c for c in sorted(shop.customers) if c != unsub_cid)
    moved = next(c for c in sorted(shop.customers) if c not in (unsub_cid, edited))
    guest = lowest_row(pair, guest=True)
    guest_contact = _one(pair, f"s:{guest.subscriber_id}")
    before = {k: _one(pair, f"c:{k}") for k in (edited, moved, unsub_cid)}

    shop.edit_customer(edited, firstname="Renamed")
    shop.change_email(moved, "moved.elsewhere@example.org")
    new_cid = shop.create_customer(email="brand.new@example.org", firstname="Brand",
                                   lastname="New")
    registered = shop.register_guest(guest.subscriber_email, guest.website_id,
                                     firstname="Now", lastname="Registered")
    shop.unsubscribe(unsub_sid)

    result = magsync("sync-realtime")

    assert result.code == 0, result
    ids = assert_export_complete(pair)  # every person once, every field, both lists
    assert len(pair.emarsys.account.contacts) == len(ids)
    assert _writes_since(pair, before[edited], seq) == [{CUSTOMER_KEY: str(edited),
                                                         "1": "Renamed"}]
    assert _writes_since(pair, before[moved], seq) == [
        {CUSTOMER_KEY: str(moved), "3": "moved.elsewhere@example.org"}]
    unsub_writes = _writes_since(pair, before[unsub_cid], seq)
    assert unsub_writes == [{CUSTOMER_KEY: str(unsub_cid), "31": 2}], unsub_writes
    assert ids[f"c:{new_cid}"] not in before.values()
    # the registered guest keeps its contact, which gains the customer id
    assert ids[f"c:{registered}"] == guest_contact
    contact = pair.emarsys.account.contact(guest_contact)
    assert contact[SUBSCRIBER_KEY] == str(guest.subscriber_id)
    assert contact[CUSTOMER_KEY] == str(registered)
    assert guest_contact in pair.emarsys.account.list_members(CUSTOMERS_LIST)
    assert guest_contact in pair.emarsys.account.list_members(SUBSCRIBERS_LIST)
    guest_writes = _writes_since(pair, guest_contact, seq)
    # the attach, then the names it did not have (email and opt-in are unchanged)
    assert guest_writes[0] == {SUBSCRIBER_KEY: str(guest.subscriber_id),
                               CUSTOMER_KEY: str(registered)}
    assert all("3" not in w and "31" not in w for w in guest_writes), guest_writes
    upserts, adds = len(_upserts(pair)), len(pair.emarsys.requests("POST", LIST_ADD))

    again = magsync("sync-realtime")

    assert again.code == 0, again
    assert len(_upserts(pair)) == upserts  # nothing left to send: no upsert at all
    assert len(pair.emarsys.requests("POST", LIST_ADD)) == adds


def test_first_run_without_a_watermark_reads_the_lookback(pair: SandboxPair,
                                                          magsync: Any, tmp_path: Path
                                                          ) -> None:
    # A state file whose export left no watermark (the export rule only counts as done)
    mark_exported(tmp_path / "state.db")
    shop = pair.magento.shop
    clock_behind(shop)
    cid = shop.create_customer(email="fresh@example.org", firstname="Fresh", lastname="One")

    result = magsync("sync-realtime")

    assert result.code == 0, result
    assert len(contact_ids(pair, f"c:{cid}")) == 1
    # the seeded shop's customers are older than the 24h lookback: not sent
    assert len(pair.emarsys.account.contacts) < len(shop.customers)


def test_a_customer_updated_during_a_run_is_sent_by_the_next_run(
        pair: SandboxPair, magsync: Any) -> None:
    shop = pair.magento.shop
    _exported(magsync, pair)
    shop.now = utcnow  # the real clock: the edit lands in the run's last second
    cid = min(shop.customers)
    reads_before = len(pair.magento.requests("GET", SEARCH))
    edited = threading.Event()

    def edit_when_the_run_reads() -> None:
        deadline = time.monotonic() + 20
        while len(pair.magento.requests("GET", SEARCH)) == reads_before:
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)
        shop.edit_customer(cid, lastname="DuringTheRun")
        edited.set()

    pair.magento.faults.set_latency(150)
    worker = threading.Thread(target=edit_when_the_run_reads)
    worker.start()
    first = magsync("sync-realtime")
    worker.join()
    pair.magento.faults.set_latency(0)

    assert edited.is_set()
    assert first.code == 0, first
    contact = _one(pair, f"c:{cid}")
    assert pair.emarsys.account.contact(contact)["2"] != "DuringTheRun"
    time.sleep(1.1)  # let the edit's second end, so it is inside the next window

    second = magsync("sync-realtime")

    assert second.code == 0, second
    assert pair.emarsys.account.contact(contact)["2"] == "DuringTheRun"


def test_a_guest_unsubscribe_is_sent_when_the_subscriber_scan_is_due(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    config = pair.write_config(tmp_path / "scan.yaml", tmp_path / "state.db",
                               sync={"subscriber_scan_minutes": 0})
    assert magsync("export-initial", config=config).code == 0
    guest = lowest_row(pair, guest=True)
    contact = _one(pair, f"s:{guest.subscriber_id}")
    seq = request_seq(pair)
    pair.magento.shop.unsubscribe(guest.subscriber_id)

    result = magsync("sync-realtime", config=config)

    assert result.code == 0, result
    assert _writes_since(pair, contact, seq) == [{SUBSCRIBER_KEY: str(guest.subscriber_id),
                                                  "31": 2}]


# -- an Emarsys outage ----------------------------------------------------------------------

def test_emarsys_down_for_a_whole_run_exits_3_and_holds_the_watermark(
        pair: SandboxPair, magsync: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGSYNC_RETRY_BUDGET", "0.3")
    shop = pair.magento.shop
    _exported(magsync, pair)
    mark = status_of(magsync)["watermarks"]["sync-realtime"]
    edited = sorted(shop.customers)[:3]
    for cid in edited:
        shop.edit_customer(cid, firstname=f"Outage{cid}")
    new_cid = shop.create_customer(email="during.outage@example.org", firstname="During",
                                   lastname="Outage")
    pair.emarsys.faults.fail_next(100000, 503)
    try:
        down = magsync("sync-realtime")
    finally:
        pair.emarsys.faults.clear()

    assert down.code == 3, down
    assert down.err.startswith("magsync: error: Emarsys"), down.err
    status = status_of(magsync)
    assert status["watermarks"]["sync-realtime"] == mark  # held
    assert status["runs"]["sync-realtime"]["exit_code"] == 3
    assert status["queue"]["queued"] == 0  # an outage never fills the queue

    back = magsync("sync-realtime")

    assert back.code == 0, back
    for cid in edited:
        assert pair.emarsys.account.contact(_one(pair, f"c:{cid}"))["1"] == f"Outage{cid}"
    assert len(contact_ids(pair, f"c:{new_cid}")) == 1
    assert status_of(magsync)["watermarks"]["sync-realtime"] > mark


# -- options: --dry-run, -q ------------------------------------------------------------------

def test_dry_run_writes_nothing_and_moves_no_watermark(pair: SandboxPair,
                                                       magsync: Any) -> None:
    shop = pair.magento.shop
    _exported(magsync, pair)
    before = status_of(magsync)
    cid = min(shop.customers)
    shop.edit_customer(cid, firstname="NotYet")
    new_cid = shop.create_customer(email="dry@example.org", firstname="Dry", lastname="Run")
    writes = [r.seq for r in pair.emarsys.requests() if r.method != "GET"
              and not r.path.endswith("/getdata")]

    result = magsync("-v", "sync-realtime", "--dry-run")

    assert result.code == 0, result
    assert "dry run" in result.out and "NotYet" in result.out  # payload sample with -v
    after_writes = [r.seq for r in pair.emarsys.requests() if r.method != "GET"
                    and not r.path.endswith("/getdata")]
    assert after_writes == writes
    assert contact_ids(pair, f"c:{new_cid}") == []
    after = status_of(magsync)
    assert after["watermarks"] == before["watermarks"]
    assert after["contacts"] == before["contacts"]

    real = magsync("sync-realtime")

    assert real.code == 0, real
    assert pair.emarsys.account.contact(_one(pair, f"c:{cid}"))["1"] == "NotYet"
    assert len(contact_ids(pair, f"c:{new_cid}")) == 1


def test_quiet_prints_nothing_on_success(pair: SandboxPair, magsync: Any) -> None:
    _exported(magsync, pair)
    pair.magento.shop.edit_customer(min(pair.magento.shop.customers), firstname="Quiet")

    result = magsync("-q", "sync-realtime")

    assert (result.code, result.out, result.err) == (0, "", "")
    assert pair.emarsys.account.contact(
        _one(pair, f"c:{min(pair.magento.shop.customers)}"))["1"] == "Quiet"


# -- the run lock ------------------------------------------------------------------------------

def test_a_second_run_at_once_exits_75_naming_the_holder(pair: SandboxPair, magsync: Any,
                                                         tmp_path: Path) -> None:
    with StateLock(tmp_path / "state.db", command="sync-background"):
        busy = magsync("sync-realtime")
        quiet = magsync("-q", "sync-realtime")

    assert busy.code == 75, busy
    assert busy.out == ""
    lines = busy.err.splitlines()
    assert len(lines) == 1 and "sync-background" in lines[0], busy.err
    assert (quiet.code, quiet.out, quiet.err) == (75, "", "")
    assert pair.emarsys.requests("PUT", UPSERT) == []  # nothing done


def test_lock_wait_runs_once_the_holder_ends(pair: SandboxPair, magsync: Any,
                                             tmp_path: Path) -> None:
    mark_exported(tmp_path / "state.db")
    lock = StateLock(tmp_path / "state.db", command="export-initial")
    lock.acquire()
    released = threading.Event()

    def release_soon() -> None:
        time.sleep(0.5)  # ordering only: the run below should be waiting by then
        released.set()
        lock.release()

    threading.Thread(target=release_soon).start()
    result = magsync("--lock-wait", "30", "sync-realtime")

    assert released.is_set()
    assert result.code == 0, result
    assert status_of(magsync)["runs"]["sync-realtime"]["exit_code"] == 0


# -- status ----------------------------------------------------------------------------------------

def test_status_after_runs_shows_runs_watermarks_queue_and_mirror(
        pair: SandboxPair, magsync: Any) -> None:
    shop = pair.magento.shop
    _exported(magsync, pair)
    failing = min(shop.customers)
    pair.emarsys.inject_contact_error(int(CUSTOMER_KEY), failing, 2010, "duplicate")
    shop.edit_customer(failing, firstname="Rejected")
    assert magsync("sync-realtime").code == 1

    status = status_of(magsync)
    text = magsync("status")

    run = status["runs"]["sync-realtime"]
    assert run["exit_code"] == 1 and run["outcome"] == "partial"
    assert run["counts"]["queued"] == 1
    assert {"export-initial", "sync-realtime"} <= set(status["runs"])
    assert set(status["watermarks"]) >= {"sync-realtime", "sync-background"}
    assert status["queue"] == {"queued": 1, "dead": 0}
    assert status["mirror"]["subscribers"] == len(shop.subscribers)
    assert status["mirror"]["age_minutes"] is not None
    assert text.code == 0
    for word in ("sync-realtime", "export-initial", "queue", "dead", "mirror"):
        assert word in text.out.lower(), (word, text.out)


def test_magento_down_exits_3_and_the_next_run_sends_the_change(
        pair: SandboxPair, magsync: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGSYNC_RETRY_BUDGET", "0.3")
    shop = pair.magento.shop
    _exported(magsync, pair)
    mark = status_of(magsync)["watermarks"]["sync-realtime"]
    cid = min(shop.customers)
    shop.edit_customer(cid, firstname="MagentoWasDown")
    pair.magento.faults.fail_next(100000, 503)
    try:
        down = magsync("sync-realtime")
    finally:
        pair.magento.faults.clear()

    assert down.code == 3, down
    assert down.err.startswith("magsync: error: Magento"), down.err
    assert status_of(magsync)["watermarks"]["sync-realtime"] == mark

    back = magsync("sync-realtime")

    assert back.code == 0, back
    assert pair.emarsys.account.contact(_one(pair, f"c:{cid}"))["1"] == "MagentoWasDown"


def _modules_of_a_run(config: Path) -> set[str]:
    """The modules a real ``python -m magsync sync-realtime`` process imported."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "magsync", "--config",
                           str(config), "-q", "sync-realtime"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def test_a_run_with_nothing_to_send_loads_no_send_pipeline(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    """The minutely run that finds no change neither imports the engine and its jobs nor
    starts their workers; the first change brings them in."""
    config = pair.write_config(tmp_path / "m.yaml", tmp_path / "state.db")
    assert magsync("export-initial", config=config).code == 0
    clock_behind(pair.magento.shop)
    pipeline = {"magsync.sync.engine", "magsync.sync.jobs", "magsync.sync.items", "magsync.diff"}

    assert magsync("sync-realtime", config=config).code == 0  # the export's own tail
    assert not _modules_of_a_run(config) & pipeline

    pair.magento.shop.edit_customer(sorted(pair.magento.shop.customers)[0],
                                    firstname="Changed")
    assert _modules_of_a_run(config) >= pipeline
