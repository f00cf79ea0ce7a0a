"""Configuration: loading, validation, env interpolation, secrets, discovery (magsync.config).

Config errors are also checked through the real CLI (``magsync.cli.run``): exit code 2 and
the one message naming the problem and the fix.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from magsync.cli import run
from magsync.config import (
    FieldMapping,
    KeyFields,
    MagentoConfig,
    Secret,
    SyncConfig,
    iter_secrets,
    load_config,
    parse_config,
)
from magsync.errors import EXIT_CONFIG, ConfigError
from magsync.sandbox.pair import SandboxPair
from magsync.util.logs import get_logger

REPO = Path(__file__).resolve().parent.parent
# distinctive values, so that finding one in any output means a leak
SECRETS = {"H6_MAG_TOKEN": "tok-7f3a9c1e-leak", "H6_EM_USER": "acme_user_0c9d",
           "H6_EM_SECRET": "em-secret-5b2e88"}


def base_config(tmp_path: Path) -> dict[str, Any]:
    """A minimal valid config that reads its secrets from the environment."""
    return {
        "magento": {"base_url": "http://127.0.0.1:9",
                    "auth": {"method": "bearer", "token": "${H6_MAG_TOKEN}"}},
        "emarsys": {"auth": {"username": "${H6_EM_USER}", "secret": "${H6_EM_SECRET}"}},
        "state": {"path": str(tmp_path / "state.db")},
    }


def write(path: Path, data: Any, mode: int = 0o600) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    path.chmod(mode)
    return path


def problems_of(data: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    """The problems parse_config reports for ``data`` (an empty list when valid)."""
    try:
        parse_config(data, env=SECRETS if env is None else env)
    except ConfigError as exc:
        return exc.problems
    return []


def with_value(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    node = out
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return out


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAGSYNC_CONFIG", raising=False)
    monkeypatch.delenv("MAGSYNC_STATE", raising=False)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def base(tmp_path: Path) -> dict[str, Any]:
    return base_config(tmp_path)


# -- valid configs ---------------------------------------------------------------------------


def test_minimal_config_gets_the_defaults(tmp_path: Path, base: dict[str, Any]) -> None:
    cfg = load_config(write(tmp_path / "m.yaml", base), env=SECRETS)
    assert cfg.magento.rest_url == "http://127.0.0.1:9/rest/all/V1"
    assert cfg.magento.page_size == 200 and cfg.magento.concurrency == 2
    assert cfg.emarsys.batch_size == 1000 and cfg.emarsys.requests_per_minute == 600
    assert cfg.emarsys.key_fields == KeyFields()
    assert cfg.sync == SyncConfig()
    assert cfg.state.path == tmp_path / "state.db"
    assert cfg.warnings == ()


def test_config_is_frozen(tmp_path: Path, base: dict[str, Any]) -> None:
    cfg = load_config(write(tmp_path / "m.yaml", base), env=SECRETS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.magento.page_size = 5  # type: ignore[misc]


def test_env_interpolation(base: dict[str, Any]) -> None:
    data = with_value(base, "magento.base_url", "https://${H6_HOST}:${H6_PORT}/shop/")
    data = with_value(data, "magento.page_size", "${H6_PAGE}")
    data = with_value(data, "contacts.customers.list", "Customers $NOT_A_REF")
    env = {**SECRETS, "H6_HOST": "10.0.0.5", "H6_PORT": "8080", "H6_PAGE": "50"}
    cfg = parse_config(data, env=env)
    assert cfg.magento.base_url == "https://10.0.0.5:8080/shop"
    assert cfg.magento.page_size == 50
    assert cfg.contacts.customers.list == "Customers $NOT_A_REF"
    assert cfg.magento.auth.token is not None
    assert cfg.magento.auth.token.reveal() == SECRETS["H6_MAG_TOKEN"]
    assert cfg.emarsys.auth.secret == Secret(SECRETS["H6_EM_SECRET"])


def test_env_interpolation_of_numbers_and_booleans(base: dict[str, Any]) -> None:
    data = with_value(base, "magento.timeout", "${H6_T}")
    data = with_value(data, "contacts.subscribers.enabled", "${H6_E}")
    data = with_value(data, "sync.max_attempts", "${H6_N}")
    cfg = parse_config(data, env={**SECRETS, "H6_T": "2.5", "H6_E": "false", "H6_N": "3"})
    assert (cfg.magento.timeout, cfg.contacts.subscribers.enabled) == (2.5, False)
    assert cfg.sync.max_attempts == 3
    assert problems_of(data, env={**SECRETS, "H6_T": "", "H6_E": "maybe", "H6_N": "x"}) == [
        "magento.timeout: must be a number of seconds between 1 and 600",
        "contacts.subscribers.enabled: must be true or false, not a string",
        "sync.max_attempts: must be a whole number between 1 and 1000"]
    assert problems_of(data, env=SECRETS) == [
        "magento.timeout: environment variable H6_T is not set",
        "contacts.subscribers.enabled: environment variable H6_E is not set",
        "sync.max_attempts: environment variable H6_N is not set"]


def test_missing_env_vars_are_each_named(base: dict[str, Any]) -> None:
    problems = problems_of(base, env={"H6_EM_USER": "u"})
    assert problems == [
        "magento.auth.token: environment variable H6_MAG_TOKEN is not set",
        "emarsys.auth.secret: environment variable H6_EM_SECRET is not set",
    ]


def test_oauth1_and_oauth2_auth(base: dict[str, Any]) -> None:
    data = with_value(base, "magento.auth", {
        "consumer_key": "${H6_MAG_TOKEN}", "consumer_secret": "${H6_MAG_TOKEN}",
        "access_token": "${H6_MAG_TOKEN}", "access_token_secret": "${H6_MAG_TOKEN}"})
    data = with_value(data, "emarsys.auth", {"method": "oauth2", "client_id": "${H6_EM_USER}",
                                             "client_secret": "${H6_EM_SECRET}"})
    cfg = parse_config(data, env=SECRETS)
    assert cfg.magento.auth.method == "oauth1"
    assert cfg.emarsys.auth.method == "oauth2"
    assert cfg.emarsys.auth.token_url == "https://auth.emarsys.net/oauth2/token"
    assert sorted(iter_secrets(cfg)) == sorted([SECRETS["H6_MAG_TOKEN"]] * 4
                                               + [SECRETS["H6_EM_USER"], SECRETS["H6_EM_SECRET"]])


def test_oauth2_requires_its_credentials(base: dict[str, Any]) -> None:
    data = with_value(base, "emarsys.auth", {"method": "oauth2", "username": "x"})
    assert problems_of(data) == [
        "emarsys.auth.username: unknown key (allowed: method, client_id, client_secret, "
        "token_url)",
        "emarsys.auth.client_id: is required",
        "emarsys.auth.client_secret: is required",
    ]


def test_example_config_loads_cleanly_when_its_vars_are_set() -> None:
    env = {name: f"value-of-{name}" for name in (
        "MAGENTO_CONSUMER_KEY", "MAGENTO_CONSUMER_SECRET", "MAGENTO_ACCESS_TOKEN",
        "MAGENTO_ACCESS_TOKEN_SECRET", "EMARSYS_USERNAME", "EMARSYS_SECRET")}
    cfg = load_config(REPO / "examples" / "magsync.yaml", env=env)
    assert cfg.warnings == ()
    assert cfg.magento.auth.method == "oauth1"
    assert cfg.magento.auth.consumer_key == Secret("value-of-MAGENTO_CONSUMER_KEY")
    # the example documents the defaults: it must agree with them
    assert cfg.sync == SyncConfig()
    assert cfg.emarsys.key_fields == KeyFields()
    assert (cfg.magento.page_size, cfg.magento.concurrency, cfg.magento.timeout) == (
        MagentoConfig.page_size, MagentoConfig.concurrency, MagentoConfig.timeout)
    assert FieldMapping("dob", 4, "date") in cfg.contacts.customers.fields
    assert FieldMapping("addresses.default_billing.country_id", 14, "country") in \
        cfg.contacts.customers.fields


def test_example_config_without_vars_names_each_missing_var() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(REPO / "examples" / "magsync.yaml", env={})
    assert len(info.value.problems) == 6
    assert "magento.auth.consumer_key: environment variable MAGENTO_CONSUMER_KEY is not set" \
        in info.value.problems


# -- range checks ----------------------------------------------------------------------------

RANGES = [
    ("magento.page_size", 1, 300),
    ("magento.concurrency", 1, 16),
    ("emarsys.batch_size", 1, 1000),
    ("emarsys.requests_per_minute", 1, 100000),
    ("emarsys.concurrency", 1, 32),
    ("sync.max_attempts", 1, 1000),
    ("sync.subscriber_scan_minutes", 0, 10080),
    ("sync.max_deletions", 0, 10_000_000),
]


@pytest.mark.parametrize(("path", "lo", "hi"), RANGES)
def test_range_checks(base: dict[str, Any], path: str, lo: int, hi: int) -> None:
    assert problems_of(with_value(base, path, lo)) == []
    assert problems_of(with_value(base, path, hi)) == []
    for bad in (lo - 1, hi + 1):
        assert problems_of(with_value(base, path, bad)) == [
            f"{path}: must be between {lo} and {hi} (got {bad})"]
    for wrong in ("many", 2.5, True, [1]):
        assert problems_of(with_value(base, path, wrong)) == [
            f"{path}: must be a whole number between {lo} and {hi}"]


def test_deletions_is_keep_unsubscribe_or_delete(base: dict[str, Any]) -> None:
    cfg = parse_config(base, env=SECRETS)
    assert (cfg.sync.deletions, cfg.sync.max_deletions) == ("keep", 100)
    for mode in ("keep", "unsubscribe", "delete"):
        cfg = parse_config(with_value(base, "sync.deletions", mode), env=SECRETS)
        assert cfg.sync.deletions == mode
    assert problems_of(with_value(base, "sync.deletions", "erase")) == [
        "sync.deletions: must be one of keep, unsubscribe, delete (got 'erase')"]


@pytest.mark.parametrize("path", ["magento.timeout", "emarsys.timeout"])
def test_timeouts_are_seconds_between_1_and_600(base: dict[str, Any], path: str) -> None:
    assert problems_of(with_value(base, path, 2.5)) == []
    assert problems_of(with_value(base, path, 0)) == [f"{path}: must be between 1 and 600 (got 0)"]
    assert problems_of(with_value(base, path, "slow")) == [
        f"{path}: must be a number of seconds between 1 and 600"]


# -- wrong types, unknown keys, bad values ---------------------------------------------------


def test_every_problem_is_reported_at_once_with_its_path(base: dict[str, Any]) -> None:
    data = with_value(base, "magento.page_sise", 100)
    data = with_value(data, "emarsys.batch_size", 5000)
    data = with_value(data, "contacts.customers.enabled", "yes")
    data = with_value(data, "sync.mode", "sometimes")
    data["magneto"] = {}
    assert problems_of(data) == [
        "magneto: unknown key (did you mean 'magento'?)",
        "magento.page_sise: unknown key (did you mean 'page_size'?)",
        "emarsys.batch_size: must be between 1 and 1000 (got 5000)",
        "contacts.customers.enabled: must be true or false, not a string",
        "sync.mode: must be one of realtime-failsafe, background-only (got 'sometimes')",
    ]


@pytest.mark.parametrize(("path", "value", "problem"), [
    ("magento", [1, 2], "magento: must be a mapping, not a list"),
    ("magento.base_url", "shop.example.com", "magento.base_url: must be an http(s) URL "
                                             "(got 'shop.example.com')"),
    ("magento.base_url", {"a": 1}, "magento.base_url: must be a string, not a mapping"),
    ("magento.website_ids", [], "magento.website_ids: must be a non-empty list of website "
                                "ids, e.g. [1]"),
    ("magento.website_ids", ["1"], "magento.website_ids: must be a non-empty list of website "
                                   "ids, e.g. [1]"),
    ("magento.subscribers", "all", "magento.subscribers: must be one of emarsys-module, "
                                   "database, none (got 'all')"),
    ("magento.auth.method", "basic", "magento.auth.method: must be one of oauth1, bearer "
                                     "(got 'basic')"),
    ("magento.auth.token", "", "magento.auth.token: is empty"),
    ("emarsys.key_fields.customer_id", "Magento Subscriber ID",
     "emarsys.key_fields: customer_id and subscriber_id must be two different Emarsys fields"),
    ("emarsys.key_fields.customer_id", True,
     "emarsys.key_fields.customer_id: must be an Emarsys field id or name"),
    ("contacts.subscribers.enabled", None, "contacts.subscribers.enabled: must be true or "
                                           "false, not empty"),
    ("sync.background_runtime", "25:00", "sync.background_runtime: must be HH:MM in 24-hour "
                                         "time (got '25:00')"),
    ("sync.lookback", "forever", "sync.lookback: 'forever' is not a duration "
                                 "(use e.g. 30s, 10m, 24h, 7d)"),
    ("sync.lookback", "0s", "sync.lookback: must be longer than zero"),
    ("sync.lookback", "99999999999d", "sync.lookback: '99999999999d' is too long a duration"),
    ("sync.overlap", -60, "sync.overlap: must not be negative"),
    ("sync.on_empty", "delete", "sync.on_empty: must be one of skip, clear (got 'delete')"),
    ("state.colour", "blue", "state.colour: unknown key (allowed: path)"),
])
def test_bad_values(base: dict[str, Any], path: str, value: Any, problem: str) -> None:
    assert problems_of(with_value(base, path, value)) == [problem]


def test_missing_sections_and_top_level_shape() -> None:
    assert problems_of({}) == ["magento: missing section", "emarsys: missing section"]
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        parse_config(["magento"], env={})


def test_sync_values_are_normalised(base: dict[str, Any]) -> None:
    data = with_value(base, "sync", {"background_runtime": "2:05", "lookback": "2d",
                                     "overlap": 0, "mode": "background-only"})
    cfg = parse_config(data, env=SECRETS)
    assert cfg.sync.background_runtime == "02:05"
    assert cfg.sync.lookback.days == 2 and cfg.sync.overlap.total_seconds() == 0
    assert cfg.sync.mode == "background-only"


# -- field mappings --------------------------------------------------------------------------


def test_field_mapping_forms(base: dict[str, Any]) -> None:
    data = with_value(base, "contacts.customers.fields", {
        "email": 3, "firstname": "1", "custom_attributes.tier": "Loyalty tier",
        "dob": {"field": 4, "convert": "date"},
        "extension_attributes.company": {"field": "Company", "type": "longtext"},
        "addresses.default_shipping.city": {"field": "12"}})
    fields = parse_config(data, env=SECRETS).contacts.customers.fields
    assert fields == (
        FieldMapping("email", 3), FieldMapping("firstname", 1),
        FieldMapping("custom_attributes.tier", "Loyalty tier"),
        FieldMapping("dob", 4, "date"),
        FieldMapping("extension_attributes.company", "Company", "text", "longtext"),
        FieldMapping("addresses.default_shipping.city", 12))


@pytest.mark.parametrize(("spec", "problem"), [
    ({"convert": "date"}, "contacts.customers.fields.dob.field: is required"),
    ({"field": 4, "convert": "upper"},
     "contacts.customers.fields.dob.convert: must be one of text, date, gender, country, "
     "choice (got 'upper')"),
    ({"field": 4, "type": "blob"},
     "contacts.customers.fields.dob.type: must be one of shorttext, longtext, largetext, "
     "numeric, date, url (got 'blob')"),
    ({"field": 4, "convrt": "date"},
     "contacts.customers.fields.dob.convrt: unknown key (did you mean 'convert'?)"),
    ({"field": -4}, "contacts.customers.fields.dob.field: a field id must not be negative"),
    ({"field": " "}, "contacts.customers.fields.dob.field: must not be empty"),
    ([4], "contacts.customers.fields.dob: must be an Emarsys field id or name, not a list"),
])
def test_field_mapping_errors(base: dict[str, Any], spec: Any, problem: str) -> None:
    assert problems_of(with_value(base, "contacts.customers.fields", {"dob": spec})) == [problem]


def test_unknown_attribute_path(base: dict[str, Any]) -> None:
    data = with_value(base, "contacts.customers.fields", {"addresses.billing.city": 11})
    assert problems_of(data) == [
        "contacts.customers.fields.addresses.billing.city: unknown attribute path (use an "
        "attribute such as email, custom_attributes.CODE, extension_attributes.CODE or "
        "addresses.default_billing.ATTR)"]
    assert problems_of(with_value(base, "contacts.customers.fields", ["email"])) == [
        "contacts.customers.fields: must be a mapping of Magento attribute -> Emarsys field, "
        "not a list"]


def test_duplicate_emarsys_field(base: dict[str, Any]) -> None:
    data = with_value(base, "contacts.customers.fields",
                      {"firstname": 1, "lastname": "1", "email": {"field": 1}})
    assert problems_of(data) == [
        "contacts.customers.fields.lastname: Emarsys field 1 is already mapped from firstname",
        "contacts.customers.fields.email: Emarsys field 1 is already mapped from lastname"]
    by_name = with_value(base, "contacts.customers.fields",
                         {"custom_attributes.a": "Tier", "custom_attributes.b": "tier"})
    assert problems_of(by_name) == [
        "contacts.customers.fields.custom_attributes.b: Emarsys field 'tier' is already mapped "
        "from custom_attributes.a"]


def test_two_invalid_fields_are_not_reported_as_duplicates(base: dict[str, Any]) -> None:
    data = with_value(base, "contacts.customers.fields", {"firstname": [1], "lastname": [2]})
    assert len(problems_of(data)) == 2
    assert not any("already mapped" in p for p in problems_of(data))


# -- state path ------------------------------------------------------------------------------


def test_magsync_state_overrides_state_path(tmp_path: Path, base: dict[str, Any]) -> None:
    cfg = parse_config(base, env={**SECRETS, "MAGSYNC_STATE": str(tmp_path / "other.db")})
    assert cfg.state.path == tmp_path / "other.db"


def test_state_path_expands_home_and_has_a_default(base: dict[str, Any]) -> None:
    cfg = parse_config(with_value(base, "state.path", "~/s/state.db"), env=SECRETS)
    assert cfg.state.path == Path.home() / "s" / "state.db"
    del base["state"]
    assert parse_config(base, env=SECRETS).state.path == \
        Path.home() / ".local/state/magsync/state.db"


# -- secrets ---------------------------------------------------------------------------------


def test_secrets_never_in_repr_or_str(tmp_path: Path, base: dict[str, Any]) -> None:
    cfg = load_config(write(tmp_path / "m.yaml", base), env=SECRETS)
    for text in (repr(cfg), str(cfg), repr(cfg.emarsys.auth), f"{cfg.magento.auth.token}"):
        for secret in SECRETS.values():
            assert secret not in text
    assert "Secret('***')" in repr(cfg.magento.auth)


def pair_config_with_env_secrets(pair: SandboxPair, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    """A config for the sandbox pair whose secrets come from ${VAR}s, and those secrets."""
    data = pair.config(tmp_path / "state.db")
    secrets = []
    for section in ("magento", "emarsys"):
        auth = data[section]["auth"]
        for key in [k for k in auth if k != "method"]:
            var = f"H6_{section}_{key}".upper()
            monkeypatch.setenv(var, auth[key])
            secrets.append(auth[key])
            auth[key] = f"${{{var}}}"
    return write(tmp_path / "pair.yaml", data, mode=0o644), secrets


@pytest.mark.parametrize("flags", [[], ["--log-json"], ["-vv"], ["--log-json", "-vv"],
                                   ["--debug"]])
def test_secrets_never_in_cli_output_or_logs(pair: SandboxPair, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch,
                                             flags: list[str]) -> None:
    path, secrets = pair_config_with_env_secrets(pair, tmp_path, monkeypatch)
    for command in (["check"], ["status"], ["status", "--json"]):
        code, out, err = cli(capsys, *flags, "--config", str(path), *command)
        assert code == 0, err
        # a log line that quotes secrets, as a careless caller might
        get_logger("test").warning("auth with %s", secrets[0], extra={"token": secrets[-1]})
        logged = capsys.readouterr().err
        assert "auth with ***" in logged
        for secret in secrets:
            assert secret not in out + err + logged
    logging.getLogger("magsync").handlers.clear()


def test_refused_secrets_are_not_shown(pair: SandboxPair, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = pair_config_with_env_secrets(pair, tmp_path, monkeypatch)
    wrong = {"H6_MAGENTO_CONSUMER_SECRET": "wrong-consumer-secret-1",
             "H6_MAGENTO_ACCESS_TOKEN_SECRET": "wrong-token-secret-2",
             "H6_EMARSYS_USERNAME": "wrong-user-3", "H6_EMARSYS_SECRET": "wrong-secret-4"}
    for var, value in wrong.items():
        monkeypatch.setenv(var, value)
    code, out, err = cli(capsys, "-vv", "--log-json", "--debug", "--config", str(path), "check")
    assert code == 3  # refused credentials: SPEC exit 3
    assert "FAIL Magento credentials" in out and "FAIL Emarsys credentials" in out
    for value in wrong.values():
        assert value not in out + err
    logging.getLogger("magsync").handlers.clear()


@pytest.mark.parametrize("flags", [[], ["--log-json"]])
def test_logged_tracebacks_and_nested_extras_are_redacted(
        tmp_path: Path, base: dict[str, Any], capsys: pytest.CaptureFixture[str],
        flags: list[str]) -> None:
    path = write(tmp_path / "m.yaml", base)
    assert cli(capsys, *flags, "--config", str(path), "status")[0] == 0
    secret = SECRETS["H6_EM_SECRET"]
    log = get_logger("test")
    try:
        raise RuntimeError(f"refused {secret}")
    except RuntimeError:
        log.exception("request failed")
    log.warning("payload sample", extra={"payload": {"auth": [secret]}})
    err = capsys.readouterr().err
    assert "RuntimeError: refused ***" in err.replace("\\n", "\n")
    assert secret not in err
    logging.getLogger("magsync").handlers.clear()


def test_an_earlier_configs_secrets_do_not_blank_later_output(
        tmp_path: Path, base: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    odd = write(tmp_path / "odd.yaml", with_value(base, "emarsys.auth.username",
                                                  "contacts known"))
    code, out, _ = cli(capsys, "--config", str(odd), "status")
    assert code == 0 and "***: 0" in out  # its own secret is redacted, however odd
    plain = write(tmp_path / "plain.yaml", base)
    code, out, _ = cli(capsys, "--config", str(plain), "status")
    assert code == 0 and "contacts known: 0" in out
    logging.getLogger("magsync").handlers.clear()


def test_log_json_is_one_object_per_event(tmp_path: Path, base: dict[str, Any],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "m.yaml", with_value(base, "magento.auth.token", "inline-tok-9"),
                 mode=0o644)
    code, _, err = cli(capsys, "--log-json", "--config", str(path), "status")
    assert code == 0
    events = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert [e["level"] for e in events] == ["warning"]
    assert "chmod 600" in events[0]["event"] and "inline-tok-9" not in err
    logging.getLogger("magsync").handlers.clear()


def test_inline_secrets_warning_depends_on_permissions(tmp_path: Path, base: dict[str, Any],
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    inline = with_value(base, "emarsys.auth.secret", 123456)  # YAML reads it as a number
    loose = write(tmp_path / "loose.yaml", inline, mode=0o644)
    cfg = load_config(loose, env=SECRETS)
    assert cfg.emarsys.auth.secret == Secret("123456")
    assert cfg.warnings == (f"{loose} holds secrets inline and is readable by other users; "
                            f"run: chmod 600 {loose} (or use ${{VAR}} references)",)
    code, _, err = cli(capsys, "--config", str(loose), "status")
    assert code == 0 and f"magsync: WARNING: {loose} holds secrets inline" in err

    tight = write(tmp_path / "tight.yaml", inline, mode=0o600)
    assert load_config(tight, env=SECRETS).warnings == ()
    env_only = write(tmp_path / "env.yaml", base, mode=0o644)
    assert load_config(env_only, env=SECRETS).warnings == ()
    logging.getLogger("magsync").handlers.clear()


def test_check_shows_the_inline_secrets_warning(pair: SandboxPair, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = pair.write_config(tmp_path / "inline.yaml", tmp_path / "state.db")  # secrets inline
    code, out, _ = cli(capsys, "--config", str(path), "check")
    assert code == 0 and "holds secrets inline" not in out  # written with mode 600
    path.chmod(0o640)
    code, out, err = cli(capsys, "--config", str(path), "check")
    assert code == 0, out
    assert f"WARN configuration — {path} holds secrets inline and is readable by " \
           f"other users; run: chmod 600 {path}" in out
    assert "magsync: WARNING:" in err
    logging.getLogger("magsync").handlers.clear()


# -- config errors through the CLI: exit 2, one clear message, no traceback ------------------


def assert_config_error(capsys: pytest.CaptureFixture[str], path: Path, *lines: str,
                        header: str = "") -> None:
    """``crontab`` (a command that needs the whole config; ``status`` needs only
    state.path) and ``check`` both exit 2 and name each problem; no traceback.

    ``header`` is the first line of the error, which only ``crontab`` prints.
    """
    code, out, err = cli(capsys, "--config", str(path), "crontab")
    assert code == EXIT_CONFIG
    assert out == ""
    assert err.startswith(f"magsync: error: {header}")
    for line in lines:
        assert line in err
    assert "Traceback" not in err
    code, out, err = cli(capsys, "--config", str(path), "check")
    assert code == EXIT_CONFIG
    assert err.endswith("failed\n") and "Traceback" not in out + err
    assert out.startswith("FAIL configuration — ")
    for line in lines:
        if line.startswith("  - "):  # each problem is its own failed check
            assert f"FAIL configuration — {line[4:]}" in out
        else:
            assert line in out


def test_cli_malformed_yaml_names_line_and_column(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "bad.yaml", "magento:\n  base_url: http://x\n   page_size: 3\n")
    assert_config_error(capsys, path, f"{path}: invalid YAML at line 3, column 13: mapping "
                                      "values are not allowed here",
                        "hint: fix the YAML syntax")
    tabs = write(tmp_path / "tabs.yaml", "magento:\n\tbase_url: x\n")
    code, _, err = cli(capsys, "--config", str(tabs), "status")
    assert code == EXIT_CONFIG and "line 2, column 1" in err


def test_cli_wrong_types_and_ranges(tmp_path: Path, base: dict[str, Any],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = with_value(base, "magento.page_size", 0)
    data = with_value(data, "emarsys.concurrency", "four")
    path = write(tmp_path / "m.yaml", data)
    assert_config_error(capsys, path,
                        "  - magento.page_size: must be between 1 and 300 (got 0)",
                        "  - emarsys.concurrency: must be a whole number between 1 and 32",
                        header=f"{path}: the configuration has 2 problems:\n")


def test_cli_unknown_key(tmp_path: Path, base: dict[str, Any],
                         capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "m.yaml", with_value(base, "emarsys.batchsize", 10))
    assert_config_error(capsys, path, "emarsys.batchsize: unknown key (did you mean "
                                      "'batch_size'?)")


def test_cli_missing_env_var(tmp_path: Path, base: dict[str, Any],
                             capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("H6_EM_SECRET")
    path = write(tmp_path / "m.yaml", base)
    assert_config_error(capsys, path, "emarsys.auth.secret: environment variable H6_EM_SECRET "
                                      "is not set")


def test_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.yaml"
    assert_config_error(capsys, path, f"config file {path} not found (from --config)",
                        "hint: pass --config PATH or set $MAGSYNC_CONFIG")


def test_cli_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "a-directory.yaml"
    folder.mkdir()
    assert_config_error(capsys, folder, f"cannot read config file {folder}: Is a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_cli_file_without_read_permission(tmp_path: Path, base: dict[str, Any],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "m.yaml", base, mode=0)
    assert_config_error(capsys, path, f"cannot read config file {path}: Permission denied",
                        "hint: check the file's permissions")


def test_cli_file_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("magento:\n  base_url: http://caf\xe9\n".encode("latin-1"))
    assert_config_error(capsys, path, f"{path}: not UTF-8 text", "save the config file as UTF-8")


def test_cli_top_level_not_a_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "m.yaml", "- magento\n- emarsys\n")
    assert_config_error(capsys, path, f"{path}: the top level must be a mapping of sections")


# -- discovery -------------------------------------------------------------------------------


def test_default_config_is_magsync_yaml_in_cwd(tmp_path: Path, base: dict[str, Any],
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "check")
    assert code == EXIT_CONFIG
    assert "FAIL configuration — config file magsync.yaml not found (from the default " \
        "./magsync.yaml)" in out
    assert err == "magsync: 1 check failed\n"
    write(tmp_path / "magsync.yaml", with_value(base, "state.path", "./here.db"))
    code, out, _ = cli(capsys, "status", "--json")
    assert code == 0
    assert json.loads(out)["state_path"] == str(tmp_path.resolve() / "here.db")


def test_relative_state_path_is_beside_the_config_not_the_cwd(
        tmp_path: Path, base: dict[str, Any], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    config = write(conf_dir / "magsync.yaml", with_value(base, "state.path", "state/x.db"))
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli(capsys, "--config", str(config), "status", "--json")
    assert code == 0
    assert json.loads(out)["state_path"] == str(conf_dir.resolve() / "state" / "x.db")


def test_magsync_config_env_is_used(tmp_path: Path, base: dict[str, Any],
                                    capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "magsync.yaml", "not: [valid")  # must be ignored
    other = write(tmp_path / "elsewhere.yaml", base)
    monkeypatch.setenv("MAGSYNC_CONFIG", str(other))
    code, out, _ = cli(capsys, "status", "--json")
    assert code == 0 and json.loads(out)["state_path"] == str(tmp_path / "state.db")
    # --config wins over $MAGSYNC_CONFIG
    code, _, err = cli(capsys, "--config", str(tmp_path / "magsync.yaml"), "status")
    assert code == EXIT_CONFIG and "invalid YAML" in err
    monkeypatch.setenv("MAGSYNC_CONFIG", str(tmp_path / "gone.yaml"))
    code, _, err = cli(capsys, "status")
    assert code == EXIT_CONFIG
    assert f"config file {tmp_path / 'gone.yaml'} not found (from $MAGSYNC_CONFIG)" in err


def test_magsync_state_env_through_cli(tmp_path: Path, base: dict[str, Any],
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "m.yaml", base)
    monkeypatch.setenv("MAGSYNC_STATE", str(tmp_path / "env-state.db"))
    code, out, _ = cli(capsys, "--config", str(path), "status", "--json")
    assert code == 0
    assert json.loads(out)["state_path"] == str(tmp_path / "env-state.db")


def test_config_file_mode_is_what_we_wrote(tmp_path: Path) -> None:
    # guards the permission tests above against a umask that changes modes
    path = write(tmp_path / "x.yaml", {}, mode=0o644)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644

