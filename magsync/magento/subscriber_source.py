"""Where newsletter subscribers come from: one interface, two sources.

``magento.subscribers`` picks the source once per run (``open_subscriber_source``); the
sync code uses only ``SubscriberSource`` and never branches on the setting:

- ``emarsys-module``: the Emarsys Magento module's REST API (``magento.subscribers``).
  No change filter: changes are found by comparing a full read with what was sent.
- ``database``: Magento's own tables (``magento.subscriber_db``), read-only unless
  ``write_optin``. ``change_status_at`` is a change filter, and guests' opt-outs are the
  only write (SPEC section 8).
- ``none``: no source at all (``None``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from magsync.config import MagentoConfig
from magsync.magento.client import MagentoClient
from magsync.magento.subscribers import GuestOptIn, iter_subscribers, set_guest_subscriptions
from magsync.model import MirrorRow
from magsync.pacing import RetryPolicy

if TYPE_CHECKING:  # the database modules load only with ``subscribers: database``
    from magsync.magento.database import Database, DatabaseSettings

GUEST_OPTIN_NOT_WRITTEN = ("subscribers: database writes only guests' opt-outs: a guest's "
                           "opt-in from Emarsys is not written into Magento's database")
WRITE_OPTIN_OFF = ("magento.database.write_optin is false: a guest's opt-out is not written "
                   "into Magento's database")


@dataclass(frozen=True)
class GuestWrite:
    """What became of one guest's opt-in write.

    ``applied``: Magento holds it now. ``refused``: Magento refused this one write (retry
    later). ``not_applied``: the configuration does not let magsync write it; reported,
    never retried.
    """

    status: Literal["applied", "refused", "not_applied"]
    detail: str = ""


APPLIED = GuestWrite("applied")


class SubscriberSource(ABC):
    """Reads subscriber rows for the mirror and writes guests' opt-in back."""

    name: str = ""

    def __init__(self) -> None:
        # Whether the last full read ended without an error: only such a read is a
        # complete picture of the table (what finding deleted guests needs).
        self.last_full_read_complete = False
        self.full_reads_completed = 0

    def iter_all(self, totals: list[int] | None = None) -> Iterator[MirrorRow]:
        """Every subscriber row (of ``magento.website_ids``): the mirror's full read;
        where the source knows how many rows to expect, that count goes to ``totals`` (for
        progress) as the read begins.

        An error mid-way propagates; the read then does not count as complete.
        """
        self.last_full_read_complete = False
        yield from self._read_all(totals)
        self.last_full_read_complete = True
        self.full_reads_completed += 1

    @abstractmethod
    def _read_all(self, totals: list[int] | None) -> Iterator[MirrorRow]:
        """The source's own full read."""

    def iter_changed(self, since: datetime, until: datetime) -> Iterator[MirrorRow] | None:
        """The rows whose status changed (or that were added) in ``[since, until)``, or
        None when the source has no change filter. A partial read: it never tells that a
        row is gone."""
        return None

    def guest_write_refusal(self, subscribed: bool) -> str | None:
        """Why the configuration does not allow writing a guest's opt-in (``subscribed``
        or not) into Magento, or None when it does."""
        return None

    def write_guest_optin(self, row: MirrorRow, subscribed: bool) -> GuestWrite:
        """Set the guest of ``row`` to subscribed (status 1) or unsubscribed (status 3)."""
        refusal = self.guest_write_refusal(subscribed)
        if refusal is not None:
            return GuestWrite("not_applied", refusal)
        return self._write_guest(row, subscribed)

    @abstractmethod
    def _write_guest(self, row: MirrorRow, subscribed: bool) -> GuestWrite:
        """The source's own write (the configuration allows it)."""

    def close(self) -> None:  # noqa: B027 - most sources hold nothing of their own
        """Release what the source holds open."""

    def describe(self) -> str:
        """One line for logs: the source and where it reads."""
        return self.name


