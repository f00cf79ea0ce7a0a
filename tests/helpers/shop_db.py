"""The sandbox shop's subscribers in the test MariaDB (``subscribers: database``), and a
magsync config that reads them there while the Magento sandbox serves the customers.

Changes made "in the shop" go to the database as Magento would make them (status and
``change_status_at = UTC_TIMESTAMP()``); ``also_in`` applies them to the sandbox shop too,
where they matter to its REST API (a customer's ``is_subscribed``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magsync.sandbox.magento.records import STORE_OF_WEBSITE
from magsync.sandbox.magento.shop import Shop
from magsync.sandbox.pair import SandboxPair
from tests.helpers.mariadb import DATABASE, READER, MariaDB, clear_subscribers, load_subscribers

PASSWORD_ENV = "MAGSYNC_TEST_DB_PASSWORD"
TABLE = "newsletter_subscriber"


def load_shop(server: MariaDB, shop: Shop) -> int:
    """Replace the database's subscribers with the sandbox shop's; the count loaded."""
    clear_subscribers(server)
    rows = sorted(shop.subscribers.values(), key=lambda s: s.subscriber_id)
    return load_subscribers(server, rows)


def database_url(server: MariaDB, user: str = READER, *, via_socket: bool = False) -> str:
    """A ``magento.database.url`` for ``user`` whose password comes from ``$PASSWORD_ENV``."""
    url = server.url(user, password="PASSWORD", via_socket=via_socket)
    return url.replace(":PASSWORD@", f":${{{PASSWORD_ENV}}}@", 1)


def write_database_config(pair: SandboxPair, server: MariaDB, path: Path, *,
                          user: str = READER, write_optin: bool = False,
                          via_socket: bool = False, **sections: dict[str, Any]) -> Path:
    """The pair's config with ``subscribers: database`` reading ``server`` as ``user``
    (set ``$PASSWORD_ENV`` to ``server.passwords[user]``); state beside ``path``."""
    database = {"url": database_url(server, user, via_socket=via_socket),
                "write_optin": write_optin}
    magento = {"subscribers": "database", "database": database, **sections.pop("magento", {})}
    return pair.write_config(path, path.with_suffix(".db"), magento=magento, **sections)


def set_status(server: MariaDB, sid: int, status: int, *, also_in: Shop | None = None) -> None:
    """A status change as Magento makes it: ``change_status_at`` is now, in UTC."""
    server.sql(f"UPDATE `{TABLE}` SET subscriber_status = %s, "
               "change_status_at = UTC_TIMESTAMP() WHERE subscriber_id = %s", [status, sid],
               database=DATABASE)
    if also_in is not None:
        also_in.set_subscriber_status(sid, status)


def add_guest(server: MariaDB, email: str, *, website_id: int = 1, status: int = 1) -> int:
    """A new guest subscriber row (as the newsletter form adds one); its id."""
    server.sql(f"INSERT INTO `{TABLE}` (store_id, change_status_at, customer_id, "
               "subscriber_email, subscriber_status) VALUES (%s, UTC_TIMESTAMP(), 0, %s, %s)",
               [STORE_OF_WEBSITE[website_id], email, status], database=DATABASE)
    return int(server.sql(f"SELECT MAX(subscriber_id) FROM `{TABLE}`", database=DATABASE)
               [0][0])


def row(server: MariaDB, sid: int) -> tuple[Any, ...] | None:
    """(email, status, change_status_at) of one subscriber row, or None."""
    rows = server.sql(f"SELECT subscriber_email, subscriber_status, change_status_at "
                      f"FROM `{TABLE}` WHERE subscriber_id = %s", [sid], database=DATABASE)
    return rows[0] if rows else None
