"""Magento 2 REST client: auth, searchCriteria, customer and subscriber readers,
opt-in writers and the ``check`` probes. Everything magsync asks of Magento goes here."""

from __future__ import annotations

from magsync.magento.client import MagentoClient
from magsync.magento.customers import (
    ExportProgress,
    IdRange,
    Page,
    get_customer,
    iter_all_customers,
    iter_changed_customers,
    plan_ranges,
)
from magsync.magento.subscribers import (
    GuestError,
    GuestOptIn,
    iter_subscribers,
    set_customer_subscription,
    set_guest_subscriptions,
)

__all__ = ["ExportProgress", "GuestError", "GuestOptIn", "IdRange", "MagentoClient", "Page",
           "get_customer", "iter_all_customers", "iter_changed_customers",
           "iter_subscribers", "plan_ranges", "set_customer_subscription",
           "set_guest_subscriptions"]
