"""The database subscriber source against a real MariaDB server (tests/helpers/mariadb.py).

The server's default zone is +02:00 on purpose: every timestamp assertion would be two
hours off if magsync's session were not in UTC.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from magsync.errors import AuthError, ConfigError, FatalRemoteError, RetriableError
from magsync.magento.database import Database, DatabaseSettings
from magsync.magento.subscriber_db import (
    OptinWriteDisabled,
    check_database,
    iter_changed_subscribers,
    iter_subscribers_db,
    write_guest_optout,
)
from magsync.model import MirrorRow
from magsync.pacing import RetryPolicy
from magsync.sandbox.magento.records import Subscriber
from magsync.sandbox.magento.shop_gen import generate_shop
from tests.helpers.mariadb import (
    DATABASE,
    POWER,
    PREFIX,
    PREFIXED,
    PREFIXED_DATABASE,
    READER,
    SPECIAL,
    WRITER,
    MariaDB,
    clear_subscribers,
    free_port,
    load_subscribers,
)

ANCHOR = datetime(2026, 5, 1, tzinfo=timezone.utc)
TEST_RETRY = RetryPolicy(budget=5.0)
UTC_SESSION_CHECK = "SELECT NOW(), UTC_TIMESTAMP(), @@session.time_zone"


@pytest.fixture
def rows(mariadb: MariaDB) -> list[Subscriber]:
    """The sandbox shop's subscribers, loaded into both databases afresh."""
    subs = sorted(generate_shop(30, 50, seed=5, anchor=ANCHOR).subscribers.values(),
                  key=lambda s: s.subscriber_id)
    for database in (DATABASE, PREFIXED_DATABASE):
        clear_subscribers(mariadb, database)
        load_subscribers(mariadb, subs, database=database)
    return subs


def open_db(mariadb: MariaDB, user: str, *, sleeps: list[float] | None = None,
            retry: RetryPolicy = TEST_RETRY, **settings: Any) -> Database:
    database = PREFIXED_DATABASE if user == PREFIXED else DATABASE
    url = settings.pop("url", None) or mariadb.url(user, database=database)
    return Database(DatabaseSettings(url=url, **settings), retry=retry,
                    sleep=(sleeps if sleeps is not None else []).append)


def mirror(subs: list[Subscriber]) -> list[MirrorRow]:
    return [MirrorRow(s.subscriber_id, s.customer_id, s.subscriber_email,
                      s.subscriber_status, s.website_id, s.store_id) for s in subs]


def table(mariadb: MariaDB) -> list[tuple[Any, ...]]:
    return mariadb.sql("SELECT subscriber_id, subscriber_email, subscriber_status, "
                       "change_status_at FROM newsletter_subscriber ORDER BY subscriber_id",
                       database=DATABASE)


def utc_now_on_server(mariadb: MariaDB) -> datetime:
    return mariadb.sql("SELECT UTC_TIMESTAMP()")[0][0]


# -- reads -----------------------------------------------------------------------------


def test_full_read_pages_by_keyset_and_matches_the_table(mariadb: MariaDB,
                                                         rows: list[Subscriber]) -> None:
    with open_db(mariadb, READER) as db:
        assert list(iter_subscribers_db(db, page_size=7)) == mirror(rows)
        assert db.stats.queries == len(rows) // 7 + 1  # 50 rows: 7 full pages + the rest


def test_rows_deleted_during_a_full_read_skip_no_other_row(mariadb: MariaDB,
                                                           rows: list[Subscriber]) -> None:
    # offset pages would skip an unread row here; keyset pages continue after the last id
    with open_db(mariadb, READER) as db:
        reader = iter_subscribers_db(db, page_size=10)
        first = [next(reader) for _ in range(10)]
        mariadb.sql("DELETE FROM newsletter_subscriber WHERE subscriber_id IN (2, 3, 30)",
                    database=DATABASE)
        rest = list(reader)
    assert first + rest == [r for r in mirror(rows) if r.subscriber_id != 30]


