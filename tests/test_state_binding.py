"""The state file is bound to its accounts (SPEC 5): the first writing run records the
Magento shop, the Emarsys account (API user as a fingerprint only) and the key-field ids;
a later run whose config names other accounts stops with exit 2 before any request;
``magsync rebind`` accepts a legitimate change and keeps every other row."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from magsync.errors import EXIT_CONFIG, EXIT_REMOTE
from magsync.sandbox.pair import SandboxPair
from magsync.state import StateStore
from magsync.state.binding import Binding, accounts_of, fingerprint
from magsync.state.integrity import APPLICATION_ID
from tests.helpers.cli import status_of
from tests.helpers.sandbox import clock_behind

WRITES = ("PUT", "POST", "DELETE")


@pytest.fixture
def other_pair() -> Iterator[SandboxPair]:
    """A second shop and Emarsys account (other addresses, same credentials)."""
    with SandboxPair(40, 20, seed=5) as p:
        yield p


def requests_to(pair: SandboxPair) -> int:
    return len(pair.emarsys.requests()) + len(pair.magento.requests())


def emarsys_writes(pair: SandboxPair, after: int = 0) -> list[str]:
    return [f"{r.method} {r.path}" for r in pair.emarsys.requests()
            if r.method in WRITES and r.seq > after]


def table_counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("contacts", "subscribers", "watermarks", "runs", "queue")}
    finally:
        conn.close()


def oauth2_config(pair: SandboxPair, tmp_path: Path) -> Path:
    """The pair's config moved from WSSE on /api/v2 to OAuth 2.0 on /api/v3."""
    cfg = pair.config(tmp_path / "state.db")
    cfg["emarsys"]["api_url"] = pair.emarsys.api_url_v3
    cfg["emarsys"]["auth"] = {"method": "oauth2", "client_id": pair.emarsys.client_id,
                              "client_secret": pair.emarsys.client_secret,
                              "token_url": pair.emarsys.token_url}
    path = tmp_path / "oauth2.yaml"
    path.write_text(json.dumps(cfg))
    path.chmod(0o600)
    return path


# -- recording -------------------------------------------------------------------------------


def test_first_writing_run_binds_the_state_file(magsync: Any, pair: SandboxPair,
                                                config_file: Path) -> None:
    assert magsync("export-initial").code == 0
    binding = status_of(magsync)["binding"]
    assert binding["magento"] == {"base_url": pair.magento.url, "store_code": "all",
                                  "website_ids": None}
    assert binding["emarsys"] == {"api_url": pair.emarsys.api_url, "auth_method": "wsse",
                                  "api_user_fingerprint": fingerprint(pair.emarsys.username)}
    customer = pair.emarsys.account.field_by_name("Magento Customer ID")
    subscriber = pair.emarsys.account.field_by_name("Magento Subscriber ID")
    assert customer is not None and subscriber is not None
    assert binding["key_fields"] == {
        "customer_id": {"id": customer.id, "name": "Magento Customer ID"},
        "subscriber_id": {"id": subscriber.id, "name": "Magento Subscriber ID"}}
    text = magsync("status").out.splitlines()
    assert text[1] == f"bound to: Magento {pair.magento.url} (store all, websites all)"
    assert text[2] == (f"          Emarsys {pair.emarsys.api_url} (wsse API user "
                       f"#{fingerprint(pair.emarsys.username)})")
    assert text[3].startswith("          key fields customer id 'Magento Customer ID' (id ")
    check = magsync("check")
    assert check.code == 0, check
    assert "OK   state file accounts — bound to this config's accounts: Magento " in check.out
    # the API user is a secret: only its fingerprint is stored
    assert pair.emarsys.username.encode() not in (config_file.parent / "state.db").read_bytes()


def test_dry_run_binds_nothing(magsync: Any) -> None:
    assert magsync("export-initial", "--dry-run").code == 0
    assert status_of(magsync)["binding"] is None
    assert "bound to: no accounts yet" in magsync("status").out


