"""``magento.subscribers: database`` and the ``magento.database`` section (SPEC sections 2
and 8): validation with paths, the password percent-encoded when substituted into the
URL, the whole URL a secret, and a clear exit 2 when the driver is missing."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from magsync.config import DatabaseConfig, iter_secrets, load_config, parse_config
from magsync.errors import ConfigError
from magsync.magento.database import parse_url
from magsync.magento.subscriber_source import database_settings
from magsync.sandbox.pair import SandboxPair
from tests.helpers.cli import CliRunner

PASSWORD = "p@ss:w/o#rd%1 ?"  # every character a URL gives meaning to
ENV = {"H20_TOKEN": "tok-h20-3b9f", "H20_USER": "user-h20", "H20_SECRET": "sec-h20-77a1",
       "H20_DB_PASSWORD": PASSWORD}
URL = "mysql://magsync:${H20_DB_PASSWORD}@127.0.0.1:3306/magento"


def base(**database: Any) -> dict[str, Any]:
    """A valid config with ``subscribers: database``; ``database`` overrides the section."""
    section: dict[str, Any] = {"url": URL}
    section.update(database)
    return {
        "magento": {"base_url": "http://127.0.0.1:9", "timeout": 12,
                    "auth": {"method": "bearer", "token": "${H20_TOKEN}"},
                    "subscribers": "database", "database": section},
        "emarsys": {"auth": {"username": "${H20_USER}", "secret": "${H20_SECRET}"}},
    }


def problems_of(data: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    try:
        parse_config(data, env=ENV if env is None else env)
    except ConfigError as exc:
        return exc.problems
    return []


def test_database_section_is_read_with_its_defaults() -> None:
    data = base()
    cfg = parse_config(data, env=ENV)
    db = cfg.magento.database
    assert cfg.magento.subscribers == "database"
    assert isinstance(db, DatabaseConfig)
    assert (db.table_prefix, db.write_optin) == ("", False)
    settings = database_settings(cfg.magento)
    assert settings.timeout == 12  # magento.timeout
    data["magento"]["database"].update(table_prefix="mg_", write_optin=True)
    db = parse_config(data, env=ENV).magento.database
    assert db is not None and (db.table_prefix, db.write_optin) == ("mg_", True)


def test_password_substituted_into_the_url_is_percent_encoded() -> None:
    db = parse_config(base(), env=ENV).magento.database
    assert db is not None
    url = db.url.reveal()
    assert PASSWORD not in url  # encoded: '@', ':', '/', '#', '?' would break the URL
    target = parse_url(url)
    assert (target.user, target.password, target.host, target.port, target.database) == (
        "magsync", PASSWORD, "127.0.0.1", 3306, "magento")


def test_a_variable_that_is_the_whole_url_is_taken_as_written() -> None:
    whole = "mysql://magsync:already%40encoded@localhost/magento"
    db = parse_config(base(url="${H20_DB_URL}"), env={**ENV, "H20_DB_URL": whole}
                      ).magento.database
    assert db is not None and db.url.reveal() == whole
    assert parse_url(db.url.reveal()).password == "already@encoded"


def test_the_whole_url_and_the_password_are_secrets() -> None:
    cfg = parse_config(base(), env=ENV)
    secrets = iter_secrets(cfg)
    assert cfg.magento.database is not None
    assert cfg.magento.database.url.reveal() in secrets
    assert PASSWORD in secrets  # as a driver error might quote it
    assert urlsplit(cfg.magento.database.url.reveal()).password in secrets  # as encoded
    assert PASSWORD not in repr(cfg) and "magsync:" not in repr(cfg)


def test_subscribers_database_requires_the_section() -> None:
    data = base()
    del data["magento"]["database"]
    assert problems_of(data) == [
        "magento.database.url: is required with magento.subscribers: database "
        "(mysql://user:${PASSWORD}@host:3306/database)"]
    assert problems_of(base(url=None)) == ["magento.database.url: is required"]


@pytest.mark.parametrize("url, problem", [
    ("postgres://u:${H20_DB_PASSWORD}@127.0.0.1/magento", "must start with mysql://"),
    ("mysql://u:${H20_DB_PASSWORD}@db.example.com/magento",
     "needs ?ssl=true for host db.example.com: only loopback hosts and unix sockets may be "
     "used without TLS"),
    ("mysql://u:${H20_DB_PASSWORD}@127.0.0.1:3306/", "must name the database: "
     "mysql://user:password@host:port/DATABASE"),
    ("mysql://u:${H20_DB_PASSWORD}@127.0.0.1/magento?sslmode=on",
     "has unknown option(s) sslmode (allowed: ssl, ssl_ca, unix_socket)"),
    ("mysql://u:${H20_DB_PASSWORD}@localhost/magento?unix_socket=run/mysqld.sock",
     "unix_socket must be an absolute path"),
])
def test_bad_urls_are_named_without_quoting_the_url(url: str, problem: str) -> None:
    problems = problems_of(base(url=url))
    assert problems == [f"magento.database.url: {problem}"]
    assert "%40" not in problems[0] and PASSWORD not in problems[0]


@pytest.mark.parametrize("url", [
    "mysql://u:${H20_DB_PASSWORD}@db.example.com:3306/magento?ssl=true",
    "mysql://u:${H20_DB_PASSWORD}@db.example.com/magento?ssl=true&ssl_ca=/etc/ssl/db-ca.pem",
    "mysql://u:${H20_DB_PASSWORD}@localhost/magento?unix_socket=/run/mysqld/mysqld.sock",
    "mysql://u:${H20_DB_PASSWORD}@[::1]:3306/magento",
])
def test_good_urls(url: str) -> None:
    assert problems_of(base(url=url)) == []


def test_every_database_problem_is_reported_with_its_path() -> None:
    data = base(table_prefix="mg-", write_optin="yes please", colour="blue")
    assert problems_of(data, env={k: v for k, v in ENV.items() if k != "H20_DB_PASSWORD"}) == [
        "magento.database.colour: unknown key (allowed: url, table_prefix, write_optin)",
        "magento.database.url: environment variable H20_DB_PASSWORD is not set",
        "magento.database.write_optin: must be true or false, not a string"]
    assert problems_of(data) == [
        "magento.database.colour: unknown key (allowed: url, table_prefix, write_optin)",
        "magento.database.write_optin: must be true or false, not a string",
        "magento.database.table_prefix: may contain only letters, digits and '_'"]


def test_an_empty_url_variable_is_a_problem() -> None:
    assert problems_of(base(url="${H20_DB_URL}"), env={**ENV, "H20_DB_URL": " "}) == [
        "magento.database.url: is empty"]


def test_database_section_without_subscribers_database_is_a_warning() -> None:
    data = base()
    data["magento"]["subscribers"] = "emarsys-module"
    cfg = parse_config(data, env={k: v for k, v in ENV.items() if k != "H20_DB_PASSWORD"})
    assert cfg.magento.database is None
    assert cfg.warnings == ("magento.database is ignored: magento.subscribers is "
                            "emarsys-module, not database",)
    assert sorted(iter_secrets(cfg)) == sorted(
        [ENV["H20_TOKEN"], ENV["H20_USER"], ENV["H20_SECRET"]])


def test_an_inline_password_counts_as_an_inline_secret(tmp_path: Path) -> None:
    data = base(url="mysql://magsync:inline-pw@127.0.0.1/magento")
    path = tmp_path / "magsync.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o644)
    warnings = load_config(path, env=ENV).warnings
    assert len(warnings) == 1 and "holds secrets inline" in warnings[0]
    socket_only = base(url="mysql://magsync@localhost/magento?unix_socket=/run/my.sock")
    path.write_text(yaml.safe_dump(socket_only))
    assert load_config(path, env=ENV).warnings == ()


# -- through the CLI ---------------------------------------------------------------------


@pytest.fixture
def database_config(pair: SandboxPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                    ) -> Path:
    """The sandbox pair's config with ``subscribers: database`` (no server needed here)."""
    monkeypatch.setenv("H20_DB_PASSWORD", PASSWORD)
    cfg = pair.config(tmp_path / "state.db")
    cfg["magento"]["subscribers"] = "database"
    cfg["magento"]["database"] = {"url": URL}
    path = tmp_path / "magsync.yaml"
    path.write_text(yaml.safe_dump(copy.deepcopy(cfg)))
    path.chmod(0o600)
    return path


def test_missing_driver_is_exit_2_naming_the_extra(database_config: Path,
                                                  magsync: CliRunner,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymysql", None)  # import pymysql now fails
    result = magsync("export-initial", config=database_config)
    assert result.code == 2, result
    assert "subscribers: database needs the PyMySQL driver: pip install 'magsync[mysql]'" \
        in result.err
    result = magsync("check", config=database_config)
    assert result.code == 2, result
    assert "FAIL Magento database driver — subscribers: database needs the PyMySQL driver: " \
           "pip install 'magsync[mysql]'" in result.out


def test_database_config_errors_through_the_cli(database_config: Path,
                                                magsync: CliRunner) -> None:
    data = yaml.safe_load(database_config.read_text())
    data["magento"]["database"]["url"] = "mysql://magsync:${H20_DB_PASSWORD}@10.1.2.3/magento"
    database_config.write_text(yaml.safe_dump(data))
    result = magsync("check", config=database_config)
    assert result.code == 2, result
    assert "magento.database.url: needs ?ssl=true for host 10.1.2.3" in result.out + result.err
    assert PASSWORD not in result.out + result.err and "%40" not in result.out + result.err