def test_website_filter_joins_the_store_table(mariadb: MariaDB, rows: list[Subscriber]) -> None:
    mariadb.sql("INSERT INTO newsletter_subscriber (subscriber_id, store_id, customer_id, "
                "subscriber_email, subscriber_status) VALUES (901, 0, 0, 'admin@x.test', 1), "
                "(902, NULL, 0, 'nostore@x.test', 1)", database=DATABASE)
    with open_db(mariadb, READER) as db:
        second = list(iter_subscribers_db(db, [2], page_size=4))
        both = list(iter_subscribers_db(db, [1, 2], page_size=4))
        every = list(iter_subscribers_db(db))
    assert second == [r for r in mirror(rows) if r.website_id == 2] and second
    assert both == mirror(rows)
    assert every[-2:] == [MirrorRow(901, 0, "admin@x.test", 1, 0, 0),
                          MirrorRow(902, 0, "nostore@x.test", 1, None, None)]


def test_table_prefix(mariadb: MariaDB, rows: list[Subscriber]) -> None:
    mariadb.sql(f"DELETE FROM {PREFIX}newsletter_subscriber WHERE subscriber_id = 1",
                database=PREFIXED_DATABASE)
    with open_db(mariadb, PREFIXED, table_prefix=PREFIX) as db:
        assert list(iter_subscribers_db(db, [1, 2], page_size=9)) == mirror(rows)[1:]


def test_unix_socket_url(mariadb: MariaDB, rows: list[Subscriber]) -> None:
    url = mariadb.url(READER, via_socket=True)
    with open_db(mariadb, READER, url=url) as db:
        assert db.target.where == f"socket {mariadb.socket_path}"
        assert list(iter_subscribers_db(db)) == mirror(rows)


def test_password_with_url_characters_percent_encoded(mariadb: MariaDB,
                                                      rows: list[Subscriber]) -> None:
    assert set("@:/#%") <= set(mariadb.passwords[SPECIAL])
    with open_db(mariadb, SPECIAL) as db:
        assert list(iter_subscribers_db(db)) == mirror(rows)


def tls_ca(mariadb: MariaDB) -> str:
    if mariadb.tls_ca is None:
        pytest.skip("no openssl here to make the test server a certificate")
    return mariadb.tls_ca


def test_tls_with_the_servers_ca(mariadb: MariaDB, rows: list[Subscriber]) -> None:
    url = f"{mariadb.url(READER, host='localhost')}?ssl=true&ssl_ca={tls_ca(mariadb)}"
    with open_db(mariadb, READER, url=url) as db:
        assert db.query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")[0][1]
        assert list(iter_subscribers_db(db)) == mirror(rows)


def test_untrusted_certificate_is_fatal_not_retried(mariadb: MariaDB) -> None:
    tls_ca(mariadb)
    sleeps: list[float] = []
    url = f"{mariadb.url(READER)}?ssl=true"  # the system's CAs do not know the test's
    with open_db(mariadb, READER, url=url, sleeps=sleeps) as db, \
            pytest.raises(FatalRemoteError) as err:
        db.connect()
    assert sleeps == [] and "CERTIFICATE_VERIFY_FAILED" in str(err.value)
    assert "?ssl_ca=" in str(err.value)


def test_ssl_true_refuses_a_connection_that_is_not_encrypted(mariadb: MariaDB) -> None:
    # as an older PyMySQL does when the server offers no TLS: go on in plain text
    url = f"{mariadb.url(READER)}?ssl=true"
    with open_db(mariadb, READER, url=url) as db:
        real = db._driver
        db._driver = SimpleNamespace(  # type: ignore[assignment]
            err=real.err, constants=real.constants,
            connect=lambda **kw: real.connect(**{**kw, "ssl": None, "ssl_disabled": True}))
        with pytest.raises(FatalRemoteError) as err:
            db.connect()
    assert "not encrypted although the URL says ssl=true" in str(err.value)


# -- UTC -------------------------------------------------------------------------------


