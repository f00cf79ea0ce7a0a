"""The contact model: Magento customers and subscribers -> Emarsys contacts. Pure code.

``build_mapping`` resolves the configured field map once per run (field ids, choice
lists, a stable hash); ``customer_contact`` and ``guest_contact`` turn one Magento person
into a ``Contact``. Nothing here does I/O, and inputs are never modified.
"""

from magsync.mapping.contacts import choose_subscriber_row, customer_contact, guest_contact
from magsync.mapping.converters import CONVERTER_FUNCS, MappedField, convert_value
from magsync.mapping.paths import compile_path, customer_fields_filter, extract_value
from magsync.mapping.resolve import ResolvedMapping, build_mapping

__all__ = ["CONVERTER_FUNCS", "MappedField", "ResolvedMapping", "build_mapping",
           "choose_subscriber_row", "compile_path", "convert_value", "customer_contact",
           "customer_fields_filter", "extract_value", "guest_contact"]
