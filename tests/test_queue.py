"""The failsafe queue end to end: contacts Emarsys rejects are queued by a sync, listed by
``queue list``, drained by ``sync-background`` (one attempt per drain), dead after
``max_attempts``, revived by ``queue retry --dead``, removed when a later sync sends them,
when ``queue purge`` empties it, or when the customer is gone from Magento.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from magsync.sandbox.pair import SandboxPair
from tests.helpers.cli import status_of
from tests.helpers.export_checks import CUSTOMER_KEY, SUBSCRIBER_KEY, contact_ids
from tests.helpers.sandbox import clock_behind, request_seq

UPSERT = r"/contact/?$"
REJECTED = (2010, "More than one contact found with the external id")


@pytest.fixture
def config2(pair: SandboxPair, tmp_path: Path) -> Path:
    """The pair's config with ``max_attempts: 2``."""
    return pair.write_config(tmp_path / "magsync.yaml", tmp_path / "state.db",
                             sync={"max_attempts": 2})


@pytest.fixture
def run(magsync: Any, config2: Path) -> Any:
    """The CLI with the ``max_attempts: 2`` config."""
    return lambda *args, config=None: magsync(*args, config=config or config2)


def _queue(run: Any, *flags: str) -> dict[str, list[str]]:
    """``queue list`` rows by key: [email, attempts, last error ...] as printed."""
    result = run("queue", "list", *flags)
    assert result.code == 0, result
    rows: dict[str, list[str]] = {}
    for line in result.out.splitlines():
        cells = [c for c in re.split(r"\s*[│|]\s*|\s{2,}", line.strip()) if c]
        if cells and cells[0][:2] in ("c:", "s:"):
            rows[cells[0]] = cells[1:]
    return rows


def _sent_keys(pair: SandboxPair, since: int = 0) -> list[str]:
    """Every ``c:``/``s:`` key in the upserts after request ``since``, accepted or not."""
    out: list[str] = []
    for r in pair.emarsys.requests("PUT", UPSERT):
        body = r.json() or {}
        kid = str(body.get("key_id"))
        if r.seq <= since or kid not in (CUSTOMER_KEY, SUBSCRIBER_KEY):
            continue
        out += [f"{'c' if kid == CUSTOMER_KEY else 's'}:{c[kid]}" for c in body["contacts"]]
    return out


def _rejecting(run: Any, pair: SandboxPair) -> int:
    """Export, then make Emarsys reject one edited customer; returns its id."""
    assert run("export-initial").code == 0
    shop = pair.magento.shop
    clock_behind(shop)
    cid = min(shop.customers)
    pair.emarsys.inject_contact_error(int(CUSTOMER_KEY), cid, *REJECTED)
    shop.edit_customer(cid, firstname="Rejected")
    return cid


def _first_name(pair: SandboxPair, cid: int) -> str | None:
    found = contact_ids(pair, f"c:{cid}")
    assert len(found) == 1, found
    return pair.emarsys.account.contact(found[0])["1"]


# -- queued by a sync ---------------------------------------------------------------------------

def test_a_rejected_contact_is_queued_and_the_rest_is_sent(pair: SandboxPair,
                                                            run: Any) -> None:
    cid = _rejecting(run, pair)
    other = max(pair.magento.shop.customers)
    pair.magento.shop.edit_customer(other, firstname="Accepted")

    result = run("sync-realtime")

    assert result.code == 1, result
    assert "queued" in result.out and "queue list" in result.err
    assert _first_name(pair, other) == "Accepted"
    assert _first_name(pair, cid) != "Rejected"
    rows = _queue(run)
    assert list(rows) == [f"c:{cid}"]
    email, attempts, error = rows[f"c:{cid}"][:3]
    assert email == pair.magento.shop.customers[cid]["email"]
    assert attempts == "1"
    assert "2010" in error and "More than one contact" in error
    assert status_of(run)["queue"] == {"queued": 1, "dead": 0}


def test_sync_realtime_does_not_drain_the_queue(pair: SandboxPair, run: Any) -> None:
    cid = _rejecting(run, pair)
    assert run("sync-realtime").code == 1
    seq = request_seq(pair)

    again = run("sync-realtime")

    assert again.code == 0, again  # nothing failed in this run
    assert f"c:{cid}" not in _sent_keys(pair, seq)
    assert _queue(run)[f"c:{cid}"][1] == "1"


# -- drained by sync-background, dead after max_attempts, revived ----------------------------------

def test_each_drain_is_one_attempt_until_the_contact_is_dead(pair: SandboxPair,
                                                             run: Any) -> None:
    cid = _rejecting(run, pair)
    assert run("sync-realtime").code == 1
    seq = request_seq(pair)

    drain = run("sync-background")

    assert drain.code == 1, drain  # it became dead in this run
    assert _sent_keys(pair, seq).count(f"c:{cid}") == 1  # one attempt
    assert _queue(run) == {}
    dead = _queue(run, "--dead")
    assert dead[f"c:{cid}"][1] == "2"
    assert "dead" in drain.out and "queue retry --dead" in drain.err
    assert status_of(run)["queue"] == {"queued": 0, "dead": 1}
    seq = request_seq(pair)

    later = run("sync-background")

    assert later.code == 0, later  # old dead contacts do not fail a run
    assert f"c:{cid}" not in _sent_keys(pair, seq)  # dead: not retried


