"""The syncs wait for a complete ``export-initial``; a partial export sets only its own
starting points (SPEC 1): end to end through the CLI against both simulators."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from magsync.sandbox.pair import SandboxPair
from magsync.state import StateStore
from magsync.state.schema import MIGRATIONS
from magsync.sync.pull import EXPORT_POLL_ENV
from magsync.sync.readiness import KINDS, exported_at
from magsync.util.timeutil import to_iso
from tests.helpers.cli import status_of
from tests.helpers.export_checks import CUSTOMER_KEY, contact_ids
from tests.helpers.sandbox import lowest_row

UPSERT = r"/contact/?$"


@pytest.fixture
def pair() -> Iterator[SandboxPair]:
    """A small shop: these tests export more than once."""
    with SandboxPair(30, 20, seed=5) as p:
        yield p


@pytest.fixture(autouse=True)
def fast_export_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EXPORT_POLL_ENV, "0")
    monkeypatch.setenv("MAGSYNC_RETRY_BUDGET", "2")


def _state(tmp_path: Path) -> StateStore:
    return StateStore.open(tmp_path / "state.db")


def _scan_every_run(pair: SandboxPair, tmp_path: Path) -> Path:
    return pair.write_config(tmp_path / "scan.yaml", tmp_path / "state.db",
                             sync={"subscriber_scan_minutes": 0})


# -- before any export -------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["sync-realtime", "sync-background", "pull-optin"])
def test_the_syncs_refuse_to_run_before_any_export(pair: SandboxPair, magsync: Any,
                                                   command: str) -> None:
    result = magsync(command)

    assert result.code == 2, result
    assert result.err.count("\n") == 1
    assert "customers and guest subscribers have not been exported" in result.err
    assert "run `magsync export-initial` first" in result.err
    # nothing was read or written in either system
    assert pair.emarsys.requests() == [] and pair.magento.requests() == []
    assert status_of(magsync)["runs"][command]["exit_code"] == 2


def test_an_export_that_selects_nothing_is_a_usage_error(pair: SandboxPair, magsync: Any,
                                                        tmp_path: Path) -> None:
    result = magsync("export-initial", "--no-customers", "--no-subscribers")

    assert result.code == 2, result
    assert "nothing to export" in result.err
    assert pair.emarsys.requests("PUT", UPSERT) == []
    with _state(tmp_path) as store:
        assert store.watermarks() == {} and exported_at(store) == {}


def test_selecting_only_a_disabled_kind_is_a_usage_error(pair: SandboxPair, magsync: Any,
                                                        tmp_path: Path) -> None:
    config = pair.write_config(tmp_path / "nosubs.yaml", tmp_path / "state.db",
                               contacts={"subscribers": {"enabled": False}})

    result = magsync("export-initial", "--subscribers", config=config)

    assert result.code == 2, result
    assert "the config enables only customers" in result.err


# -- an export of one kind -----------------------------------------------------------------------

def test_subscribers_alone_let_the_syncs_send_guests_but_not_customers(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    config = _scan_every_run(pair, tmp_path)
    shop = pair.magento.shop

    export = magsync("export-initial", "--no-customers", config=config)

    assert export.code == 0, export
    assert contact_ids(pair, f"c:{min(shop.customers)}") == []
    with _state(tmp_path) as store:
        # the customer windows and the mapping wait for an export of customers
        assert "sync-realtime" not in store.watermarks()
        assert "sync-background" not in store.watermarks()
        assert store.get_meta("mapping_hash") is None
        assert set(exported_at(store)) == {"subscribers"}
    gsid = lowest_row(pair, guest=True).subscriber_id
    shop.unsubscribe(gsid)
    cid = min(shop.customers)
    shop.edit_customer(cid, firstname="Changed")

    realtime = magsync("sync-realtime", config=config)

    assert realtime.code == 2, realtime
    assert "customers have not been exported yet" in realtime.err
    assert "run `magsync export-initial --customers` first" in realtime.err
    [guest] = contact_ids(pair, f"s:{gsid}")
    assert pair.emarsys.account.contact(guest)["31"] == "2"  # the guest's change went
    assert contact_ids(pair, f"c:{cid}") == []  # no customer was sent
    assert status_of(magsync, config)["runs"]["sync-realtime"]["outcome"] == "stopped"

    background = magsync("sync-background", config=config)

    assert background.code == 2, background
    assert contact_ids(pair, f"c:{cid}") == []

    rest = magsync("export-initial", "--customers", config=config)
    again = magsync("sync-realtime", config=config)

    assert rest.code == 0, rest
    assert again.code == 0, again
    # every customer, however old, reached Emarsys through the export
    assert all(len(contact_ids(pair, f"c:{c}")) == 1 for c in shop.customers)
    with _state(tmp_path) as store:
        assert set(exported_at(store)) == set(KINDS)
        assert store.get_meta("mapping_hash") is not None


def test_customers_alone_record_the_mapping_and_leave_guests_waiting(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    config = _scan_every_run(pair, tmp_path)

    export = magsync("export-initial", "--customers", config=config)

    assert export.code == 0, export
    with _state(tmp_path) as store:
        started = store.last_runs()["export-initial"].started_at
        assert store.get_watermark("sync-realtime") == started
        assert store.get_meta("mapping_hash") is not None
    gsid = lowest_row(pair, guest=True).subscriber_id

    result = magsync("sync-realtime", config=config)

    assert result.code == 2, result
    assert "run `magsync export-initial --subscribers` first" in result.err
    assert contact_ids(pair, f"s:{gsid}") == []
    assert magsync("export-initial", "--subscribers", config=config).code == 0
    assert len(contact_ids(pair, f"s:{gsid}")) == 1
    assert magsync("sync-realtime", config=config).code == 0


def test_pull_optin_holds_rows_of_a_kind_not_exported_until_its_export(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    shop = pair.magento.shop
    cid = min(c for c in shop.customers
              if any(s.customer_id == c and s.subscriber_status == 1
                     for s in shop.subscribers.values()))
    sid = next(s.subscriber_id for s in shop.subscribers.values() if s.customer_id == cid)
    assert magsync("export-initial", "--subscribers").code == 0
    # The person's contact exists in Emarsys already (keyed by an earlier tool) and opts
    # out there before magsync ever exported customers.
    contact = pair.emarsys.seed_contact({3: shop.customers[cid]["email"],
                                         int(CUSTOMER_KEY): str(cid)})
    pair.emarsys.ui_edit(contact, {31: 2})
    with _state(tmp_path) as store:
        mark = store.get_watermark("pull-optin")

    held = magsync("pull-optin")

    assert held.code == 2, held
    assert "wait for their export" in held.err
    assert shop.subscribers[sid].subscriber_status == 1  # nothing written for it
    with _state(tmp_path) as store:
        assert store.get_watermark("pull-optin") == mark

    # The customers export reads that opt-out itself (a consent conflict: Emarsys keeps
    # 2); the next pull reads the held rows again and moves on.
    assert magsync("export-initial", "--customers").code == 0
    again = magsync("pull-optin")

    assert again.code == 0, again
    assert "waiting" not in again.out
    with _state(tmp_path) as store:
        assert store.get_watermark("pull-optin") == store.last_runs()["pull-optin"].started_at


# -- what a completed export sets ------------------------------------------------------------

def test_a_completed_export_reads_back_optouts_made_while_it_ran(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    # An export that started five days ago (resumed after a crash) completes now. An
    # opt-out made in Emarsys four days ago, while it ran, must reach Magento.
    shop = pair.magento.shop
    started = datetime.now(timezone.utc) - timedelta(days=5)
    with _state(tmp_path) as store:
        store.set_checkpoint("export-initial", {"started_at": to_iso(started),
                                                "restart": False})
    assert magsync("export-initial").code == 0
    with _state(tmp_path) as store:
        assert store.get_watermark("pull-optin") == started
    sub = min((s for s in shop.subscribers.values()
               if s.customer_id and s.subscriber_status == 1), key=lambda s: s.subscriber_id)
    [contact] = contact_ids(pair, f"c:{sub.customer_id}")
    pair.emarsys.ui_edit(contact, {31: 2}, at=time.time() - 4 * 86400)

    result = magsync("pull-optin")

    assert result.code == 0, result
    assert shop.subscribers[sub.subscriber_id].subscriber_status == 3


def test_a_completed_export_never_moves_an_older_pull_watermark_forward(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    older = datetime(2026, 1, 2, tzinfo=timezone.utc)
    with _state(tmp_path) as store:
        store.set_watermark("pull-optin", older)

    assert magsync("export-initial").code == 0

    with _state(tmp_path) as store:
        assert store.get_watermark("pull-optin") == older


# -- state files from before this rule -------------------------------------------------------

def _old_state(path: Path, outcome: str | None) -> None:
    """A schema-2 state file (before the export rule), with an export-initial run that
    ended with ``outcome`` (None: no export at all)."""
    with StateStore.open(path) as store:
        if outcome is not None:
            run = store.start_run("export-initial",
                                  datetime(2026, 3, 1, tzinfo=timezone.utc))
            store.finish_run(run, outcome=outcome, exit_code=0, counts={})
        store.set_watermark("sync-realtime", datetime.now(timezone.utc) - timedelta(hours=1))
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM meta WHERE key LIKE 'export_done:%'")
    for kind, name in re.findall(r"CREATE (TABLE|INDEX) (\w+)", "".join(MIGRATIONS[2:])):
        conn.execute(f"DROP {kind} {name}")  # what later migrations add
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("outcome", ["ok", "partial"])
def test_an_old_state_file_whose_export_completed_counts_as_exported(
        pair: SandboxPair, magsync: Any, tmp_path: Path, outcome: str) -> None:
    _old_state(tmp_path / "state.db", outcome)

    result = magsync("sync-realtime")

    assert result.code == 0, result
    with _state(tmp_path) as store:
        assert set(exported_at(store)) == set(KINDS)


@pytest.mark.parametrize("outcome", [None, "failed", "interrupted"])
def test_an_old_state_file_without_a_completed_export_waits_for_one(
        pair: SandboxPair, magsync: Any, tmp_path: Path, outcome: str | None) -> None:
    _old_state(tmp_path / "state.db", outcome)

    result = magsync("sync-realtime")

    assert result.code == 2, result
    assert "magsync export-initial" in result.err
    assert pair.emarsys.requests("PUT", UPSERT) == []


def test_status_shows_which_kinds_were_exported(pair: SandboxPair, magsync: Any) -> None:
    assert magsync("export-initial", "--customers").code == 0

    data = status_of(magsync)
    text = magsync("status").out

    assert set(data["exported"]) == {"customers"}
    assert "export-initial completed: customers (started " in text