def test_session_is_utc_although_the_server_is_not(mariadb: MariaDB) -> None:
    conn = mariadb.admin()
    with conn.cursor() as cur:  # a session in the server's default zone, for contrast
        cur.execute("SET time_zone = DEFAULT")
        cur.execute(UTC_SESSION_CHECK)
        local, utc, zone = cur.fetchone()
    conn.close()
    assert zone == "+02:00" and local - utc == timedelta(hours=2)
    with open_db(mariadb, READER) as db:
        now, utc_now, zone = db.query(UTC_SESSION_CHECK)[0]
    assert zone == "+00:00" and now == utc_now


def test_timestamps_written_by_now_are_utc(mariadb: MariaDB) -> None:
    clear_subscribers(mariadb)
    with open_db(mariadb, POWER) as db:  # one statement: NOW() and UTC_TIMESTAMP() agree
        db.execute("INSERT INTO newsletter_subscriber (subscriber_id, store_id, "
                   "subscriber_email, subscriber_status, change_status_at) VALUES "
                   "(1, 1, 'now@x.test', 1, NOW()), (2, 1, 'utc@x.test', 1, UTC_TIMESTAMP())")
    stored = mariadb.sql("SELECT UNIX_TIMESTAMP(change_status_at) FROM newsletter_subscriber "
                         "ORDER BY subscriber_id", database=DATABASE)
    assert stored[0] == stored[1]


def test_change_read_compares_in_utc(mariadb: MariaDB, rows: list[Subscriber]) -> None:
    clear_subscribers(mariadb)
    changed = ["2026-05-01 09:59:59", "2026-05-01 10:00:00", "2026-05-01 11:59:59",
               "2026-05-01 12:00:00", None]
    load_subscribers(mariadb, [Subscriber(i, f"s{i}@x.test", 1, 1, 0, 3, at)
                               for i, at in enumerate(changed, start=1)])
    since, until = datetime(2026, 5, 1, 10, tzinfo=timezone.utc), datetime(2026, 5, 1, 12)
    berlin = timezone(timedelta(hours=2))
    with open_db(mariadb, READER) as db:
        aware = list(iter_changed_subscribers(db, since, until.replace(tzinfo=timezone.utc)))
        naive = list(iter_changed_subscribers(db, since.replace(tzinfo=None), until))
        local = list(iter_changed_subscribers(db, since.astimezone(berlin),
                                              until.replace(tzinfo=timezone.utc)))
    assert [r.subscriber_id for r in aware] == [2, 3]
    assert naive == aware == local


def test_change_read_pages_and_filters(mariadb: MariaDB, rows: list[Subscriber]) -> None:
    since, until = datetime(2026, 1, 1, tzinfo=timezone.utc), ANCHOR
    expected = [r for s, r in zip(rows, mirror(rows), strict=True)
                if s.change_status_at and s.change_status_at >= "2026-01-01"
                and s.website_id == 1]
    with open_db(mariadb, READER) as db:
        got = list(iter_changed_subscribers(db, since, until, [1], page_size=3))
        assert db.stats.queries == len(expected) // 3 + 1
    assert got == expected and len(expected) > 3


# -- the guest opt-out -----------------------------------------------------------------


def test_optout_only_with_write_optin(mariadb: MariaDB, rows: list[Subscriber]) -> None:
    before = table(mariadb)
    with open_db(mariadb, WRITER) as db, pytest.raises(OptinWriteDisabled) as err:
        write_guest_optout(db, rows[0].subscriber_id, rows[0].subscriber_email)
    assert err.value.exit_code == 2 and "write_optin" in str(err.value)
    assert table(mariadb) == before


def test_optout_changes_only_the_matching_row(mariadb: MariaDB, rows: list[Subscriber]) -> None:
    target = next(s for s in rows if s.customer_id == 0 and s.subscriber_status == 1)
    other = next(s for s in rows if s.subscriber_id != target.subscriber_id)
    before = table(mariadb)
    start = utc_now_on_server(mariadb)
    with open_db(mariadb, WRITER, write_optin=True) as db:
        assert not write_guest_optout(db, target.subscriber_id, other.subscriber_email)
        assert not write_guest_optout(db, other.subscriber_id, target.subscriber_email)
        assert table(mariadb) == before
        assert write_guest_optout(db, target.subscriber_id, target.subscriber_email)
        end = utc_now_on_server(mariadb)
        after = table(mariadb)
        changed = list(iter_changed_subscribers(db, start, end + timedelta(seconds=1)))
    [row] = [r for r in after if r[0] == target.subscriber_id]
    assert row[2] == 3 and start <= row[3] <= end  # UTC, although the server is +02:00
    assert [r for r in after if r[0] != target.subscriber_id] == \
        [r for r in before if r[0] != target.subscriber_id]
    assert [r.subscriber_id for r in changed] == [target.subscriber_id]


