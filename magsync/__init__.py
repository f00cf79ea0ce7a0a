"""magsync: keep Magento 2 contacts in sync with SAP Emarsys."""

__version__ = "0.1.0"
