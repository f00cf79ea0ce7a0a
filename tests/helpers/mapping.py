"""Building the mapping, customers and subscriber rows the unit tests use."""

from __future__ import annotations

from typing import Any

from magsync.config import Config, parse_config
from magsync.mapping import ResolvedMapping, build_mapping
from magsync.model import MirrorRow
from magsync.sandbox.emarsys.fields import COUNTRY, build_system_fields

CUSTOMER_KEY, SUBSCRIBER_KEY, LOYALTY = 7001, 7002, 7100

DEFAULT_FIELDS: dict[str, Any] = {
    "firstname": 1,
    "lastname": 2,
    "dob": {"field": 4, "convert": "date"},
    "gender": {"field": 5, "convert": "gender"},
    "addresses.default_billing.city": 11,
    "addresses.default_billing.region": 12,
    "addresses.default_shipping.street": 10,
    "addresses.default_billing.country_id": {"field": 14, "convert": "country"},
    "custom_attributes.loyalty_tier": {"field": "Loyalty tier", "convert": "choice"},
    "extension_attributes.company_note": 18,
}


def make_config(fields: dict[str, Any] | None = None, *, on_empty: str = "skip",
                subscribers: str = "emarsys-module") -> Config:
    """A valid config with the given customer field map."""
    raw = {
        "magento": {"base_url": "http://127.0.0.1:1", "subscribers": subscribers,
                    "auth": {"method": "bearer", "token": "t"}},
        "emarsys": {"auth": {"username": "u", "secret": "s"}},
        "contacts": {"customers": {"fields": DEFAULT_FIELDS if fields is None else fields}},
        "sync": {"on_empty": on_empty},
    }
    return parse_config(raw, env={})


def account_choices() -> dict[int, list[tuple[str, str]]]:
    fields = build_system_fields()
    out = {fid: [(str(c), label) for c, label in (fields[fid].choices or {}).items()]
           for fid in (5, COUNTRY)}
    out[LOYALTY] = [("1", "Gold"), ("2", "Silver"), ("3", "Bronze Plus")]
    return out


FIELD_IDS: dict[int | str, int] = {"Magento Customer ID": CUSTOMER_KEY,
                                   "Magento Subscriber ID": SUBSCRIBER_KEY,
                                   "Loyalty tier": LOYALTY}


def make_mapping(fields: dict[str, Any] | None = None, *, on_empty: str = "skip",
                 subscribers: str = "emarsys-module") -> ResolvedMapping:
    """The resolved mapping the tests use (sandbox field and choice ids)."""
    cfg = make_config(fields, on_empty=on_empty, subscribers=subscribers)
    return build_mapping(cfg, FIELD_IDS, account_choices())


def make_customer(cid: int = 5, **over: Any) -> dict[str, Any]:
    """A Magento customer as the REST API returns it."""
    customer: dict[str, Any] = {
        "id": cid, "email": f"c{cid}@example.com", "firstname": "Ana", "lastname": "Lopes",
        "dob": "1990-04-05", "gender": 2, "website_id": 1, "store_id": 1,
        "default_billing": "11", "default_shipping": "12",
        "addresses": [
            {"id": 11, "city": "Lisbon", "country_id": "PT", "street": ["Rua A", "2 Esq"],
             "region": {"region": "Lisboa", "region_code": "LX", "region_id": 0},
             "default_billing": True, "default_shipping": False, "postcode": "1000"},
            {"id": 12, "city": "Porto", "country_id": "US", "street": ["Main St 1"],
             "region": {"region": "Texas", "region_code": "TX", "region_id": 57},
             "default_billing": False, "default_shipping": True},
        ],
        "custom_attributes": [{"attribute_code": "loyalty_tier", "value": "gold"}],
        "extension_attributes": {"is_subscribed": True, "company_note": "VIP"},
    }
    customer.update(over)
    return customer


def row(sid: int = 9, cid: int = 5, status: int = 1, website: int | None = 1) -> MirrorRow:
    return MirrorRow(subscriber_id=sid, customer_id=cid, email=f"s{sid}@example.com",
                     status=status, website_id=website, store_id=1)
