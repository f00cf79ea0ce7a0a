"""Reading values out of a Magento customer by mapping path, and the ``fields=``
filter that asks Magento for just those values. Pure code."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

_ADDRESS_PREFIXES = ("addresses.default_billing.", "addresses.default_shipping.")

# ---------------------------------------------------------------------------------------
# Reading values out of a customer


# A reader takes the customer and a per-customer cache of its default addresses (role ->
# address or None), so that several address attributes search the addresses once.
Reader = Callable[[Mapping[str, Any], dict[str, Any]], Any]


def extract_value(customer: Mapping[str, Any], path: str) -> Any:
    """The raw value at a mapping path (None when absent)."""
    return compile_path(path)(customer, {})


@lru_cache(maxsize=256)
def compile_path(path: str) -> Reader:
    """The reader of one mapping path: the path is parsed here, not per customer."""
    if path.startswith("custom_attributes."):
        return _custom_reader(path.split(".", 1)[1])
    if path.startswith("extension_attributes."):
        name = path.split(".", 1)[1]

        def read_extension(customer: Mapping[str, Any], _: dict[str, Any]) -> Any:
            ext = customer.get("extension_attributes")
            return ext.get(name) if isinstance(ext, Mapping) else None
        return read_extension
    if path.startswith(_ADDRESS_PREFIXES):
        _, role, attr = path.split(".", 2)
        return _address_reader(role, attr)

    def read_top(customer: Mapping[str, Any], _: dict[str, Any]) -> Any:
        return customer.get(path)
    return read_top


def top_level_key(path: str) -> str | None:
    """The customer key a path reads directly (``customer.get(path)``), None for a
    structured path (custom, extension or address attribute)."""
    if path.startswith(("custom_attributes.", "extension_attributes.", *_ADDRESS_PREFIXES)):
        return None
    return path


def _custom_reader(code: str) -> Reader:
    def read_custom(customer: Mapping[str, Any], _: dict[str, Any]) -> Any:
        for attr in customer.get("custom_attributes") or ():
            if isinstance(attr, Mapping) and attr.get("attribute_code") == code:
                return attr.get("value")
        return None
    return read_custom


def _address_reader(role: str, attr: str) -> Reader:
    def read_address(customer: Mapping[str, Any], addresses: dict[str, Any]) -> Any:
        if role in addresses:
            address = addresses[role]
        else:
            address = addresses[role] = find_default_address(customer, role)
        return _address_value(address, attr) if address is not None else None
    return read_address


def find_default_address(customer: Mapping[str, Any], role: str
                         ) -> Mapping[str, Any] | None:
    """The customer's default billing or shipping address (``role`` is
    ``default_billing`` or ``default_shipping``)."""
    addresses = customer.get("addresses") or ()
    wanted = customer.get(role)
    if wanted not in (None, ""):
        wanted_id = str(wanted)
        for address in addresses:
            if isinstance(address, Mapping) and str(address.get("id")) == wanted_id:
                return address
    # The customer's pointer is missing or stale: trust the address's own flag.
    for address in addresses:
        if isinstance(address, Mapping) and address.get(role) is True:
            return address
    return None


def _address_value(address: Mapping[str, Any], attr: str) -> Any:
    value = address.get(attr)
    if attr == "street" and isinstance(value, list):
        parts = [str(v).strip() for v in value if v is not None and str(v).strip()]
        return ", ".join(parts)
    if attr == "region" and isinstance(value, Mapping):
        return value.get("region")
    return value


# What the sync reads from every customer besides the mapped paths: identity, the
# website that picks the subscriber row, the change stamp, the subscription hint.
_ALWAYS_READ = ("id", "email", "website_id", "updated_at")
_STRUCTURED = ("custom_attributes", "extension_attributes", "addresses")


def customer_fields_filter(paths: Iterable[str]) -> str:
    """Magento's ``fields`` filter for customer searches: only what the mapping paths and
    the sync read, so a page is a fraction of the full customers to send and decode.

    Paths are the config's (``_PATH`` there allows word characters only, which is all the
    filter syntax accepts). A structured attribute mapped whole is requested whole.
    """
    top: dict[str, None] = dict.fromkeys(_ALWAYS_READ)
    extension = {"is_subscribed"}
    roles: set[str] = set()
    address_attrs: set[str] = set()
    for path in paths:
        if path.startswith("custom_attributes."):
            top["custom_attributes"] = None
        elif path.startswith("extension_attributes."):
            extension.add(path.split(".", 1)[1])
        elif path.startswith(_ADDRESS_PREFIXES):
            _, role, attr = path.split(".", 2)
            roles.add(role)
            address_attrs.add(attr)
        else:
            top[path] = None
    # The customer's default_* pointer picks the address by id; the address's own
    # default_* flag is the fallback when the pointer is stale.
    top.update(dict.fromkeys(sorted(roles)))
    parts = [name for name in top if name not in _STRUCTURED or name == "custom_attributes"]
    if "extension_attributes" in top:
        parts.append("extension_attributes")
    else:
        parts.append(f"extension_attributes[{','.join(sorted(extension))}]")
    if "addresses" in top:
        parts.append("addresses")
    elif roles:
        wanted = ["id", *sorted(roles), *sorted(address_attrs - {"id", *roles})]
        parts.append(f"addresses[{','.join(wanted)}]")
    return f"items[{','.join(parts)}]"

