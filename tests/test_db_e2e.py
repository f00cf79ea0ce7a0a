"""``subscribers: database`` end to end: the real CLI, the Magento sandbox serving the
customers over REST (its Emarsys module switched off), the subscribers read from a real
MariaDB (tests/helpers/mariadb.py, default zone +02:00) holding the same shop's rows.

An unsubscribe and a new guest made in the database reach Emarsys in the next
``sync-realtime`` (a change read on ``change_status_at``, not a full scan); a change that
does not touch ``change_status_at`` waits for ``sync-background``'s full read;
``pull-optin`` writes a guest's opt-out only with ``write_optin`` and reports the rest as
not applied; ``check`` connects and warns about a user that may do too much.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from magsync.sandbox.magento.records import STATUS_SUBSCRIBED, STATUS_UNSUBSCRIBED
from magsync.sandbox.pair import SandboxPair
from magsync.state import StateStore
from magsync.sync.pull import EXPORT_POLL_ENV
from tests.helpers.cli import CliRunner, status_of
from tests.helpers.deletions import deleted_in_emarsys
from tests.helpers.export_checks import (
    CUSTOMER_KEY,
    SUBSCRIBER_KEY,
    SUBSCRIBERS_LIST,
    assert_export_complete,
    contact_ids,
)
from tests.helpers.mariadb import POWER, READER, WRITER, MariaDB, free_port
from tests.helpers.sandbox import lowest_row, request_seq
from tests.helpers.shop_db import (
    PASSWORD_ENV,
    add_guest,
    load_shop,
    row,
    set_status,
    write_database_config,
)

UPSERT = r"/contact/?$"
MODULE = r"/V1/emarsys/subscriptions"
CUSTOMER_PUT = r"/V1/customers/\d+$"


@pytest.fixture
def pair() -> Iterator[SandboxPair]:
    """A small shop (40 customers, 30 subscribers) whose Emarsys module is switched off:
    a request for it would 404, so every subscriber comes from the database."""
    with SandboxPair(40, 30, seed=11) as p:
        p.magento.emarsys_module = False
        yield p


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EXPORT_POLL_ENV, "0")
    monkeypatch.setenv("MAGSYNC_RETRY_BUDGET", "2")


@pytest.fixture
def shop_db(pair: SandboxPair, mariadb: MariaDB) -> MariaDB:
    """The database holding the pair's subscriber rows (loaded afresh)."""
    assert load_shop(mariadb, pair.magento.shop) == len(pair.magento.shop.subscribers)
    return mariadb


def db_config(pair: SandboxPair, server: MariaDB, tmp_path: Path, monkeypatch: Any, *,
              user: str = READER, name: str = "db.yaml", **kw: Any) -> Path:
    monkeypatch.setenv(PASSWORD_ENV, server.passwords[user])
    return write_database_config(pair, server, tmp_path / name, user=user, **kw)


