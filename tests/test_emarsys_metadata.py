"""Emarsys's metadata (fields, choice lists, contact lists) kept in the state file for an
hour: a quiet ``sync-realtime`` asks Emarsys nothing, yet never writes with a field id
Emarsys no longer has (end to end through the CLI)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from magsync.errors import EXIT_CONFIG
from magsync.sandbox.pair import DEFAULT_MAPPING, SandboxPair
from magsync.state import StateStore
from magsync.sync.metadata import META_KEY, MetadataCache
from magsync.util.timeutil import utcnow
from tests.helpers.export_checks import contact_ids
from tests.helpers.sandbox import clock_behind, request_seq

GROUP = "Magento Group"
UPSERT = r"/contact/?$"



@pytest.fixture
def group_pair() -> Iterator[SandboxPair]:
    """A shop whose mapping also writes a custom field (``group_id`` -> "Magento Group")."""
    with SandboxPair(30, 12, seed=4) as p:
        p.emarsys.account.create_field(GROUP, "shorttext")
        yield p


def _config(pair: SandboxPair, tmp_path: Path) -> Path:
    return pair.write_config(tmp_path / "magsync.yaml", tmp_path / "state.db",
                             mapping={**DEFAULT_MAPPING, "group_id": GROUP})


def _exported(magsync: Any, pair: SandboxPair, config: Path) -> None:
    assert magsync("export-initial", config=config).code == 0
    clock_behind(pair.magento.shop)  # edits fall in the window


def _requests_since(pair: SandboxPair, seq: int) -> list[str]:
    return [f"{r.method} {r.path}" for r in pair.emarsys.requests() if r.seq > seq]


def _lastname(pair: SandboxPair, cid: int) -> str | None:
    [contact] = contact_ids(pair, f"c:{cid}")
    return pair.emarsys.account.contact(contact).get("2")


def _other_group(pair: SandboxPair, cid: int) -> int:
    """A customer group the customer is not in (so the mapped field changes)."""
    return int(pair.magento.shop.customers[cid]["group_id"]) % 3 + 1


def _age_cache(path: Path, by: timedelta) -> None:
    with StateStore.open(path) as store:
        data = json.loads(store.get_meta(META_KEY) or "{}")
        stamp = datetime.fromisoformat(data["fetched_at"].replace("Z", "+00:00")) - by
        data["fetched_at"] = stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        store.set_meta(META_KEY, json.dumps(data))


def test_a_quiet_sync_realtime_asks_emarsys_nothing_until_the_copy_is_an_hour_old(
        group_pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    config = _config(group_pair, tmp_path)
    _exported(magsync, group_pair, config)
    seq = request_seq(group_pair)

    assert magsync("sync-realtime", config=config).code == 0
    assert magsync("sync-realtime", config=config).code == 0

    assert _requests_since(group_pair, seq) == []  # fields, choices, lists: the copy's
    _age_cache(tmp_path / "state.db", timedelta(minutes=61))
    assert magsync("sync-realtime", config=config).code == 0
    read = _requests_since(group_pair, seq)
    assert "GET /api/v2/field" in read and "GET /api/v2/contactlist" in read
    seq = request_seq(group_pair)
    assert magsync("sync-realtime", config=config).code == 0  # read again an hour later:
    assert _requests_since(group_pair, seq) == []              # fresh again


def test_the_daily_commands_read_emarsys_afresh(group_pair: SandboxPair, magsync: Any,
                                                tmp_path: Path) -> None:
    config = _config(group_pair, tmp_path)
    _exported(magsync, group_pair, config)
    seq = request_seq(group_pair)

    assert magsync("sync-background", config=config).code == 0

    assert "GET /api/v2/field" in _requests_since(group_pair, seq)


def test_a_mapped_field_deleted_within_the_hour_stops_the_run_at_its_first_write(
        group_pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    config = _config(group_pair, tmp_path)
    _exported(magsync, group_pair, config)
    account, shop = group_pair.emarsys.account, group_pair.magento.shop
    group = account.field_by_name(GROUP)
    assert group is not None
    account.delete_field(group.id)
    cid = sorted(shop.customers)[0]
    shop.edit_customer(cid, lastname="Renamed", group_id=_other_group(group_pair, cid))

    stopped = magsync("sync-realtime", config=config)

    # The upsert with the old id was refused (2006): the fields were read again, and the
    # run stops as one that read them at its start would have, exit 2, nothing written.
    assert stopped.code == EXIT_CONFIG, stopped
    assert "Emarsys has no field 'Magento Group'" in stopped.err
    assert "magsync fields --create-missing" in stopped.err
    assert _lastname(group_pair, cid) != "Renamed"
    with StateStore.open(tmp_path / "state.db") as store:
        assert store.get_meta(META_KEY) is None  # the copy is gone: the next run reads
        assert store.queue_items(dead=None) == []  # a configuration error queues nobody

    account.create_field(GROUP, "shorttext")  # created again: a new id
    seq = request_seq(group_pair)
    again = magsync("sync-realtime", config=config)

    assert again.code == 0, again
    assert "GET /api/v2/field" in _requests_since(group_pair, seq)
    assert _lastname(group_pair, cid) == "Renamed"


def test_a_field_replaced_within_the_hour_is_never_written_under_its_old_id(
        group_pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    config = _config(group_pair, tmp_path)
    _exported(magsync, group_pair, config)
    account, shop = group_pair.emarsys.account, group_pair.magento.shop
    old = account.field_by_name(GROUP)
    assert old is not None
    account.delete_field(old.id)
    new = account.create_field(GROUP, "shorttext")
    cid = sorted(shop.customers)[1]
    group_id = _other_group(group_pair, cid)
    shop.edit_customer(cid, lastname="Moved", group_id=group_id)

    stopped = magsync("sync-realtime", config=config)

    assert stopped.code == EXIT_CONFIG, stopped
    assert (f"Emarsys fields changed while this run used them ('Magento Group': id "
            f"{old.id} -> {new.id})") in stopped.err
    assert _lastname(group_pair, cid) != "Moved"

    again = magsync("sync-realtime", config=config)

    assert again.code == 0, again
    [contact] = contact_ids(group_pair, f"c:{cid}")
    assert account.contact(contact).get(str(new.id)) == str(group_id)
    assert _lastname(group_pair, cid) == "Moved"


def test_a_field_created_after_a_run_stopped_for_it_is_found_at_once(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    """A check that fails on the copy is made again on a fresh read before it stops the
    run: `fields --create-missing` right after the error is enough."""
    config = pair.write_config(tmp_path / "magsync.yaml", tmp_path / "state.db",
                               mapping={**DEFAULT_MAPPING, "group_id": GROUP})
    pair.emarsys.account.create_field(GROUP, "shorttext")
    assert magsync("export-initial", config=config).code == 0
    group = pair.emarsys.account.field_by_name(GROUP)
    assert group is not None
    pair.emarsys.account.delete_field(group.id)
    assert magsync("sync-background", config=config).code == EXIT_CONFIG  # reads afresh

    assert magsync("fields", "--create-missing", config=config).code == 0
    assert magsync("sync-realtime", config=config).code == 0


# -- the copy itself ---------------------------------------------------------------------------


def test_the_copy_belongs_to_one_account_and_is_not_trusted_from_the_future(
        pair: SandboxPair, tmp_path: Path) -> None:
    from magsync.config import load_config
    from magsync.emarsys.client import EmarsysClient

    cfg = load_config(pair.write_config(tmp_path / "a.yaml", tmp_path / "state.db"))
    other = load_config(pair.write_config(tmp_path / "b.yaml", tmp_path / "state.db",
                                          emarsys={"auth": {"username": "someone-else"}}))
    client = EmarsysClient.from_config(cfg.emarsys)
    try:
        with StateStore.open(tmp_path / "state.db") as store:
            assert MetadataCache(store, cfg).seed(client) is False  # nothing stored yet
            client.memo("fields", lambda: [])
            MetadataCache(store, cfg).save(client)
            assert MetadataCache(store, cfg).seed(client) is True
            assert MetadataCache(store, other).seed(client) is False  # another API user
            later = MetadataCache(store, cfg, now=lambda: utcnow() + timedelta(minutes=61))
            assert later.seed(client) is False  # an hour old
            earlier = MetadataCache(store, cfg, now=lambda: utcnow() - timedelta(minutes=10))
            assert earlier.seed(client) is False  # stamped ahead of this clock
    finally:
        client.close()