def test_a_file_made_before_binding_is_bound_by_its_next_writing_run(
        magsync: Any, pair: SandboxPair, tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "state.db") as store:  # as an older magsync left it
        store.set_meta("mapping_hash", "older")
        store._conn.execute("PRAGMA application_id = 0")
    assert status_of(magsync)["binding"] is None
    assert magsync("export-initial").code == 0
    assert status_of(magsync)["binding"]["magento"]["base_url"] == pair.magento.url
    conn = sqlite3.connect(tmp_path / "state.db")
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()


# -- refusing --------------------------------------------------------------------------------


def test_another_account_stops_before_any_request(magsync: Any, pair: SandboxPair,
                                                  other_pair: SandboxPair,
                                                  tmp_path: Path) -> None:
    assert magsync("export-initial").code == 0
    state = tmp_path / "state.db"
    before = table_counts(state)
    other = other_pair.write_config(tmp_path / "other.yaml", state)
    for command in (["export-initial"], ["export-initial", "--restart"], ["sync-realtime"],
                    ["sync-background"], ["pull-optin"], ["queue", "retry"]):
        result = magsync(*command, config=other)
        assert result.code == EXIT_CONFIG, (command, result)
        assert result.err == (
            f"magsync: error: state file {state} belongs to other accounts: Magento base_url "
            f"is {pair.magento.url} there, {other_pair.magento.url} in the config; Emarsys "
            f"api_url is {pair.emarsys.api_url} there, {other_pair.emarsys.api_url} in the "
            "config; use another state.path (a new state file: then run `magsync "
            "export-initial`), or `magsync rebind` if this is the same account under a new "
            "address or API user\n"), command
    assert requests_to(other_pair) == 0  # not one request to the other accounts
    assert table_counts(state) == before  # not even a run recorded
    check = magsync("check", config=other)
    assert check.code == EXIT_CONFIG
    assert f"FAIL state file accounts — state file {state} belongs to other accounts" \
        in check.out


def test_another_api_user_stops_and_is_shown_as_a_fingerprint(magsync: Any, pair: SandboxPair,
                                                              tmp_path: Path) -> None:
    assert magsync("export-initial").code == 0
    seen = requests_to(pair)
    other = pair.write_config(tmp_path / "other.yaml", tmp_path / "state.db",
                              emarsys={"auth": {"username": "another-api-user"}})
    result = magsync("sync-realtime", config=other)
    assert result.code == EXIT_CONFIG
    assert (f"Emarsys API user is wsse #{fingerprint(pair.emarsys.username)} there, wsse "
            f"#{fingerprint('another-api-user')} in the config") in result.err
    assert "another-api-user" not in result.err
    assert requests_to(pair) == seen


@pytest.mark.parametrize(("section", "change"), [
    ("magento", {"store_code": "default"}),
    ("magento", {"website_ids": [2]}),
    ("emarsys", {"key_fields": {"customer_id": 999}}),
    ("emarsys", {"key_fields": {"subscriber_id": "Another Subscriber ID"}}),
])
def test_other_store_websites_or_key_fields_stop_before_any_request(
        magsync: Any, pair: SandboxPair, tmp_path: Path, section: str,
        change: dict[str, Any]) -> None:
    assert magsync("export-initial").code == 0
    seen = requests_to(pair)
    other = pair.write_config(tmp_path / "other.yaml", tmp_path / "state.db",
                              **{section: change})
    result = magsync("sync-realtime", config=other)
    assert result.code == EXIT_CONFIG
    assert result.err.startswith(f"magsync: error: state file {tmp_path / 'state.db'} "
                                 "belongs to other accounts: ")
    assert requests_to(pair) == seen


def test_the_same_accounts_spelled_otherwise_are_no_change(magsync: Any, pair: SandboxPair,
                                                           tmp_path: Path) -> None:
    assert magsync("export-initial").code == 0
    key = pair.emarsys.account.field_by_name("Magento Customer ID")
    assert key is not None
    same = pair.write_config(
        tmp_path / "same.yaml", tmp_path / "state.db",
        magento={"base_url": pair.magento.url + "/"},
        emarsys={"key_fields": {"customer_id": key.id,
                                "subscriber_id": "magento subscriber id"}})
    result = magsync("sync-realtime", config=same)
    assert result.code == 0, result