@pytest.fixture
def config(pair: SandboxPair, shop_db: MariaDB, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Path:
    """``subscribers: database`` as the read-only user."""
    return db_config(pair, shop_db, tmp_path, monkeypatch)


def exported(magsync: CliRunner, config: Path) -> None:
    result = magsync("export-initial", config=config)
    assert result.code == 0, result


def guest(pair: SandboxPair, status: int = STATUS_SUBSCRIBED, skip: int = 0) -> Any:
    rows = sorted((s for s in pair.magento.shop.subscribers.values()
                   if not s.customer_id and s.subscriber_status == status),
                  key=lambda s: s.subscriber_id)
    return rows[skip]


def one(pair: SandboxPair, key: str) -> int:
    found = contact_ids(pair, key)
    assert len(found) == 1, (key, found)
    return found[0]


def writes_since(pair: SandboxPair, contact: int, seq: int) -> list[dict[str, Any]]:
    return [fields for s, fields in pair.emarsys.writes_for(contact) if s > seq]


def run_counts(magsync: CliRunner, config: Path, command: str) -> dict[str, int]:
    return dict(status_of(magsync, config)["runs"][command]["counts"])


# -- export-initial ---------------------------------------------------------------------


def test_export_initial_reads_every_subscriber_from_the_database(
        pair: SandboxPair, config: Path, magsync: CliRunner) -> None:
    exported(magsync, config)

    # every customer and guest exactly once with the shop's values, both lists right
    ids = assert_export_complete(pair)
    assert len(pair.emarsys.account.contacts) == len(ids)
    assert sum(k.startswith("s:") for k in ids) == sum(
        1 for s in pair.magento.shop.subscribers.values() if not s.customer_id)
    assert pair.magento.requests("GET", MODULE) == []
    counts = run_counts(magsync, config, "export-initial")
    assert counts["subscribers_read"] == len(pair.magento.shop.subscribers)


def test_the_database_source_exports_what_the_module_source_exports(
        shop_db: MariaDB, tmp_path: Path, magsync: CliRunner,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same shop through each source gives the same Emarsys contacts."""
    exports = []
    for source in ("emarsys-module", "database"):
        with SandboxPair(40, 30, seed=11) as twin:
            if source == "database":
                twin.magento.emarsys_module = False
                path = db_config(twin, shop_db, tmp_path / source, monkeypatch)
            else:
                path = twin.write_config(tmp_path / source / "m.yaml")
            exported(magsync, path)
            acc = twin.emarsys.account
            exports.append(sorted(
                sorted((k, v) for k, v in acc.contact(cid).items() if k not in ("id", "uid"))
                for cid in acc.contacts))
    assert exports[0] == exports[1]
    assert len(exports[0]) == 40 + sum(1 for s in SandboxPair(40, 30, seed=11).magento.shop
                                       .subscribers.values() if not s.customer_id)


def test_switching_from_the_module_to_the_database_is_not_a_mapping_change(
        pair: SandboxPair, shop_db: MariaDB, config: Path, magsync: CliRunner,
        tmp_path: Path) -> None:
    pair.magento.emarsys_module = True
    module = pair.write_config(tmp_path / "module.yaml", tmp_path / "db.db")  # same state
    exported(magsync, module)
    pair.magento.emarsys_module = False
    searches = len(customer_reads(pair))

    result = magsync("sync-background", config=config)

    assert result.code == 0, result
    assert "the mapping changed" not in result.out
    assert "sent" not in run_counts(magsync, config, "sync-background")
    # no customer was read again (reconcile's id-only scan reads ids alone)
    assert len(customer_reads(pair)) == searches


def customer_reads(pair: SandboxPair) -> list[Any]:
    """The customer searches that read more than ids."""
    return [r for r in pair.magento.requests("GET", r"/V1/customers/search")
            if parse_qs(r.query_string).get("fields") != ["items[id]"]]


# -- sync-realtime ----------------------------------------------------------------------


def test_an_unsubscribe_and_a_new_guest_in_the_database_reach_emarsys_in_the_next_run(
        pair: SandboxPair, shop_db: MariaDB, config: Path, magsync: CliRunner) -> None:
    exported(magsync, config)
    g = guest(pair)
    contact = one(pair, f"s:{g.subscriber_id}")
    seq = request_seq(pair)
    set_status(shop_db, g.subscriber_id, STATUS_UNSUBSCRIBED)  # only the database knows
    new_sid = add_guest(shop_db, "new.guest@example.org")

    result = magsync("sync-realtime", config=config)

    assert result.code == 0, result
    assert writes_since(pair, contact, seq) == [{SUBSCRIBER_KEY: str(g.subscriber_id),
                                                 "31": 2}]
    created = pair.emarsys.account.contact(one(pair, f"s:{new_sid}"))
    assert (created["3"], created["31"], created.get(CUSTOMER_KEY)) == (
        "new.guest@example.org", "1", None)
    assert one(pair, f"s:{new_sid}") in pair.emarsys.account.list_members(SUBSCRIBERS_LIST)
    counts = run_counts(magsync, config, "sync-realtime")
    # the two changed rows were read, not the whole table (no scan was due)
    assert counts.get("subscribers_changed") == 2 and "subscribers_read" not in counts
    upserts = len(pair.emarsys.requests("PUT", UPSERT))

    again = magsync("sync-realtime", config=config)  # the overlap reads both rows again

    assert again.code == 0, again
    assert len(pair.emarsys.requests("PUT", UPSERT)) == upserts  # nothing to send


def test_a_customers_unsubscribe_in_the_database_reaches_emarsys(
        pair: SandboxPair, shop_db: MariaDB, config: Path, magsync: CliRunner) -> None:
    exported(magsync, config)
    shop = pair.magento.shop
    sub = lowest_row(pair)
    contact = one(pair, f"c:{sub.customer_id}")
    seq = request_seq(pair)
    # Magento changes the row; the customer's REST record follows (is_subscribed)
    set_status(shop_db, sub.subscriber_id, STATUS_UNSUBSCRIBED, also_in=shop)

    result = magsync("sync-realtime", config=config)

    assert result.code == 0, result
    assert writes_since(pair, contact, seq) == [{CUSTOMER_KEY: str(sub.customer_id),
                                                 "31": 2}]
    counts = run_counts(magsync, config, "sync-realtime")
    assert counts.get("subscribers_changed") == 1 and "subscribers_read" not in counts


def test_more_changes_than_are_kept_diff_the_whole_mirror(
        pair: SandboxPair, shop_db: MariaDB, config: Path, magsync: CliRunner,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A mass action: past the rows a run keeps in memory, the merged mirror is diffed."""
    monkeypatch.setattr("magsync.sync.feed.CHANGED_ROWS_KEPT", 1)
    exported(magsync, config)
    guests = [guest(pair, skip=i) for i in range(3)]
    contacts = {g.subscriber_id: one(pair, f"s:{g.subscriber_id}") for g in guests}
    seq = request_seq(pair)
    for g in guests:
        set_status(shop_db, g.subscriber_id, STATUS_UNSUBSCRIBED)

    result = magsync("sync-realtime", config=config)

    assert result.code == 0, result
    for sid, contact in contacts.items():
        assert writes_since(pair, contact, seq) == [{SUBSCRIBER_KEY: str(sid), "31": 2}]
    assert run_counts(magsync, config, "sync-realtime")["sent"] == 3


def test_a_change_read_never_removes_a_row_from_the_mirror(
        pair: SandboxPair, shop_db: MariaDB, config: Path, magsync: CliRunner,
        tmp_path: Path) -> None:
    exported(magsync, config)
    g = guest(pair)
    shop_db.sql("DELETE FROM newsletter_subscriber WHERE subscriber_id = %s",
                [g.subscriber_id], database="magento")

    assert magsync("sync-realtime", config=config).code == 0

    with StateStore.open(tmp_path / "db.db") as store:
        assert store.mirror_get(g.subscriber_id) is not None  # only a full read tells


def test_a_change_without_a_new_change_status_at_waits_for_sync_background(
        pair: SandboxPair, shop_db: MariaDB, config: Path, magsync: CliRunner) -> None:
    exported(magsync, config)
    g = guest(pair)
    contact = one(pair, f"s:{g.subscriber_id}")
    seq = request_seq(pair)
    # e.g. an import that rewrites the address without touching the status
    shop_db.sql("UPDATE newsletter_subscriber SET subscriber_email = %s "
                "WHERE subscriber_id = %s", ["renamed.guest@example.org", g.subscriber_id],
                database="magento")

    assert magsync("sync-realtime", config=config).code == 0
    assert writes_since(pair, contact, seq) == []

    result = magsync("sync-background", config=config)

    assert result.code == 0, result
    assert writes_since(pair, contact, seq) == [{SUBSCRIBER_KEY: str(g.subscriber_id),
                                                 "3": "renamed.guest@example.org"}]
    counts = run_counts(magsync, config, "sync-background")
    assert counts["subscribers_read"] == len(pair.magento.shop.subscribers)


def test_a_database_that_is_down_stops_the_run_and_holds_the_watermark(
        pair: SandboxPair, shop_db: MariaDB, config: Path, magsync: CliRunner,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exported(magsync, config)
    mark = status_of(magsync, config)["watermarks"]["sync-realtime"]
    down = db_config(pair, shop_db, tmp_path, monkeypatch, name="down.yaml")
    text = down.read_text().replace(f":{shop_db.port}/", f":{free_port()}/")
    down.write_text(text.replace(str(tmp_path / "down.db"), str(tmp_path / "db.db")))
    monkeypatch.setenv("MAGSYNC_RETRY_BUDGET", "0.5")

    result = magsync("sync-realtime", config=down)

    assert result.code == 3, result
    line = result.err.strip().splitlines()[-1]
    assert line.startswith("magsync: error: Magento database at 127.0.0.1:"), line
    assert "Connection refused" in line and len(line) < 300
    assert shop_db.passwords[READER] not in result.err + result.out
    assert status_of(magsync, config)["watermarks"]["sync-realtime"] == mark


# -- sync-background --------------------------------------------------------------------


def test_sync_background_reads_the_whole_table_and_sends_the_differences(
        pair: SandboxPair, shop_db: MariaDB, config: Path, magsync: CliRunner) -> None:
    exported(magsync, config)
    unsub, resub = guest(pair), guest(pair, STATUS_UNSUBSCRIBED)
    contacts = {g.subscriber_id: one(pair, f"s:{g.subscriber_id}") for g in (unsub, resub)}
    seq = request_seq(pair)
    set_status(shop_db, unsub.subscriber_id, STATUS_UNSUBSCRIBED)
    set_status(shop_db, resub.subscriber_id, STATUS_SUBSCRIBED)
    new_sid = add_guest(shop_db, "background.guest@example.org", website_id=2)

    result = magsync("sync-background", config=config)

    assert result.code == 0, result
    assert writes_since(pair, contacts[unsub.subscriber_id], seq) == [
        {SUBSCRIBER_KEY: str(unsub.subscriber_id), "31": 2}]
    # a re-subscribe over an opt-out magsync sent itself is sent as 1
    assert writes_since(pair, contacts[resub.subscriber_id], seq) == [
        {SUBSCRIBER_KEY: str(resub.subscriber_id), "31": 1}]
    assert pair.emarsys.account.contact(one(pair, f"s:{new_sid}"))["3"] == \
        "background.guest@example.org"


def test_website_ids_filter_the_database_by_store(
        pair: SandboxPair, shop_db: MariaDB, tmp_path: Path, magsync: CliRunner,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = db_config(pair, shop_db, tmp_path, monkeypatch, magento={"website_ids": [2]})
    exported(magsync, config)
    guests = {s.subscriber_id: s.website_id for s in pair.magento.shop.subscribers.values()
              if not s.customer_id}
    sent = {sid for sid in guests if contact_ids(pair, f"s:{sid}")}
    assert sent and sent == {sid for sid, website in guests.items() if website == 2}


# -- pull-optin -------------------------------------------------------------------------


def pull_counts(result: Any) -> dict[str, int]:
    line = next(ln for ln in result.out.splitlines() if ln.startswith("pull-optin"))
    body = line.split(": ", 1)[1].rsplit(" (", 1)[0]
    return {k: int(v) for k, v in (part.rsplit(" ", 1) for part in body.split(", "))}


def test_pull_optin_writes_a_guests_opt_out_with_write_optin(
        pair: SandboxPair, shop_db: MariaDB, tmp_path: Path, magsync: CliRunner,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = db_config(pair, shop_db, tmp_path, monkeypatch, user=WRITER, write_optin=True)
    exported(magsync, config)
    g = guest(pair)
    pair.emarsys.ui_edit(one(pair, f"s:{g.subscriber_id}"), {31: 2})
    before = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)

    result = magsync("pull-optin", config=config)

    assert result.code == 0, result
    assert pull_counts(result)["applied"] == 1
    email, status, changed_at = row(shop_db, g.subscriber_id) or ()
    assert (email, status) == (g.subscriber_email, STATUS_UNSUBSCRIBED)
    # written in UTC although the server's own zone is +02:00
    assert before - timedelta(seconds=1) <= changed_at <= before + timedelta(minutes=1)
    assert pair.magento.requests("POST", MODULE) == []
    seq = request_seq(pair)

    again = magsync("sync-realtime", config=config)  # its change read sees the row

    assert again.code == 0, again
    assert run_counts(magsync, config, "sync-realtime").get("subscribers_changed") == 1
    assert writes_since(pair, one(pair, f"s:{g.subscriber_id}"), seq) == []  # no echo


def test_pull_optin_reports_a_guests_opt_out_as_not_applied_without_write_optin(
        pair: SandboxPair, shop_db: MariaDB, config: Path, magsync: CliRunner) -> None:
    exported(magsync, config)
    g = guest(pair)
    contact = one(pair, f"s:{g.subscriber_id}")
    pair.emarsys.ui_edit(contact, {31: 2})
    seq = request_seq(pair)

    result = magsync("pull-optin", config=config)

    assert result.code == 0, result
    assert pull_counts(result).get("not_applied") == 1
    assert f"optin_not_applied s:{g.subscriber_id}: magento.database.write_optin is false" \
        in result.out
    assert row(shop_db, g.subscriber_id)[1] == STATUS_SUBSCRIBED  # type: ignore[index]

    again = magsync("pull-optin", config=config)  # the same export window once more

    assert again.code == 0, again
    assert "not_applied" not in pull_counts(again)  # reported once
    result = magsync("sync-realtime", config=config)
    assert result.code == 0, result
    # Magento still says subscribed, but that is no change: the opt-out stays in Emarsys
    assert writes_since(pair, contact, seq) == []
    assert pair.emarsys.account.contact(contact)["31"] == "2"


def test_a_conflict_the_database_may_not_take_keeps_the_opt_out_in_emarsys(
        pair: SandboxPair, shop_db: MariaDB, config: Path, magsync: CliRunner) -> None:
    """Without ``write_optin`` magsync cannot unsubscribe the guest in Magento when the
    opt-out wins a conflict; it must then never send Magento's opt-in over it later."""
    exported(magsync, config)
    g = guest(pair)
    contact = one(pair, f"s:{g.subscriber_id}")
    set_status(shop_db, g.subscriber_id, STATUS_UNSUBSCRIBED)
    assert magsync("sync-realtime", config=config).code == 0  # Emarsys now holds 2
    pair.emarsys.ui_edit(contact, {31: 1})  # subscribed again in Emarsys ...
    assert magsync("pull-optin", config=config).code == 0  # ... not applied: a guest opt-in
    pair.emarsys.ui_edit(contact, {31: 2})  # then opted out there again, while the shop
    set_status(shop_db, g.subscriber_id, STATUS_SUBSCRIBED)  # subscribes the guest anew
    seq = request_seq(pair)

    first = magsync("sync-realtime", config=config)

    assert first.code == 0, first
    assert "magento_write_failed" in first.out and "not applied" in first.out
    assert writes_since(pair, contact, seq) == []  # the opt-out wins in Emarsys

    second = magsync("sync-realtime", config=config)  # the overlap reads the row again

    assert second.code == 0, second
    assert writes_since(pair, contact, seq) == []
    assert pair.emarsys.account.contact(contact)["31"] == "2"


def test_pull_optin_dry_run_reports_not_applied_and_records_nothing(
        pair: SandboxPair, shop_db: MariaDB, config: Path, magsync: CliRunner) -> None:
    exported(magsync, config)
    g = guest(pair)
    pair.emarsys.ui_edit(one(pair, f"s:{g.subscriber_id}"), {31: 2})

    dry = magsync("pull-optin", "--dry-run", config=config)

    assert dry.code == 0, dry
    assert pull_counts(dry).get("not_applied") == 1
    assert f"optin_not_applied s:{g.subscriber_id}" in dry.out
    real = magsync("pull-optin", config=config)
    assert pull_counts(real).get("not_applied") == 1  # the dry run recorded nothing


def test_pull_optin_never_writes_a_guests_opt_in_into_the_database(
        pair: SandboxPair, shop_db: MariaDB, tmp_path: Path, magsync: CliRunner,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = db_config(pair, shop_db, tmp_path, monkeypatch, user=WRITER, write_optin=True)
    exported(magsync, config)
    g = guest(pair, STATUS_UNSUBSCRIBED)
    pair.emarsys.ui_edit(one(pair, f"s:{g.subscriber_id}"), {31: 1})

    result = magsync("pull-optin", config=config)

    assert result.code == 0, result
    assert pull_counts(result).get("not_applied") == 1
    assert "subscribers: database writes only guests' opt-outs" in result.out
    assert row(shop_db, g.subscriber_id)[1] == STATUS_UNSUBSCRIBED  # type: ignore[index]


def test_pull_optin_writes_a_customers_opt_out_through_rest(
        pair: SandboxPair, shop_db: MariaDB, config: Path, magsync: CliRunner) -> None:
    exported(magsync, config)
    shop = pair.magento.shop
    sub = lowest_row(pair)
    pair.emarsys.ui_edit(one(pair, f"c:{sub.customer_id}"), {31: 2})

    result = magsync("pull-optin", config=config)

    assert result.code == 0, result
    assert pull_counts(result)["applied"] == 1
    assert len(pair.magento.requests("PUT", CUSTOMER_PUT)) == 1
    assert shop.subscribers[sub.subscriber_id].subscriber_status == STATUS_UNSUBSCRIBED


# -- check ------------------------------------------------------------------------------


def test_check_reaches_the_database_with_a_least_privilege_user(
        config: Path, magsync: CliRunner) -> None:
    result = magsync("check", config=config)

    assert result.code == 0, result
    lines = result.out.splitlines()
    assert any(ln.startswith("OK   Magento database reachable — 127.0.0.1:") for ln in lines)
    assert "OK   Magento database table newsletter_subscriber — readable" in lines
    assert "OK   Magento database table store — readable" in lines
    grants = next(ln for ln in lines if "Magento database permissions" in ln)
    assert "warning" not in grants, grants


def test_check_warns_when_the_user_may_do_more_than_magsync_needs(
        pair: SandboxPair, shop_db: MariaDB, tmp_path: Path, magsync: CliRunner,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = db_config(pair, shop_db, tmp_path, monkeypatch, user=POWER)

    result = magsync("check", config=config)

    assert result.code == 0, result  # a warning, not a failure
    grants = next(ln for ln in result.out.splitlines() if "Magento database permissions" in ln)
    assert grants.startswith("OK   Magento database permissions — warning: the user can do "
                             "more than magsync needs"), grants
    assert shop_db.passwords[POWER] not in result.out


def test_check_fails_with_exit_3_on_a_wrong_password(
        pair: SandboxPair, shop_db: MariaDB, tmp_path: Path, magsync: CliRunner,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = db_config(pair, shop_db, tmp_path, monkeypatch)
    monkeypatch.setenv(PASSWORD_ENV, "wrong-p@ss:word")

    result = magsync("check", config=config)

    assert result.code == 3, result
    assert "FAIL Magento database credentials" in result.out
    assert "wrong-p@ss:word" not in result.out + result.err
    assert "wrong-p%40ss%3Aword" not in result.out + result.err


def test_the_unix_socket_url_works_end_to_end(
        pair: SandboxPair, shop_db: MariaDB, tmp_path: Path, magsync: CliRunner,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = db_config(pair, shop_db, tmp_path, monkeypatch, via_socket=True)

    assert magsync("check", config=config).code == 0
    exported(magsync, config)
    assert_export_complete(pair)


# -- deletions (reconcile) ------------------------------------------------------------------


def delete_row(server: MariaDB, sid: int) -> None:
    """A guest deleted in Magento's newsletter grid: the row is gone, no trace left."""
    server.sql("DELETE FROM newsletter_subscriber WHERE subscriber_id = %s", [sid],
               database="magento")


def test_a_guest_deleted_in_the_database_is_deleted_after_two_complete_reads(
        pair: SandboxPair, shop_db: MariaDB, tmp_path: Path, magsync: CliRunner,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = db_config(pair, shop_db, tmp_path, monkeypatch, sync={"deletions": "delete"})
    exported(magsync, config)
    gone = guest(pair)
    delete_row(shop_db, gone.subscriber_id)

    first = magsync("reconcile", config=config)  # one complete read misses it: a suspect
    assert first.code == 0, first
    assert deleted_in_emarsys(pair) == []
    second = magsync("reconcile", config=config)  # the second confirms it

    assert second.code == 0, second
    assert deleted_in_emarsys(pair) == [(SUBSCRIBER_KEY, str(gone.subscriber_id))]
    assert contact_ids(pair, f"s:{gone.subscriber_id}") == []


def test_a_database_read_that_fails_midway_deletes_nothing(
        pair: SandboxPair, shop_db: MariaDB, tmp_path: Path, magsync: CliRunner,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from magsync.magento import subscriber_db

    config = db_config(pair, shop_db, tmp_path, monkeypatch, sync={"deletions": "delete"})
    exported(magsync, config)
    gone = guest(pair)
    delete_row(shop_db, gone.subscriber_id)
    assert magsync("reconcile", config=config).code == 0  # a suspect after one read
    real = subscriber_db.iter_subscribers_db

    def losing_the_grant_midway(db: Any, website_ids: Any) -> Iterator[Any]:
        # pages of 5 rows; after the first page the read-only user loses its grant, so
        # the next page's SELECT fails: the read ends with an error half-way
        for n, sub in enumerate(real(db, website_ids, page_size=5)):
            if n == 5:
                shop_db.sql("REVOKE SELECT ON `magento`.`newsletter_subscriber` "
                            f"FROM '{READER}'@'%'")
            yield sub

    monkeypatch.setattr(subscriber_db, "iter_subscribers_db", losing_the_grant_midway)
    try:
        failed = magsync("reconcile", config=config)
    finally:
        shop_db.sql(f"GRANT SELECT ON `magento`.`newsletter_subscriber` TO '{READER}'@'%'")

    assert failed.code == 3, failed  # the database failed the read: nothing is concluded
    assert deleted_in_emarsys(pair) == []
    assert len(contact_ids(pair, f"s:{gone.subscriber_id}")) == 1
    with StateStore.open(tmp_path / "db.db") as store:
        assert store.mirror_count() == len(pair.magento.shop.subscribers) - 1  # unchanged


def test_forget_reads_the_subscribers_from_the_database(
        pair: SandboxPair, shop_db: MariaDB, config: Path, magsync: CliRunner) -> None:
    """``forget`` checks that Magento no longer holds the guest in the configured source:
    the database, not the Emarsys module's REST endpoint (switched off here)."""
    exported(magsync, config)
    kept, gone = guest(pair), guest(pair, skip=1)

    refused = magsync("forget", "--subscriber-id", str(kept.subscriber_id), "--yes",
                      config=config)
    assert refused.code == 2, refused
    assert "still holds" in refused.err
    delete_row(shop_db, gone.subscriber_id)
    result = magsync("forget", "--subscriber-id", str(gone.subscriber_id), "--yes",
                     config=config)

    assert result.code == 0, result
    assert deleted_in_emarsys(pair) == [(SUBSCRIBER_KEY, str(gone.subscriber_id))]
    assert not pair.magento.requests("GET", MODULE)