def test_optout_of_a_row_already_unsubscribed_counts_as_applied(mariadb: MariaDB,
                                                                rows: list[Subscriber]
                                                                ) -> None:
    target = next(s for s in rows if s.customer_id == 0)
    with open_db(mariadb, WRITER, write_optin=True) as db:
        db.execute("SET timestamp = 1780272000")  # this session's clock: 2026-06-01 00:00 UTC
        assert write_guest_optout(db, target.subscriber_id, target.subscriber_email)
        # the same values again: no row changes, but the row is there (FOUND_ROWS), and
        # the email compares as Magento's collation does (case-insensitively)
        assert write_guest_optout(db, target.subscriber_id, target.subscriber_email.upper())
    [row] = [r for r in table(mariadb) if r[0] == target.subscriber_id]
    assert row[2:] == (3, datetime(2026, 6, 1))


def test_read_only_user_cannot_write(mariadb: MariaDB, rows: list[Subscriber]) -> None:
    before = table(mariadb)
    with open_db(mariadb, READER, write_optin=True) as db, pytest.raises(AuthError) as err:
        write_guest_optout(db, rows[0].subscriber_id, rows[0].subscriber_email)
    message = str(err.value)
    assert err.value.exit_code == 3 and "may not update guest subscribers" in message
    assert "GRANT UPDATE (subscriber_status, change_status_at)" in message
    assert table(mariadb) == before


# -- errors ----------------------------------------------------------------------------


def test_bad_password_is_an_auth_error_naming_neither_password_nor_url(mariadb: MariaDB
                                                                        ) -> None:
    password = "wrong-Pa55-word"
    url = mariadb.url(READER, password=password)
    sleeps: list[float] = []
    with open_db(mariadb, READER, url=url, sleeps=sleeps) as db, \
            pytest.raises(AuthError) as err:
        list(iter_subscribers_db(db))
    message = str(err.value)
    assert err.value.exit_code == 3 and sleeps == []  # no retry
    assert f"Magento database at 127.0.0.1:{mariadb.port}" in message
    assert "Access denied" in message and password not in message and url not in message


def test_unknown_database(mariadb: MariaDB) -> None:
    url = mariadb.url(READER, database="nope")
    with open_db(mariadb, READER, url=url) as db, pytest.raises(AuthError) as err:
        db.connect()
    assert "nope" in str(err.value) and err.value.exit_code == 3


def test_missing_table_names_the_table_and_prefix(mariadb: MariaDB) -> None:
    with open_db(mariadb, READER, table_prefix="mg_") as db, pytest.raises(AuthError) as err:
        list(iter_subscribers_db(db))
    assert "mg_newsletter_subscriber" in str(err.value)
    assert "table_prefix is 'mg_'" in str(err.value)  # a least-privilege user sees 1142
    with open_db(mariadb, POWER, table_prefix="mg_") as db, \
            pytest.raises(FatalRemoteError) as fatal:
        list(iter_subscribers_db(db))
    assert "magento.mg_newsletter_subscriber' doesn't exist" in str(fatal.value)
    assert "table_prefix is 'mg_'" in str(fatal.value) and fatal.value.exit_code == 3


def test_non_loopback_host_without_ssl_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        Database(DatabaseSettings(url="mysql://u:Secret-1@db.example.com/magento"))
    assert "ssl=true" in str(err.value) and "Secret-1" not in str(err.value)
    assert err.value.exit_code == 2