def test_a_key_field_replaced_in_emarsys_stops_before_any_write(magsync: Any,
                                                                pair: SandboxPair) -> None:
    assert magsync("export-initial").code == 0
    account = pair.emarsys.account
    old = account.field_by_name("Magento Customer ID")
    assert old is not None
    account.delete_field(old.id)  # deleted and created again in the Emarsys UI: a new id
    new = account.create_field("Magento Customer ID", "numeric")
    seq = pair.emarsys.requests()[-1].seq
    # sync-background reads the fields at its start (sync-realtime uses the state file's
    # copy for up to an hour: see the next test)
    result = magsync("sync-background")
    assert result.code == EXIT_CONFIG
    assert (f"Emarsys key field customer_id is 'Magento Customer ID' (id {old.id}) there, "
            f"'Magento Customer ID' (id {new.id}) in the config") in result.err
    assert "the key field was replaced in Emarsys" in result.err
    assert emarsys_writes(pair, seq) == []


def test_a_key_field_replaced_within_the_hour_stops_sync_realtime_at_its_first_upsert(
        magsync: Any, pair: SandboxPair) -> None:
    """With the fields from the state file's copy, the upsert keyed on the old id is the
    first to hear of it: Emarsys refuses it for every contact (2004), nothing is written,
    the fields are read again and the run stops as the binding check says."""
    assert magsync("export-initial").code == 0
    account, shop = pair.emarsys.account, pair.magento.shop
    clock_behind(shop)
    old = account.field_by_name("Magento Customer ID")
    assert old is not None
    account.delete_field(old.id)
    new = account.create_field("Magento Customer ID", "numeric")
    cid = sorted(shop.customers)[0]
    shop.edit_customer(cid, lastname="Changed")
    before = {cid: dict(values) for cid, values in account.contacts.items()}

    result = magsync("sync-realtime")

    assert result.code == EXIT_CONFIG, result
    assert (f"Emarsys key field customer_id is 'Magento Customer ID' (id {old.id}) there, "
            f"'Magento Customer ID' (id {new.id}) in the config") in result.err
    assert {cid: dict(v) for cid, v in account.contacts.items()} == before  # not written
    assert magsync("sync-realtime").code == EXIT_CONFIG  # and every later run stops


# -- rebind ----------------------------------------------------------------------------------


def test_rebind_to_a_new_address_keeps_every_row(magsync: Any, pair: SandboxPair,
                                                 other_pair: SandboxPair,
                                                 tmp_path: Path) -> None:
    assert magsync("export-initial").code == 0
    state = tmp_path / "state.db"
    before = table_counts(state)
    watermarks = status_of(magsync)["watermarks"]
    moved = other_pair.write_config(tmp_path / "moved.yaml", state)
    result = magsync("rebind", "--yes", config=moved)
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert "OK   Emarsys credentials — wsse accepted (28 fields readable)" in lines
    assert f"  bound to now: Magento {pair.magento.url} (store all, websites all)" in lines
    assert f"  new binding : Magento {other_pair.magento.url} (store all, websites all)" \
        in lines
    assert (f"  change: Magento base_url: {pair.magento.url} -> {other_pair.magento.url}"
            in lines)
    assert lines[-1] == f"{state} is now bound to this config's accounts"
    assert table_counts(state) == before
    status = status_of(magsync, config=moved)
    assert status["watermarks"] == watermarks
    assert status["binding"]["magento"]["base_url"] == other_pair.magento.url
    assert status["binding"]["emarsys"]["api_url"] == other_pair.emarsys.api_url
    assert magsync("sync-realtime", config=moved).code == 0
    # and the old address is now the other one
    assert magsync("sync-realtime").code == EXIT_CONFIG


def test_rebind_from_wsse_to_oauth2_and_api_v3(magsync: Any, pair: SandboxPair,
                                               tmp_path: Path) -> None:
    assert magsync("export-initial").code == 0
    moved = oauth2_config(pair, tmp_path)
    refused = magsync("sync-realtime", config=moved)
    assert refused.code == EXIT_CONFIG
    assert (f"Emarsys API user is wsse #{fingerprint(pair.emarsys.username)} there, oauth2 "
            f"#{fingerprint(pair.emarsys.client_id)} in the config") in refused.err
    result = magsync("rebind", "--yes", config=moved)
    assert result.code == 0, result
    assert (f"  change: Emarsys api_url: {pair.emarsys.api_url} -> "
            f"{pair.emarsys.api_url_v3}") in result.out.splitlines()
    seq = pair.emarsys.requests()[-1].seq
    assert magsync("sync-realtime", config=moved).code == 0
    assert all(r.path.startswith("/api/v3/") or r.path == "/oauth2/token"
               for r in pair.emarsys.requests() if r.seq > seq)


