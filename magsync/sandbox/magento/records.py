"""The sandbox shop's rows and constants, shared by the shop and its generator."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
STATUS_SUBSCRIBED, STATUS_NOT_ACTIVE, STATUS_UNSUBSCRIBED, STATUS_UNCONFIRMED = 1, 2, 3, 4
STORE_OF_WEBSITE = {1: 1, 2: 2}
CUSTOMER_KEYS = (
    "group_id", "confirmation", "created_in", "dob", "email", "firstname", "lastname",
    "middlename", "prefix", "suffix", "gender", "store_id", "taxvat", "website_id",
    "disable_auto_group_change", "custom_attributes",
)
ADDRESS_KEYS = (
    "region", "region_id", "country_id", "street", "company", "telephone", "fax", "postcode",
    "city", "firstname", "lastname", "middlename", "prefix", "suffix", "vat_id",
    "custom_attributes",
)


class ShopError(Exception):
    """A mutation Magento itself would refuse (duplicate email, unknown id...)."""


def format_time(moment: datetime) -> str:
    """Magento's UTC timestamp text: ``YYYY-MM-DD HH:MM:SS``, no zone suffix."""
    return moment.astimezone(timezone.utc).strftime(TIME_FORMAT)


def utc_now() -> datetime:
    """The real clock, UTC-aware (the default for ``Shop.now``)."""
    return datetime.now(timezone.utc)


@dataclass
class Subscriber:
    """One row of Magento's ``newsletter_subscriber`` table."""

    subscriber_id: int
    subscriber_email: str
    website_id: int
    store_id: int
    customer_id: int  # 0 = guest
    subscriber_status: int
    change_status_at: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