def test_a_drain_sends_the_current_magento_state(pair: SandboxPair, run: Any) -> None:
    cid = _rejecting(run, pair)
    assert run("sync-realtime").code == 1
    pair.emarsys.account.clear_contact_errors()
    pair.magento.shop.edit_customer(cid, firstname="Current", lastname="State")

    drain = run("sync-background")

    assert drain.code == 0, drain
    assert _first_name(pair, cid) == "Current"
    assert _queue(run) == {} and _queue(run, "--dead") == {}


def test_queue_retry_dead_revives_with_attempts_reset(pair: SandboxPair, run: Any) -> None:
    cid = _rejecting(run, pair)
    assert run("sync-realtime").code == 1
    assert run("sync-background").code == 1
    assert f"c:{cid}" in _queue(run, "--dead")
    seq = request_seq(pair)

    plain = run("queue", "retry")

    assert plain.code == 0, plain
    assert f"c:{cid}" not in _sent_keys(pair, seq)  # without --dead the dead stay dead

    still = run("queue", "retry", "--dead")

    assert still.code == 1, still  # Emarsys still rejects it: queued again, attempt 1
    assert _queue(run)[f"c:{cid}"][1] == "1"
    assert _queue(run, "--dead") == {}
    pair.emarsys.account.clear_contact_errors()

    fixed = run("queue", "retry")

    assert fixed.code == 0, fixed
    assert _first_name(pair, cid) == "Rejected"
    assert _queue(run) == {}


def test_a_queued_contact_that_a_later_sync_sends_leaves_the_queue(pair: SandboxPair,
                                                                   run: Any) -> None:
    cid = _rejecting(run, pair)
    assert run("sync-realtime").code == 1
    pair.emarsys.account.clear_contact_errors()
    # an admin fixes the customer after the failed attempt (in a later second, on the
    # real clock), and the fix is at least a second old when the next run starts
    time.sleep(1.1)
    pair.magento.shop.now = lambda: datetime.now(timezone.utc)
    pair.magento.shop.edit_customer(cid, firstname="SentLater")
    time.sleep(1.1)

    result = run("sync-realtime")

    assert result.code == 0, result
    assert _first_name(pair, cid) == "SentLater"
    assert _queue(run) == {}
    assert status_of(run)["queue"] == {"queued": 0, "dead": 0}


def test_a_rejected_guest_is_queued_and_drained(pair: SandboxPair, run: Any,
                                                tmp_path: Path) -> None:
    assert run("export-initial").code == 0
    guest = next(s for s in sorted(pair.magento.shop.subscribers.values(),
                                   key=lambda s: s.subscriber_id)
                 if not s.customer_id and s.subscriber_status == 1)
    sid = guest.subscriber_id
    pair.emarsys.inject_contact_error(int(SUBSCRIBER_KEY), sid, *REJECTED)
    pair.magento.shop.unsubscribe(sid)

    first = run("sync-background")  # the background run always scans subscribers

    assert first.code == 1, first
    assert _queue(run, "--dead") == {}, first.out
    assert _queue(run)[f"s:{sid}"][:2] == [guest.subscriber_email, "1"]
    pair.emarsys.account.clear_contact_errors()

    second = run("sync-background")

    assert second.code == 0, second
    found = contact_ids(pair, f"s:{sid}")
    assert pair.emarsys.account.contact(found[0])["31"] == "2"
    assert _queue(run) == {}


# -- purge, and customers gone from Magento ------------------------------------------------

def test_queue_purge_yes_empties_the_queue(pair: SandboxPair, run: Any) -> None:
    cid = _rejecting(run, pair)
    assert run("sync-realtime").code == 1
    assert f"c:{cid}" in _queue(run)

    result = run("queue", "purge", "--yes")

    assert result.code == 0, result
    assert "purged 1" in result.out
    assert _queue(run) == {}
    assert status_of(run)["queue"] == {"queued": 0, "dead": 0}


def test_a_queued_customer_deleted_in_magento_leaves_the_queue_and_is_reported(
        pair: SandboxPair, run: Any) -> None:
    cid = _rejecting(run, pair)
    assert run("sync-realtime").code == 1
    pair.magento.shop.delete_customer(cid)
    # the run's reconcile then sets the deleted customer's opt-in to 2 (sync.deletions:
    # keep): Emarsys no longer rejects that contact
    pair.emarsys.account.clear_contact_errors()

    result = run("sync-background")

    assert result.code == 0, result
    assert _queue(run) == {} and _queue(run, "--dead") == {}
    assert f"c:{cid}" in result.out and "no longer exists" in result.out
    issues = status_of(run)["issues"]
    assert any(i["key"] == f"c:{cid}" and "no longer exists" in i["detail"]
               for i in issues), issues


def test_purge_without_yes_and_without_a_terminal_refuses(magsync: Any, pair: Any) -> None:
    """Under cron or a script nobody can answer the question: refuse, remove nothing."""
    pair.emarsys.inject_contact_error(7001, 1, 2007, "Invalid value")
    assert magsync("-q", "export-initial").code == 1
    r = magsync("queue", "purge")
    assert r.code == 2
    assert "pass --yes to confirm" in r.err
    assert json.loads(magsync("status", "--json").out)["queue"]["queued"] == 1
