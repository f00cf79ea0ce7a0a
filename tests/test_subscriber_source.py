"""One subscriber-source interface over the Emarsys module's REST API and Magento's
database (``magsync.magento.subscriber_source``): the same rows, a change filter only
where there is one, guest writes and their refusals, and a full read that tells whether
it completed (an interrupted one replaces no mirror)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from magsync.config import parse_config
from magsync.errors import RetriableError
from magsync.magento.client import MagentoClient
from magsync.magento.subscriber_source import (
    GUEST_OPTIN_NOT_WRITTEN,
    WRITE_OPTIN_OFF,
    DatabaseSource,
    ModuleSource,
    open_database,
    open_subscriber_source,
)
from magsync.magento.subscribers import iter_subscribers
from magsync.model import MirrorRow
from magsync.pacing import RetryPolicy
from magsync.sandbox.magento.server import MagentoSandbox
from magsync.state import StateStore
from tests.helpers.mariadb import READER, WRITER, MariaDB
from tests.helpers.shop_db import load_shop, row

FAST = RetryPolicy(budget=2.0, base_delay=0.01, max_delay=0.05)


def magento_config(sandbox: MagentoSandbox, mariadb: MariaDB | None = None, *,
                   subscribers: str = "database", user: str = READER,
                   write_optin: bool = False) -> dict[str, object]:
    magento: dict[str, object] = {**sandbox.config(), "subscribers": subscribers}
    if subscribers == "database" and mariadb is not None:
        magento["database"] = {"url": mariadb.url(user), "write_optin": write_optin}
    return {"magento": magento, "emarsys": {"auth": {"username": "u", "secret": "s"}}}


@pytest.fixture
def client(magento_sandbox: MagentoSandbox) -> Iterator[MagentoClient]:
    cfg = parse_config(magento_config(magento_sandbox, subscribers="emarsys-module"), env={})
    with MagentoClient.from_config(cfg.magento, retry=FAST) as c:
        yield c


@pytest.fixture
def loaded(magento_sandbox: MagentoSandbox, mariadb: MariaDB) -> MariaDB:
    load_shop(mariadb, magento_sandbox.shop)
    return mariadb


def database_source(sandbox: MagentoSandbox, mariadb: MariaDB, client: MagentoClient, *,
                    retry: RetryPolicy = FAST, **kw: object) -> DatabaseSource:
    cfg = parse_config(magento_config(sandbox, mariadb, **kw), env={})  # type: ignore[arg-type]
    source = open_subscriber_source(cfg.magento, client, retry=retry)
    assert isinstance(source, DatabaseSource)
    return source


def test_open_picks_the_configured_source(magento_sandbox: MagentoSandbox, loaded: MariaDB,
                                          client: MagentoClient) -> None:
    none = parse_config(magento_config(magento_sandbox, subscribers="none"), env={})
    module = parse_config(magento_config(magento_sandbox, subscribers="emarsys-module"),
                          env={})
    assert open_subscriber_source(none.magento, client, retry=FAST) is None
    assert isinstance(open_subscriber_source(module.magento, client, retry=FAST),
                      ModuleSource)
    source = database_source(magento_sandbox, loaded, client)
    assert source.describe() == f"database at 127.0.0.1:{loaded.port}"
    source.close()


def test_both_sources_give_the_same_rows(magento_sandbox: MagentoSandbox, loaded: MariaDB,
                                         client: MagentoClient) -> None:
    module = ModuleSource(client)
    database = database_source(magento_sandbox, loaded, client)
    try:
        from_module = sorted(module.iter_all(), key=lambda r: r.subscriber_id)
        assert from_module == list(database.iter_all())  # in id order, by keyset
        assert len(from_module) == len(magento_sandbox.shop.subscribers)
        assert list(module.iter_all()) == list(iter_subscribers(client))
    finally:
        database.close()


def test_only_the_database_has_a_change_filter(magento_sandbox: MagentoSandbox,
                                               loaded: MariaDB, client: MagentoClient) -> None:
    now = datetime.now(timezone.utc)
    assert ModuleSource(client).iter_changed(now - timedelta(days=1), now) is None
    source = database_source(magento_sandbox, loaded, client)
    sid = min(magento_sandbox.shop.subscribers)
    loaded.sql("UPDATE newsletter_subscriber SET change_status_at = UTC_TIMESTAMP() "
               "WHERE subscriber_id = %s", [sid], database="magento")
    changed = source.iter_changed(now - timedelta(seconds=2), now + timedelta(seconds=5))
    assert changed is not None and [r.subscriber_id for r in changed] == [sid]
    source.close()


def test_a_full_read_says_whether_it_completed(magento_sandbox: MagentoSandbox,
                                               loaded: MariaDB, client: MagentoClient,
                                               tmp_path: Path) -> None:
    source = database_source(magento_sandbox, loaded, client, retry=RetryPolicy(budget=0))
    store = StateStore.open(tmp_path / "state.db")
    try:
        total = store.replace_mirror(source.iter_all())
        assert source.last_full_read_complete and source.full_reads_completed == 1
        assert total == len(magento_sandbox.shop.subscribers) == store.mirror_count()

        reader = source.iter_all()
        next(reader)
        assert not source.last_full_read_complete  # a read under way is not complete
        reader.close()
        session = source.db.query("SELECT CONNECTION_ID()")[0][0]
        loaded.sql(f"KILL {int(session)}")  # the connection is lost: no retry budget left
        with pytest.raises(RetriableError):
            store.replace_mirror(source.iter_all())
        assert not source.last_full_read_complete and source.full_reads_completed == 1
        assert store.mirror_count() == total  # the mirror is what the complete read left
    finally:
        store.close()
        source.close()


def test_database_guest_writes(magento_sandbox: MagentoSandbox, loaded: MariaDB,
                               client: MagentoClient) -> None:
    guest = min((s for s in magento_sandbox.shop.subscribers.values()
                 if not s.customer_id and s.subscriber_status == 1),
                key=lambda s: s.subscriber_id)
    mirror = MirrorRow(guest.subscriber_id, 0, guest.subscriber_email, 1, guest.website_id,
                       guest.store_id)
    read_only = database_source(magento_sandbox, loaded, client)
    writer = database_source(magento_sandbox, loaded, client, user=WRITER, write_optin=True)
    try:
        assert read_only.guest_write_refusal(False) == WRITE_OPTIN_OFF
        assert writer.guest_write_refusal(True) == GUEST_OPTIN_NOT_WRITTEN
        assert writer.guest_write_refusal(False) is None
        assert read_only.write_guest_optin(mirror, False).status == "not_applied"
        assert writer.write_guest_optin(mirror, True).status == "not_applied"
        assert row(loaded, guest.subscriber_id)[1] == 1  # type: ignore[index]

        assert writer.write_guest_optin(mirror, False).status == "applied"
        assert row(loaded, guest.subscriber_id)[1] == 3  # type: ignore[index]
        gone = MirrorRow(999_999, 0, "nobody@example.org", 1)
        refused = writer.write_guest_optin(gone, False)
        assert refused.status == "refused" and "999999" in refused.detail
    finally:
        read_only.close()
        writer.close()


def test_module_guest_writes_go_through_the_module(magento_sandbox: MagentoSandbox,
                                                   client: MagentoClient) -> None:
    guest = min((s for s in magento_sandbox.shop.subscribers.values()
                 if not s.customer_id and s.subscriber_status == 1),
                key=lambda s: s.subscriber_id)
    source = ModuleSource(client)
    mirror = MirrorRow(guest.subscriber_id, 0, guest.subscriber_email, 1, guest.website_id)
    assert source.guest_write_refusal(True) is None
    assert source.write_guest_optin(mirror, False).status == "applied"
    assert magento_sandbox.shop.subscribers[guest.subscriber_id].subscriber_status == 3


def test_open_database_uses_magento_timeout(magento_sandbox: MagentoSandbox,
                                            mariadb: MariaDB) -> None:
    raw = magento_config(magento_sandbox, mariadb)
    raw["magento"]["timeout"] = 7  # type: ignore[index]
    cfg = parse_config(raw, env={})
    with open_database(cfg.magento, retry=FAST) as db:
        assert db.settings.timeout == 7
