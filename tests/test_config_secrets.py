"""Secrets and URLs at config load (SPEC 2): a secret with a stray ``\\r`` or surrounding
whitespace is exit 2 naming the key, never the value; ``${VAR:-default}``; ``https://``
for every URL but loopback hosts; the registry later URLs join."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from magsync.config import iter_secrets, parse_config
from magsync.config.reader import Reader
from magsync.config.rules import (
    SecretUrl,
    is_loopback,
    read_secret_url,
    read_url,
    register_url,
    require_query_flag,
    url_problem,
)
from magsync.errors import ConfigError
from magsync.sandbox.pair import SandboxPair

SECRET = "SuperSecret-4e1b"


def minimal(**emarsys_auth: Any) -> dict[str, Any]:
    return {"magento": {"base_url": "https://shop.example.com",
                        "auth": {"method": "bearer", "token": "${MAG_TOKEN}"}},
            "emarsys": {"auth": {"username": "api_user_x", "secret": "${EM_SECRET}",
                                 **emarsys_auth}}}


def problems(data: dict[str, Any], env: dict[str, str]) -> list[str]:
    try:
        parse_config(data, env=env)
    except ConfigError as exc:
        return exc.problems
    return []


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "secrets.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return path


# -- secrets --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [f"{SECRET}\r", f" {SECRET}", f"{SECRET}\n",
                                   "Super\x00Secret", "Super\tSecret"])
def test_a_bad_secret_from_the_environment_is_exit_2_naming_the_key(
        magsync: Any, pair: SandboxPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        value: str) -> None:
    cfg = pair.config(tmp_path / "state.db")
    cfg["emarsys"]["auth"]["secret"] = "${H18_EMARSYS_SECRET}"
    monkeypatch.setenv("H18_EMARSYS_SECRET", value.replace("\x00", "\x01"))
    r = magsync("--debug", "sync-realtime", config=write(tmp_path, cfg))
    assert r.code == 2, r
    assert "emarsys.auth.secret:" in r.err
    assert "internal error" not in r.err  # --debug adds a traceback: it holds no value
    assert "Super" not in r.out + r.err
    assert pair.emarsys.requests() == []  # before any network call


def test_an_inline_secret_with_a_carriage_return_is_refused(tmp_path: Path) -> None:
    data = minimal()
    data["magento"]["auth"]["token"] = f"{SECRET}\r"
    found = problems(data, {"EM_SECRET": "x-secret"})
    assert found == ["magento.auth.token: holds a control character (e.g. a stray \\r from "
                     "a Windows editor); remove it (the value is not shown)"]


def test_surrounding_whitespace_is_named_not_shown() -> None:
    found = problems(minimal(), {"MAG_TOKEN": f"{SECRET} ", "EM_SECRET": "x-secret"})
    assert found == ["magento.auth.token: has whitespace (a space or a line break) at its "
                     "start or end; remove it (the value is not shown)"]
    assert SECRET not in " ".join(found)


# -- ${VAR:-default} --------------------------------------------------------------------


def test_var_with_default() -> None:
    data = minimal()
    data["emarsys"]["auth"]["secret"] = "${EM_SECRET:-fallback-secret}"
    data["magento"]["page_size"] = "${PAGE:-50}"
    cfg = parse_config(data, env={"MAG_TOKEN": "t-token"})
    assert cfg.emarsys.auth.secret is not None
    assert cfg.emarsys.auth.secret.reveal() == "fallback-secret"
    assert cfg.magento.page_size == 50
    cfg = parse_config(data, env={"MAG_TOKEN": "t-token", "EM_SECRET": "from-env",
                                  "PAGE": "70"})
    assert cfg.emarsys.auth.secret is not None
    assert cfg.emarsys.auth.secret.reveal() == "from-env" and cfg.magento.page_size == 70
    # as in a shell, an empty variable takes the default too
    cfg = parse_config(data, env={"MAG_TOKEN": "t-token", "EM_SECRET": ""})
    assert cfg.emarsys.auth.secret is not None
    assert cfg.emarsys.auth.secret.reveal() == "fallback-secret"


def test_an_empty_default_of_a_required_secret_is_a_problem() -> None:
    data = minimal()
    data["emarsys"]["auth"]["secret"] = "${EM_SECRET:-}"
    assert problems(data, {"MAG_TOKEN": "t-token"}) == ["emarsys.auth.secret: is empty"]


def test_a_default_is_used_by_the_cli(magsync: Any, pair: SandboxPair, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("H18_UNSET_SECRET", raising=False)
    cfg = pair.config(tmp_path / "state.db")
    cfg["emarsys"]["auth"]["secret"] = "${H18_UNSET_SECRET:-" + pair.emarsys.secret + "}"
    r = magsync("check", config=write(tmp_path, cfg))
    assert r.code == 0, r


# -- URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["magento.base_url", "emarsys.api_url"])
def test_plain_http_to_a_remote_host_is_refused(key: str) -> None:
    section, name = key.split(".")
    data = minimal()
    data[section][name] = "http://shop.example.com/api/v2"
    assert problems(data, {"MAG_TOKEN": "t-token", "EM_SECRET": "x-secret"}) == [
        f"{key}: must start with https://; http:// is allowed only for a loopback host "
        "(127.0.0.1, ::1, localhost): credentials never travel unencrypted "
        "(got http://shop.example.com)"]


def test_the_token_url_follows_the_rule_too() -> None:
    data = minimal(method="oauth2", client_id="cid-1", client_secret="csecret-1",
                   token_url="http://auth.example.com/oauth2/token")
    del data["emarsys"]["auth"]["username"], data["emarsys"]["auth"]["secret"]
    found = problems(data, {"MAG_TOKEN": "t-token"})
    assert len(found) == 1 and found[0].startswith("emarsys.auth.token_url: must start "
                                                   "with https://")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://127.9.8.7",
                                 "http://[::1]:8080/shop", "http://localhost:80",
                                 "https://shop.example.com", "HTTPS://Shop.Example.com"])
def test_allowed_urls(url: str) -> None:
    assert url_problem("magento.base_url", url) is None


@pytest.mark.parametrize("url", ["ftp://shop.example.com", "http://128.0.0.1",
                                 "http://localhost.example.com", "http://[::2]",
                                 "shop.example.com", "https://"])
def test_refused_urls(url: str) -> None:
    assert url_problem("magento.base_url", url) is not None


def test_the_cli_refuses_http_before_any_request(magsync: Any, pair: SandboxPair,
                                                 tmp_path: Path) -> None:
    cfg = pair.config(tmp_path / "state.db")
    cfg["magento"]["base_url"] = "http://shop.example.com"
    r = magsync("check", config=write(tmp_path, cfg))
    assert r.code == 2, r
    assert "magento.base_url: must start with https://" in r.out + r.err


def test_is_loopback() -> None:
    assert all(map(is_loopback, ["localhost", "127.0.0.1", "127.255.0.3", "::1", "[::1]"]))
    assert not any(map(is_loopback, ["", None, "10.0.0.1", "localhost.evil", "::"]))


# -- the registry later URLs join -------------------------------------------------------


def test_a_registered_secret_url_is_checked_and_redacted() -> None:
    register_url("h18test.database.url", schemes=("mysql",), loopback_schemes=(),
                 secret=True, check=require_query_flag("ssl", unless=("unix_socket",)))
    register_url("h18test.ping_urls.*", secret=True)
    r = Reader({"DB_PASSWORD": "p%40ss%2Fw0rd"})  # that step percent-encodes it
    raw = {"url": "mysql://magsync:${DB_PASSWORD}@db.internal:3306/magento"}
    url = read_secret_url(r, raw, "url", "h18test.database")
    assert isinstance(url, SecretUrl)
    assert r.problems == ["h18test.database.url: needs ?ssl=true for any host but loopback "
                          "(encrypted connection)"]
    assert "p@ss/w0rd" in url.parts()
    assert read_secret_url(Reader({}), {"url": "mysql://u:p@127.0.0.1/m"}, "url",
                           "h18test.database") is not None
    r = Reader({})
    assert read_url(r, {"x": "http://hc-ping.com/0f3a-uuid-1234"}, "x",
                    "h18test.ping_urls") == "http://hc-ping.com/0f3a-uuid-1234"
    assert r.problems == ["h18test.ping_urls.x: must start with https://; http:// is "
                          "allowed only for a loopback host (127.0.0.1, ::1, localhost): "
                          "credentials never travel unencrypted"]  # the URL is not shown
    assert "/0f3a-uuid-1234" in SecretUrl("https://hc-ping.com/0f3a-uuid-1234").parts()


def test_iter_secrets_finds_every_secret_in_the_config() -> None:
    cfg = parse_config(minimal(), env={"MAG_TOKEN": "t-token", "EM_SECRET": "x-secret"})
    assert sorted(iter_secrets(cfg)) == ["api_user_x", "t-token", "x-secret"]