class ModuleSource(SubscriberSource):
    """``subscribers: emarsys-module``: the Emarsys module's ``/V1/emarsys/subscriptions``.

    The REST client belongs to the run (customers use it too): ``close`` leaves it open.
    """

    name = "emarsys-module"

    def __init__(self, client: MagentoClient) -> None:
        super().__init__()
        self.client = client

    def _read_all(self, totals: list[int] | None) -> Iterator[MirrorRow]:
        return iter_subscribers(self.client, totals)

    def _write_guest(self, row: MirrorRow, subscribed: bool) -> GuestWrite:
        errors = set_guest_subscriptions(self.client, [GuestOptIn(
            row.email, int(row.website_id or 0), subscribed)])
        if errors:
            return GuestWrite("refused", "; ".join(e.message for e in errors))
        return APPLIED


class DatabaseSource(SubscriberSource):
    """``subscribers: database``: ``newsletter_subscriber`` and ``store``, by keyset."""

    name = "database"

    def __init__(self, db: Database, website_ids: Sequence[int] | None = None) -> None:
        super().__init__()
        self.db = db
        self.website_ids = tuple(website_ids) if website_ids else None

    def _read_all(self, totals: list[int] | None) -> Iterator[MirrorRow]:
        from magsync.magento.subscriber_db import iter_subscribers_db

        return iter_subscribers_db(self.db, self.website_ids)

    def iter_changed(self, since: datetime, until: datetime) -> Iterator[MirrorRow]:
        from magsync.magento.subscriber_db import iter_changed_subscribers

        return iter_changed_subscribers(self.db, since, until, self.website_ids)

    def guest_write_refusal(self, subscribed: bool) -> str | None:
        if subscribed:
            return GUEST_OPTIN_NOT_WRITTEN
        if not self.db.settings.write_optin:
            return WRITE_OPTIN_OFF
        return None

    def _write_guest(self, row: MirrorRow, subscribed: bool) -> GuestWrite:
        from magsync.magento.subscriber_db import write_guest_optout

        if write_guest_optout(self.db, row.subscriber_id, row.email):
            return APPLIED
        return GuestWrite("refused", f"subscriber {row.subscriber_id} with that email is no "
                                     "longer in Magento's newsletter_subscriber table")

    def close(self) -> None:
        self.db.close()

    def describe(self) -> str:
        return f"database at {self.db.target.where}"


def database_settings(cfg: MagentoConfig) -> DatabaseSettings:
    """``magento.database`` as the connection's settings (timeout: ``magento.timeout``)."""
    from magsync.magento.database import DatabaseSettings

    if cfg.database is None:
        raise ValueError("magento.database is not configured")
    db = cfg.database
    return DatabaseSettings(url=db.url.reveal(), table_prefix=db.table_prefix,
                            write_optin=db.write_optin, timeout=cfg.timeout)


def open_database(cfg: MagentoConfig, *, retry: RetryPolicy,
                  sleep: Callable[[float], None] | None = None) -> Database:
    """A (lazily connecting) ``Database`` for ``magento.database``; a ``ConfigError``
    (exit 2) naming ``pip install 'magsync[mysql]'`` when PyMySQL is missing."""
    from magsync.magento.database import Database

    kwargs: dict[str, Any] = {"retry": retry}
    if sleep is not None:
        kwargs["sleep"] = sleep
    return Database(database_settings(cfg), **kwargs)


def open_subscriber_source(cfg: MagentoConfig, client: MagentoClient, *, retry: RetryPolicy,
                           sleep: Callable[[float], None] | None = None
                           ) -> SubscriberSource | None:
    """The source ``magento.subscribers`` names; None with ``subscribers: none``."""
    if cfg.subscribers == "none":
        return None
    if cfg.subscribers == "database":
        return DatabaseSource(open_database(cfg, retry=retry, sleep=sleep), cfg.website_ids)
    return ModuleSource(client)
