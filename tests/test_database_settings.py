"""The database source's pure parts: URL parsing, settings validation, the driver import,
``SHOW GRANTS`` review. No server needed (tests/test_subscriber_db.py has one)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from magsync.errors import AuthError, ConfigError
from magsync.magento.database import (
    DRIVER_MISSING,
    Database,
    DatabaseSettings,
    is_loopback,
    load_driver,
    parse_url,
    quote_password,
    settings_secrets,
    validate_settings,
)
from magsync.magento.database_grants import parse_grants, review_grants
from magsync.util import logs
from tests.helpers import mariadb as helper

AWKWARD = "p@ss:w/o#rd%1 ?&=ü"


def test_password_round_trips_through_quote_password() -> None:
    target = parse_url(f"mysql://magsync:{quote_password(AWKWARD)}@db.internal:3307/shop"
                       "?ssl=true")
    assert (target.user, target.password, target.host, target.port, target.database) == \
        ("magsync", AWKWARD, "db.internal", 3307, "shop")
    assert target.ssl and target.where == "db.internal:3307"
    assert AWKWARD not in repr(target)


def test_url_defaults_and_socket() -> None:
    target = parse_url("mysql://u:pw@127.0.0.1/magento")
    assert (target.port, target.ssl, target.unix_socket) == (3306, False, None)
    sock = parse_url("mysql://u:pw@/magento?unix_socket=/run/mysqld/mysqld.sock")
    assert sock.unix_socket == "/run/mysqld/mysqld.sock"
    assert sock.where == "socket /run/mysqld/mysqld.sock"
    assert parse_url("mysql://u:pw@[::1]:3306/m").where == "[::1]:3306"
    # unencoded ':' and '@' in the password happen to parse; '/', '?' and '#' do not
    assert parse_url("mysql://u:p:w@d@localhost/m").password == "p:w@d"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.8.9.10", "::1"])
def test_loopback_hosts_need_no_tls(host: str) -> None:
    assert is_loopback(host)
    netloc = f"[{host}]" if ":" in host else host
    assert not parse_url(f"mysql://u:pw@{netloc}/m").ssl


@pytest.mark.parametrize(("url", "message"), [
    ("mysql://u:Secret-9@db.internal/m", "needs ?ssl=true for host db.internal"),
    ("mysql://u:Secret-9@10.0.0.5/m?ssl=false", "needs ?ssl=true"),
    ("mysql://u:Secret-9@128.0.0.1/m", "needs ?ssl=true"),
    ("mysql://u:Secret-9@localhost.evil.test/m", "needs ?ssl=true"),
    ("https://u:Secret-9@localhost/m", "must start with mysql://"),
    ("mysql://u:Sec#ret-9@localhost/m", "percent-encode it"),
    ("mysql://u:Sec/ret-9@localhost/m", "percent-encode it, as %2F"),
    ("mysql://u:Secret-9@localhost:99999/m", "invalid port"),
    ("mysql://u:Secret-9@localhost/", "must name the database"),
    ("mysql://:Secret-9@localhost/m", "must name the user"),
    ("mysql://u:Secret-9@localhost/m?sll=true", "unknown option(s) sll"),
    ("mysql://u:Secret-9@localhost/m?ssl=maybe", "ssl must be true or false"),
    ("mysql://u:Secret-9@/m", "must name the host"),
    ("mysql://u:Secret-9@/m?unix_socket=run/x.sock", "absolute path"),
])
def test_bad_urls_are_refused_without_quoting_them(url: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_url(url)
    assert message in str(err.value)
    assert "Secret" not in str(err.value) and "ret-9" not in str(err.value)


def test_validate_settings_reports_every_problem() -> None:
    settings = DatabaseSettings(url="mysql://u:pw@db.internal/m", table_prefix="mg`; DROP",
                                timeout=0)
    assert validate_settings(settings) == [
        "url: needs ?ssl=true for host db.internal: only loopback hosts and unix sockets "
        "may be used without TLS",
        "table_prefix: may contain only letters, digits and '_'",
        "timeout: must be between 0 and 3600 seconds"]
    assert validate_settings(DatabaseSettings("mysql://u:pw@localhost/m", "mg_2")) == []
    assert "pw" not in repr(settings)


def test_database_refuses_invalid_settings_with_paths() -> None:
    pytest.importorskip("pymysql")
    with pytest.raises(ConfigError) as err:
        Database(DatabaseSettings(url="mysql://u:pw@localhost/m", table_prefix="a-b"))
    assert err.value.problems == [
        "magento.database.table_prefix: may contain only letters, digits and '_'"]


def test_secrets_cover_url_and_password_forms() -> None:
    url = f"mysql://u:{quote_password(AWKWARD)}@localhost/m"
    assert settings_secrets(DatabaseSettings(url)) == [url, AWKWARD, quote_password(AWKWARD)]


def test_database_registers_its_secrets_for_log_redaction() -> None:
    pytest.importorskip("pymysql")
    logs.setup_logging()
    url = f"mysql://u:{quote_password(AWKWARD)}@localhost/m"
    Database(DatabaseSettings(url))
    assert logs.scrub(f"a {url} b {AWKWARD}") == "a *** b ***"
    logs.setup_logging()  # forget them again


def test_driver_messages_quoting_a_secret_are_redacted() -> None:
    pymysql = pytest.importorskip("pymysql")
    url = f"mysql://u:{quote_password(AWKWARD)}@localhost/m"
    db = Database(DatabaseSettings(url))

    def connect(**kw: object) -> None:  # a driver that quotes what it was given
        raise pymysql.err.OperationalError(1045, f"denied: {kw['password']} from {url}")
    db._driver = SimpleNamespace(err=pymysql.err, constants=pymysql.constants,
                                 connect=connect)
    with pytest.raises(AuthError) as err:
        db.connect()
    assert str(err.value).startswith("Magento database at localhost:3306: denied: *** from ***")
    assert "ss:w" not in str(err.value)


def test_missing_driver_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymysql", None)  # makes ``import pymysql`` fail
    with pytest.raises(ConfigError) as err:
        load_driver()
    assert str(err.value) == DRIVER_MISSING == (
        "subscribers: database needs the PyMySQL driver: pip install 'magsync[mysql]'")
    with pytest.raises(ConfigError):
        Database(DatabaseSettings("mysql://u:pw@localhost/m"))


# -- SHOW GRANTS -----------------------------------------------------------------------

MARIADB_READER = [
    "GRANT USAGE ON *.* TO `r`@`%` IDENTIFIED BY PASSWORD '*2B6D9B4707E53C5E0A3B22B00402'",
    "GRANT SELECT ON `magento`.`store` TO `r`@`%`",
    "GRANT SELECT ON `magento`.`newsletter_subscriber` TO `r`@`%`",
]
WRITER_LINE = ("GRANT SELECT, UPDATE (`change_status_at`, `subscriber_status`) ON "
               "`magento`.`newsletter_subscriber` TO `w`@`%`")


def test_least_privilege_reader() -> None:
    report = review_grants(MARIADB_READER, "magento", "", write_optin=False)
    assert report.excess == [] and report.roles == [] and not report.can_write_optin


def test_column_update_is_what_write_optin_needs() -> None:
    lines = [*MARIADB_READER[:2], WRITER_LINE]
    with_optin = review_grants(lines, "magento", "", write_optin=True)
    assert with_optin.excess == [] and with_optin.can_write_optin
    without = review_grants(lines, "magento", "", write_optin=False)
    assert without.excess == [
        "UPDATE (change_status_at, subscriber_status) ON `magento`.`newsletter_subscriber`"]


@pytest.mark.parametrize(("line", "excess"), [
    ("GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION",
     "ALL PRIVILEGES ON *.*"),
    ("GRANT SELECT ON `magento`.* TO `r`@`%`", "SELECT ON `magento`.*"),
    ("GRANT SELECT ON `magento`.`customer_entity` TO `r`@`%`",
     "SELECT ON `magento`.`customer_entity`"),
    ("GRANT SELECT ON `other`.`store` TO `r`@`%`", "SELECT ON `other`.`store`"),
    ("GRANT SELECT ON `magento.x`.`store` TO `r`@`%`", "SELECT ON `magento.x`.`store`"),
    ("GRANT UPDATE ON `magento`.`newsletter_subscriber` TO `r`@`%`",
     "UPDATE ON `magento`.`newsletter_subscriber`"),
    ("GRANT UPDATE (`subscriber_email`) ON `magento`.`newsletter_subscriber` TO `r`@`%`",
     "UPDATE (subscriber_email) ON `magento`.`newsletter_subscriber`"),
    ("GRANT EXECUTE ON PROCEDURE `magento`.`p` TO `r`@`%`",
     "EXECUTE ON PROCEDURE `magento`.`p`"),
    ("GRANT PROXY ON ``@`%` TO `r`@`%`", "PROXY ON ``@`%`"),
    ("GRANT SELECT, INSERT ON magento.store TO 'r'@'%'", "INSERT ON `magento`.`store`"),
])
def test_more_than_needed_is_reported(line: str, excess: str) -> None:
    report = review_grants([*MARIADB_READER, line], "magento", "", write_optin=True)
    assert report.excess == [excess]


def test_whole_table_update_covers_write_optin_but_is_excess() -> None:
    report = review_grants(["GRANT SELECT, UPDATE ON `magento`.* TO `w`@`%`"], "magento", "",
                           write_optin=True)
    assert report.can_write_optin and report.excess == ["SELECT ON `magento`.*",
                                                        "UPDATE ON `magento`.*"]


def test_prefixed_tables_and_roles() -> None:
    lines = ["GRANT SELECT ON `shop`.`mg_store` TO `r`@`%`",
             "GRANT SELECT ON `shop`.`mg_newsletter_subscriber` TO `r`@`%`",
             "GRANT `magsync_role` TO `r`@`%`"]
    report = review_grants(lines, "shop", "mg_", write_optin=False)
    assert report.excess == [] and report.roles == ["`magsync_role`"]
    grants, _ = parse_grants(lines)
    assert [(g.privilege, g.database, g.table) for g in grants] == [
        ("SELECT", "shop", "mg_store"), ("SELECT", "shop", "mg_newsletter_subscriber")]


# -- the test server helper ------------------------------------------------------------


def test_no_server_binary_skips_but_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(helper, "find_program", lambda names: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="mariadbd or mysqld"):
        next(helper.mariadb_session())
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true needs a MariaDB test server"):
        next(helper.mariadb_session())