def test_rebind_asks_and_refuses_without_a_terminal(magsync: Any, pair: SandboxPair,
                                                    other_pair: SandboxPair,
                                                    tmp_path: Path) -> None:
    assert magsync("export-initial").code == 0
    moved = other_pair.write_config(tmp_path / "moved.yaml", tmp_path / "state.db")
    result = magsync("rebind", config=moved)
    assert result.code == EXIT_CONFIG
    assert result.err == (f"magsync: rebind would bind {tmp_path / 'state.db'} to this "
                          "config's accounts: pass --yes to confirm (no terminal to ask on)\n")
    assert status_of(magsync)["binding"]["magento"]["base_url"] == pair.magento.url


def test_rebind_refuses_other_key_fields(magsync: Any, pair: SandboxPair,
                                         tmp_path: Path) -> None:
    assert magsync("export-initial").code == 0
    pair.emarsys.account.create_field("Customer Number", "numeric")
    pair.emarsys.account.set_indexed("Customer Number")
    other = pair.write_config(tmp_path / "other.yaml", tmp_path / "state.db",
                              emarsys={"key_fields": {"customer_id": "Customer Number"}})
    result = magsync("rebind", "--yes", config=other)
    assert result.code == EXIT_CONFIG
    assert result.err.startswith("magsync: rebind cannot change the key fields (Emarsys key "
                                 "field customer_id is 'Magento Customer ID' (id ")
    assert "use another state.path" in result.err
    key = status_of(magsync)["binding"]["key_fields"]["customer_id"]
    assert key["name"] == "Magento Customer ID"


def test_rebind_with_a_config_that_fails_its_checks_changes_nothing(
        magsync: Any, pair: SandboxPair, tmp_path: Path) -> None:
    assert magsync("export-initial").code == 0
    wrong = pair.write_config(tmp_path / "wrong.yaml", tmp_path / "state.db",
                              emarsys={"auth": {"username": "someone", "secret": "wrong"}})
    result = magsync("-q", "rebind", "--yes", config=wrong)
    assert result.code == EXIT_REMOTE
    assert result.out.startswith("FAIL Emarsys credentials")
    assert result.err.startswith("magsync: rebind: nothing changed: 1 check(s) of this "
                                 "config failed")
    assert status_of(magsync)["binding"]["emarsys"]["api_user_fingerprint"] == \
        fingerprint(pair.emarsys.username)


def test_rebind_with_nothing_to_change(magsync: Any) -> None:
    assert magsync("export-initial").code == 0
    result = magsync("rebind")
    assert result.code == 0, result
    assert result.out.splitlines()[-1] == ("the state file is already bound to these "
                                           "accounts: nothing to change")


def test_rebind_without_a_state_file(magsync: Any, tmp_path: Path) -> None:
    result = magsync("rebind", "--yes")
    assert result.code == EXIT_CONFIG
    assert result.err.startswith(f"magsync: error: state file {tmp_path / 'state.db'} does "
                                 "not exist: there is nothing to rebind")
    assert not (tmp_path / "state.db").exists()


# -- the binding itself ----------------------------------------------------------------------


def test_binding_round_trips_and_describes_without_the_user(pair: SandboxPair,
                                                            tmp_path: Path) -> None:
    from magsync.config import load_config

    cfg = load_config(pair.write_config(tmp_path / "c.yaml", tmp_path / "s.db",
                                        magento={"website_ids": [3, 1]}))
    binding = accounts_of(cfg)
    assert binding.website_ids == (1, 3)
    assert Binding.from_dict(binding.as_dict()) == binding
    text = "\n".join(binding.describe())
    assert "websites 1, 3" in text and pair.emarsys.username not in text
    assert len(binding.api_user) == 12 and binding.api_user == fingerprint("sandbox")
