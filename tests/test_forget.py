"""``magsync forget`` and erasure: refused while Magento holds the person, then their
Emarsys contact deleted and every state row removed so that the state file's bytes (and
its WAL) hold nothing of them; an unconfirmed deletion keeps the rows and is queued."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from magsync.sandbox.pair import SandboxPair
from tests.helpers.cli import status_of
from tests.helpers.deletions import (
    a_customer_with_a_subscription,
    a_guest,
    deleted_in_emarsys,
    emarsys_contact,
    state_rows,
)
from tests.helpers.export_checks import CUSTOMER_KEY, SUBSCRIBER_KEY

NO_ROWS = {"contacts": 0, "queue": 0, "reports": 0, "deletions": 0, "subscribers": 0}


@pytest.fixture
def exported(magsync: Any) -> Any:
    assert magsync("export-initial").code == 0
    return magsync


@contextmanager
def wal_kept(state: Path) -> Iterator[None]:
    """Another connection stays open, so the WAL outlives the run and can be read."""
    conn = sqlite3.connect(state)
    conn.execute("SELECT COUNT(*) FROM meta").fetchall()
    try:
        yield
    finally:
        conn.close()


def file_bytes(state: Path) -> bytes:
    """The state file and its WAL, as they are on disk."""
    wal = Path(f"{state}-wal")
    return state.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def assert_nothing_of(state: Path, *emails: str) -> None:
    data = file_bytes(state).lower()
    for email in emails:
        assert email.lower().encode() not in data, email


# -- erasure leaves no bytes behind -----------------------------------------------------------

def test_after_delete_the_state_file_and_its_wal_hold_none_of_the_persons_emails(
        pair: SandboxPair, magsync: Any, tmp_path: Path) -> None:
    shop = pair.magento.shop
    state = tmp_path / "state.db"
    cfg = pair.write_config(tmp_path / "delete.yaml", state, sync={"deletions": "delete"})
    cid = a_customer_with_a_subscription(pair)
    old_email = shop.customers[cid]["email"]
    assert magsync("export-initial", config=cfg).code == 0
    with wal_kept(state):
        new_email = f"renamed.{cid}@example.org"
        shop.change_email(cid, new_email)  # the row is rewritten: the old email is freed
        shop.edit_customer(cid, lastname="Rewritten")
        assert magsync("sync-background", "--since", "1h", config=cfg).code == 0
        assert new_email.encode() in file_bytes(state)
        shop.delete_customer(cid)

        result = magsync("reconcile", config=cfg)

        assert result.code == 0, result
        assert Path(f"{state}-wal").exists()
        assert deleted_in_emarsys(pair) == [(CUSTOMER_KEY, str(cid))]
        assert_nothing_of(state, old_email, new_email)
    assert state_rows(state, f"c:{cid}") == NO_ROWS


# -- forget --------------------------------------------------------------------------------------

def test_forget_refuses_while_magento_holds_the_customer_then_erases_them(
        pair: SandboxPair, exported: Any, tmp_path: Path) -> None:
    shop = pair.magento.shop
    cid = a_customer_with_a_subscription(pair)
    email = shop.customers[cid]["email"]
    state = tmp_path / "state.db"

    refused = exported("forget", "--customer-id", str(cid), "--yes")

    assert refused.code == 2, refused
    assert f"Magento still holds customer {cid}" in refused.err
    assert emarsys_contact(pair, f"c:{cid}") is not None
    assert state_rows(state, f"c:{cid}")["contacts"] == 1
    shop.delete_customer(cid)

    with wal_kept(state):
        result = exported("forget", "--customer-id", str(cid), "--yes")

        assert result.code == 0, result
        assert f"c:{cid}: deleted in Emarsys" in result.out
        assert_nothing_of(state, email)
    # whatever sync.deletions says (the default is keep)
    assert deleted_in_emarsys(pair) == [(CUSTOMER_KEY, str(cid))]
    assert state_rows(state, f"c:{cid}") == NO_ROWS
    d = status_of(exported)["deletions"]
    assert (d["erased"], d["marked"]) == (1, 0)


def test_forget_a_guest_by_subscriber_id(pair: SandboxPair, exported: Any,
                                         tmp_path: Path) -> None:
    sid = a_guest(pair)
    assert exported("forget", "--subscriber-id", str(sid), "--yes").code == 2
    pair.magento.shop.delete_subscriber(sid)

    result = exported("forget", "--subscriber-id", str(sid), "--yes")

    assert result.code == 0, result
    assert deleted_in_emarsys(pair) == [(SUBSCRIBER_KEY, str(sid))]
    assert state_rows(tmp_path / "state.db", f"s:{sid}") == NO_ROWS


def test_forget_by_email_takes_any_case_and_refuses_while_a_customer_has_it(
        pair: SandboxPair, exported: Any, tmp_path: Path) -> None:
    shop = pair.magento.shop
    cid = max(shop.customers)
    email = shop.customers[cid]["email"]

    refused = exported("forget", "--email", email.upper(), "--yes")

    assert refused.code == 2, refused
    assert email not in refused.err.lower() or "still holds" in refused.err
    shop.delete_customer(cid)

    result = exported("forget", "--email", email.upper(), "--yes")

    assert result.code == 0, result
    assert deleted_in_emarsys(pair) == [(CUSTOMER_KEY, str(cid))]
    assert state_rows(tmp_path / "state.db", f"c:{cid}") == NO_ROWS
    # the run history keeps no trace of whom it forgot
    assert all(email not in (r["message"] or "") for r in status_of(exported)["runs"].values())


@pytest.mark.parametrize("retry", [("reconcile",), ("queue", "retry")])
def test_forget_keeps_the_rows_and_queues_the_deletion_when_emarsys_does_not_confirm(
        pair: SandboxPair, exported: Any, tmp_path: Path, retry: tuple[str, ...]) -> None:
    cid = max(pair.magento.shop.customers)
    twin = pair.emarsys.seed_contact({int(CUSTOMER_KEY): str(cid), 3: "twin@example.com"})
    pair.magento.shop.delete_customer(cid)
    state = tmp_path / "state.db"

    result = exported("forget", "--customer-id", str(cid), "--yes")

    assert result.code == 1, result
    assert "Emarsys did not confirm the deletion" in result.out
    assert deleted_in_emarsys(pair) == []
    assert state_rows(state, f"c:{cid}")["contacts"] == 1
    assert "deletion (delete) not confirmed" in exported("queue", "list").out
    pair.emarsys.ui_edit(twin, {int(CUSTOMER_KEY): "999999"})

    # the next reconcile (or queue retry) retries it, whatever sync.deletions says
    retried = exported(*retry)

    assert retried.code == 0, retried
    assert deleted_in_emarsys(pair) == [(CUSTOMER_KEY, str(cid))]
    assert state_rows(state, f"c:{cid}") == NO_ROWS


def test_forget_without_yes_and_without_a_terminal_refuses(pair: SandboxPair,
                                                           exported: Any) -> None:
    cid = max(pair.magento.shop.customers)
    pair.magento.shop.delete_customer(cid)
    seen = len(pair.magento.requests()), len(pair.emarsys.requests())

    result = exported("forget", "--customer-id", str(cid))

    assert result.code == 2
    assert "pass --yes to confirm (no terminal to ask on)" in result.err
    assert (len(pair.magento.requests()), len(pair.emarsys.requests())) == seen
    assert emarsys_contact(pair, f"c:{cid}") is not None


@pytest.mark.parametrize("args", [(), ("--customer-id", "1", "--email", "a@example.com"),
                                  ("--email", "nobody")])
def test_forget_needs_exactly_one_person(exported: Any, args: tuple[str, ...]) -> None:
    result = exported("forget", *args, "--yes")

    assert result.code == 2
    assert "exactly one of" in result.err or "needs an email address" in result.err


class _Terminal:
    """A stdin that is a terminal (the answer comes from the patched ``click.confirm``)."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer", [False, True])
def test_forget_on_a_terminal_asks_first(pair: SandboxPair, exported: Any,
                                         monkeypatch: pytest.MonkeyPatch, answer: bool) -> None:
    cid = max(pair.magento.shop.customers)
    pair.magento.shop.delete_customer(cid)
    asked: list[str] = []

    def confirm(text: str, default: bool = False) -> bool:
        asked.append(text)
        return answer

    monkeypatch.setattr("sys.stdin", _Terminal())
    monkeypatch.setattr("click.confirm", confirm)

    result = exported("forget", "--customer-id", str(cid))

    assert len(asked) == 1 and f"Delete customer {cid} in Emarsys (c:{cid})" in asked[0]
    if answer:
        assert result.code == 0, result
        assert deleted_in_emarsys(pair) == [(CUSTOMER_KEY, str(cid))]
    else:
        assert result.code == 2 and "nothing was deleted" in result.err
        assert deleted_in_emarsys(pair) == [] and emarsys_contact(pair, f"c:{cid}")
