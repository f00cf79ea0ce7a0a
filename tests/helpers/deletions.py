"""People deleted in the sandbox shop, and what the state file and Emarsys hold of them."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from magsync.sandbox.pair import SandboxPair
from tests.helpers.export_checks import contact_ids

CUSTOMER_GET = r"/V1/customers/\d+$"


def a_customer_with_a_subscription(pair: SandboxPair) -> int:
    """A customer who has a subscriber row (their deletion takes the row with it)."""
    return min(s.customer_id for s in pair.magento.shop.subscribers.values() if s.customer_id)


def a_guest(pair: SandboxPair) -> int:
    """The subscriber id of a guest subscriber (no customer account)."""
    return min(s.subscriber_id for s in pair.magento.shop.subscribers.values()
               if not s.customer_id)


def emarsys_contact(pair: SandboxPair, key: str) -> dict[str, Any] | None:
    """The fields of the one Emarsys contact carrying a ``c:``/``s:`` key (None: none)."""
    found = contact_ids(pair, key)
    assert len(found) <= 1, (key, found)
    return pair.emarsys.account.contact(found[0]) if found else None


def list_member(pair: SandboxPair, list_name: str, key: str) -> bool:
    found = contact_ids(pair, key)
    return bool(found) and found[0] in pair.emarsys.account.list_members(list_name)


def deleted_in_emarsys(pair: SandboxPair) -> list[tuple[str, str]]:
    """(key field id, key value) of every contact ``contact/delete`` removed."""
    return [(d.key_id, d.key_value) for d in pair.emarsys.account.deleted]


def state_rows(state: Path, key: str) -> dict[str, int]:
    """How many rows about ``key`` each state table holds."""
    conn = sqlite3.connect(state)
    try:
        kind, _, number = key.partition(":")
        out = {table: conn.execute(f"SELECT COUNT(*) FROM {table} WHERE key = ?",
                                   (key,)).fetchone()[0]
               for table in ("contacts", "queue", "reports", "deletions")}
        column = "customer_id" if kind == "c" else "subscriber_id"
        out["subscribers"] = conn.execute(
            f"SELECT COUNT(*) FROM subscribers WHERE {column} = ?", (int(number),)).fetchone()[0]
        return out
    finally:
        conn.close()


def customer_gets(pair: SandboxPair, since: int = 0) -> int:
    """``GET /V1/customers/{id}`` requests Magento answered after request ``since``."""
    return sum(1 for r in pair.magento.requests("GET", CUSTOMER_GET) if r.seq > since)


def magento_seq(pair: SandboxPair) -> int:
    log = pair.magento.requests()
    return log[-1].seq if log else 0
