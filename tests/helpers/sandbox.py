"""Reading what the sandbox saw."""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta

from magsync.sandbox.magento.records import Subscriber
from magsync.sandbox.magento.shop import Shop
from magsync.sandbox.pair import SandboxPair
from magsync.util.timeutil import utcnow


def request_seq(pair: SandboxPair) -> int:
    """The Emarsys request sequence number so far (to find the requests after it)."""
    log = pair.emarsys.requests()
    return log[-1].seq if log else 0


def clock_behind(shop: Shop, delta: timedelta = timedelta(seconds=3)) -> None:
    """Run the shop's clock ``delta`` behind the real one: Magento stamps ``updated_at``
    in whole seconds, so an edit made now then lands safely inside the next run's change
    window (which ends before the run's start)."""
    shop.now = lambda: utcnow() - delta


def lowest_row(pair: SandboxPair, *, guest: bool = False, status: int = 1,
               skip: Collection[int] = ()) -> Subscriber:
    """The subscriber row with the lowest id among the customers' rows (the guests' with
    ``guest``) in ``status``, leaving out the customers in ``skip``."""
    return min((s for s in pair.magento.shop.subscribers.values()
                if bool(s.customer_id) != guest and s.subscriber_status == status
                and s.customer_id not in skip), key=lambda s: s.subscriber_id)