def test_connection_killed_mid_read_is_resumed_completely(mariadb: MariaDB,
                                                          rows: list[Subscriber]) -> None:
    sleeps: list[float] = []
    with open_db(mariadb, READER, sleeps=sleeps) as db:
        session = db.query("SELECT CONNECTION_ID()")[0][0]
        reader = iter_subscribers_db(db, page_size=10)
        first = [next(reader) for _ in range(10)]
        mariadb.sql(f"KILL {int(session)}")
        assert first + list(reader) == mirror(rows)
        assert db.stats.connects == 2 and len(sleeps) == 1


def test_connection_killed_mid_read_raises_when_retries_are_spent(mariadb: MariaDB,
                                                                  rows: list[Subscriber]
                                                                  ) -> None:
    with open_db(mariadb, READER, retry=RetryPolicy(budget=0.0)) as db:
        session = db.query("SELECT CONNECTION_ID()")[0][0]
        reader = iter_subscribers_db(db, page_size=10)
        first = [next(reader) for _ in range(10)]
        mariadb.sql(f"KILL {int(session)}")
        with pytest.raises(RetriableError) as err:
            list(reader)  # never a short list that looks complete
    assert first == mirror(rows)[:10]
    assert f"Magento database at 127.0.0.1:{mariadb.port}" in str(err.value)
    assert err.value.exit_code == 3


def test_refused_connection_is_retried_with_backoff_then_raised(mariadb: MariaDB) -> None:
    url = mariadb.url(READER).replace(f":{mariadb.port}/", f":{free_port()}/")  # nobody there
    sleeps: list[float] = []
    with open_db(mariadb, READER, url=url, sleeps=sleeps,
                 retry=RetryPolicy(budget=5.0, base_delay=0.5, max_delay=2.0)) as db, \
            pytest.raises(RetriableError) as err:
        db.connect()
    assert len(sleeps) >= 2 and sum(sleeps) <= 5.0
    assert "gave up after" in str(err.value) and mariadb.passwords[READER] not in str(err.value)


# -- check -----------------------------------------------------------------------------


def details(results: list[Any]) -> dict[str, tuple[bool, str]]:
    return {r.name: (r.ok, r.detail) for r in results}


def test_check_least_privilege_user_is_ok(mariadb: MariaDB, rows: list[Subscriber]) -> None:
    with open_db(mariadb, READER) as db:
        results = check_database(db)
    assert [r.name for r in results] == [
        "Magento database reachable", "Magento database table newsletter_subscriber",
        "Magento database table store", "Magento database permissions"]
    assert all(r.ok and not r.detail.startswith("warning") for r in results), results


def test_check_warns_for_a_too_powerful_user(mariadb: MariaDB, rows: list[Subscriber]) -> None:
    with open_db(mariadb, POWER) as db:
        ok, detail = details(check_database(db))["Magento database permissions"]
    assert ok and detail.startswith("warning: the user can do more than magsync needs")
    assert "ALL PRIVILEGES ON `magento`.*" in detail


@pytest.mark.parametrize(("user", "write_optin", "warning"), [
    (WRITER, True, None),
    (WRITER, False, "UPDATE (change_status_at, subscriber_status) ON `magento`"),
    (READER, True, "write_optin is true but the user may not update"),
])
def test_check_write_optin_grants(mariadb: MariaDB, user: str, write_optin: bool,
                                  warning: str | None) -> None:
    with open_db(mariadb, user, write_optin=write_optin) as db:
        ok, detail = details(check_database(db))["Magento database permissions"]
    assert ok
    if warning is None:
        assert not detail.startswith("warning"), detail
    else:
        assert detail.startswith("warning") and warning in detail


def test_check_bad_password_and_wrong_prefix(mariadb: MariaDB) -> None:
    with open_db(mariadb, READER, url=mariadb.url(READER, password="nope-nope")) as db:
        results = details(check_database(db))
    assert results["Magento database reachable"][0]
    assert not results["Magento database credentials"][0]
    with open_db(mariadb, READER, table_prefix="mg_") as db:
        results = details(check_database(db))
    ok, detail = results["Magento database table mg_newsletter_subscriber"]
    assert not ok and "table_prefix is 'mg_'" in detail
    assert "Magento database permissions" not in results
