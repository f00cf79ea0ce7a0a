"""The contact model: Magento customers and subscribers -> Emarsys contacts. Pure code.

``build_mapping`` resolves the configured field map once per run (field ids, choice
lists, a stable hash); ``customer_contact`` and ``guest_contact`` turn one Magento person
into a ``Contact``: the Emarsys field values magsync wants that contact to hold, its key
and its Magento-side opt-in. Nothing here does I/O, and inputs are never modified.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from functools import cached_property, lru_cache
from typing import Any

from magsync.config import Config, FieldRef
from magsync.errors import ConfigError
from magsync.model import EMAIL_FIELD, OPTIN, OPTIN_FIELD, STATUS_OPTIN, Contact, MirrorRow
from magsync.util.countries import build_country_table

# Shared, not built per customer: frozensets are immutable.
_CUSTOMER_LISTS = frozenset({"customers"})
_SUBSCRIBED_CUSTOMER_LISTS = frozenset({"customers", "subscribers"})
_ADDRESS_PREFIXES = ("addresses.default_billing.", "addresses.default_shipping.")


@dataclass(frozen=True)
class MappedField:
    """One resolved mapping entry. ``choices`` is the converter's lookup table
    (alpha-2 -> id for country, normalised label -> id for choice, "1"/"2" -> id for
    gender)."""

    path: str
    field_id: int
    convert: str = "text"
    choices: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CompiledField:
    """A MappedField ready to run: its field id as the contact's key, its path reader
    and its converter."""

    entry: MappedField
    key: str
    read: Reader
    convert: Converter


@dataclass(frozen=True)
class ResolvedMapping:
    """The field map of one run, with Emarsys ids resolved."""

    entries: tuple[MappedField, ...]
    customer_key_field: int
    subscriber_key_field: int
    email_field: int = EMAIL_FIELD
    on_empty: str = "skip"
    subscribers_mode: str = "emarsys-module"
    hash: str = ""
    country_unmatched: tuple[str, ...] = ()

    @cached_property
    def compiled(self) -> tuple[CompiledField, ...]:
        """The entries with their paths parsed and converters looked up, once per run
        rather than once per customer."""
        return tuple(CompiledField(e, str(e.field_id), compile_path(e.path),
                                   CONVERTER_FUNCS[e.convert]) for e in self.entries)

    @cached_property
    def maps_email(self) -> bool:
        """Whether an entry maps ``email`` (else the email goes to ``email_field``)."""
        return any(e.path == "email" for e in self.entries)

    def field_ids(self) -> set[str]:
        """Every Emarsys field id (as a string) a contact of this mapping may carry."""
        ids = {str(e.field_id) for e in self.entries}
        ids |= {str(self.customer_key_field), str(self.subscriber_key_field),
                str(self.email_field), OPTIN}
        return ids


# ---------------------------------------------------------------------------------------
# Building the mapping


def build_mapping(cfg: Config, field_ids: Mapping[FieldRef, int],
                  choices: Mapping[int, list[tuple[str, str]]]) -> ResolvedMapping:
    """Resolve the configured mapping against the Emarsys account's fields and choices.

    Raises ``ConfigError`` listing every entry that cannot be resolved.
    """
    problems: list[str] = []
    key_refs = cfg.emarsys.key_fields
    customer_key = _resolve_ref(key_refs.customer_id, field_ids, "emarsys.key_fields."
                                "customer_id", problems)
    subscriber_key = _resolve_ref(key_refs.subscriber_id, field_ids, "emarsys.key_fields."
                                  "subscriber_id", problems)
    reserved = {OPTIN_FIELD: "the opt-in field", customer_key: "the customer key field",
                subscriber_key: "the subscriber key field"}
    entries = _resolve_entries(cfg, field_ids, choices, reserved, problems)
    if problems:
        raise ConfigError("the field mapping cannot be resolved:", problems,
                          hint="run `magsync fields` to see the Emarsys fields")
    email_field = next((e.field_id for e in entries if e.path == "email"), EMAIL_FIELD)
    unmatched = next((build_country_table(choices[e.field_id]).unmatched for e in entries
                      if e.convert == "country"), ())
    resolved = ResolvedMapping(
        entries=tuple(entries), customer_key_field=customer_key,
        subscriber_key_field=subscriber_key, email_field=email_field,
        on_empty=cfg.sync.on_empty, subscribers_mode=cfg.magento.subscribers,
        country_unmatched=unmatched)
    return _with_hash(resolved)


def _resolve_entries(cfg: Config, field_ids: Mapping[FieldRef, int],
                     choices: Mapping[int, list[tuple[str, str]]], reserved: dict[int, str],
                     problems: list[str]) -> list[MappedField]:
    entries: list[MappedField] = []
    used: dict[int, str] = {}
    for fm in cfg.contacts.customers.fields:
        where = f"contacts.customers.fields.{fm.path}"
        fid = _resolve_ref(fm.field, field_ids, where, problems)
        if fid in reserved:
            problems.append(f"{where}: field {fid} is {reserved[fid]}, which magsync "
                            "always sends itself; remove this entry")
            continue
        if fid in used:
            problems.append(f"{where}: field {fid} is already mapped from {used[fid]}")
            continue
        used[fid] = fm.path
        table: Mapping[str, str] = {}
        if fm.convert in ("country", "choice", "gender"):
            table, missing = _choice_table(fm.convert, choices.get(fid))
            if missing:
                problems.append(f"{where}: field {fid} has no choice list (convert: "
                                f"{fm.convert} needs a single-choice field)")
        entries.append(MappedField(fm.path, fid, fm.convert, table))
    return entries


def _resolve_ref(ref: FieldRef, field_ids: Mapping[FieldRef, int], where: str,
                 problems: list[str]) -> int:
    if ref in field_ids:
        return int(field_ids[ref])
    if isinstance(ref, int):
        return ref
    problems.append(f"{where}: Emarsys field {ref!r} does not exist (run `magsync fields "
                    "--create-missing`)")
    return -1


def _choice_table(convert: str, options: list[tuple[str, str]] | None
                  ) -> tuple[Mapping[str, str], bool]:
    """The lookup table of a choice-based converter, and whether the list is missing."""
    if convert == "gender":
        by_label = {_fold(label): str(cid) for cid, label in options or ()}
        # Field 5 is 1 male / 2 female; a custom field is matched on its labels.
        return ({"1": by_label.get("male", "1"), "2": by_label.get("female", "2")}, False)
    if not options:
        return {}, True
    if convert == "country":
        return build_country_table(options).by_iso, False
    return {_fold(label): str(cid) for cid, label in options}, False


def _with_hash(m: ResolvedMapping) -> ResolvedMapping:
    doc = {"entries": sorted([e.path, e.field_id, e.convert] for e in m.entries),
           "keys": [m.customer_key_field, m.subscriber_key_field],
           "email": m.email_field, "subscribers": m.subscribers_mode}
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    return replace(m, hash=digest)


def _fold(text: str) -> str:
    return " ".join(str(text).split()).casefold()


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


# ---------------------------------------------------------------------------------------
# Converters: each returns the Emarsys value (None for empty) or raises ValueError.


def _is_empty(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return value is None or value == []


def convert_text(value: Any, _: MappedField) -> str | None:
    """The value as a string."""
    if type(value) is str:  # nearly every value: skip the (slow) abstract Mapping check
        return value.strip() or None
    if isinstance(value, (dict, Mapping)):
        raise ValueError("is a structure, not a text value")
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value if v is not None)
    text = str(value).strip()
    return text or None


def convert_date(value: Any, _: MappedField) -> str:
    """``YYYY-MM-DD`` from a date, a date-time or their ISO strings."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    try:
        return date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        raise ValueError(f"not a date {text!r}") from None


def convert_gender(value: Any, entry: MappedField) -> str | None:
    """Magento 1 male / 2 female -> the field's choice id; 3 and others -> empty."""
    text = str(value).strip()
    return entry.choices.get(text) if text in ("1", "2") else None


def convert_country(value: Any, entry: MappedField) -> str:
    """ISO alpha-2 -> the country choice id; an unknown code is an error."""
    code = str(value).strip().upper()
    # ``choices`` is the field's CountryTable.by_iso, looked up directly (no copy per call).
    found = entry.choices.get(code) if len(code) == 2 else None
    if found is None:
        raise ValueError(f"unknown country {str(value).strip()!r}")
    return found


def convert_choice(value: Any, entry: MappedField) -> str:
    """A label -> the single-choice field's choice id (case-insensitive)."""
    found = entry.choices.get(_fold(str(value)))
    if found is None:
        raise ValueError(f"no choice {str(value).strip()!r} in field {entry.field_id}")
    return found


Converter = Callable[[Any, MappedField], Any]
CONVERTER_FUNCS: dict[str, Converter] = {
    "text": convert_text, "date": convert_date, "gender": convert_gender,
    "country": convert_country, "choice": convert_choice,
}


def convert_value(value: Any, entry: MappedField) -> Any:
    """Convert one raw value; None for empty; ``ValueError`` when it cannot be."""
    if _is_empty(value):
        return None
    return CONVERTER_FUNCS[entry.convert](value, entry)


# ---------------------------------------------------------------------------------------
# People -> contacts


def customer_contact(customer: Mapping[str, Any], subscriber_rows: list[MirrorRow],
                     m: ResolvedMapping) -> Contact:
    """The contact of one Magento customer (with its subscriber row, if any)."""
    customer_id = int(customer["id"])
    fields, problems = _mapped_fields(customer, m)
    email = customer.get("email")
    if not m.maps_email:
        fields[str(m.email_field)] = email or None
    row = choose_subscriber_row(customer, subscriber_rows)
    if m.subscribers_mode == "none":
        row = None
        optin = _is_subscribed_optin(customer)
    else:
        optin = STATUS_OPTIN.get(row.status) if row is not None else 2
    fields[str(m.customer_key_field)] = str(customer_id)
    lists = _CUSTOMER_LISTS
    if row is not None:
        fields[str(m.subscriber_key_field)] = str(row.subscriber_id)
        lists = _SUBSCRIBED_CUSTOMER_LISTS
    if optin is not None:
        fields[OPTIN] = optin
    return Contact(
        key=f"c:{customer_id}", key_field=m.customer_key_field, key_value=str(customer_id),
        customer_id=customer_id, subscriber_id=row.subscriber_id if row else None,
        email=email, fields=fields, optin=optin, lists=lists,
        problems=tuple(problems), key_fields=(m.customer_key_field, m.subscriber_key_field))


def guest_contact(row: MirrorRow, m: ResolvedMapping) -> Contact:
    """The contact of a subscriber without a customer account: email, opt-in, key."""
    optin = STATUS_OPTIN.get(row.status)
    fields: dict[str, Any] = {str(m.email_field): row.email or None,
                              str(m.subscriber_key_field): str(row.subscriber_id)}
    if optin is not None:
        fields[OPTIN] = optin
    return Contact(
        key=f"s:{row.subscriber_id}", key_field=m.subscriber_key_field,
        key_value=str(row.subscriber_id), customer_id=None, subscriber_id=row.subscriber_id,
        email=row.email, fields=fields, optin=optin, lists=frozenset({"subscribers"}),
        key_fields=(m.customer_key_field, m.subscriber_key_field))


def choose_subscriber_row(customer: Mapping[str, Any], rows: list[MirrorRow]
                          ) -> MirrorRow | None:
    """The customer's subscriber row for the customer's own website.

    A row without a website id is taken only when no row names the website; among
    several, the lowest subscriber id wins so that the choice is stable.
    """
    if not rows:  # most customers have no subscription at all
        return None
    customer_id = int(customer["id"])
    website = customer.get("website_id")
    own = [r for r in rows if r.customer_id == customer_id]
    exact = [r for r in own if website is not None and r.website_id is not None
             and int(r.website_id) == int(website)]
    candidates = exact or [r for r in own if r.website_id is None or website is None]
    return min(candidates, key=lambda r: r.subscriber_id) if candidates else None


def _is_subscribed_optin(customer: Mapping[str, Any]) -> int | None:
    ext = customer.get("extension_attributes")
    flag = ext.get("is_subscribed") if isinstance(ext, Mapping) else None
    # Without the flag Magento told us nothing; sending 2 could unsubscribe someone.
    if flag is None:
        return None
    return 1 if flag is True or str(flag).lower() in ("1", "true") else 2


def _mapped_fields(customer: Mapping[str, Any], m: ResolvedMapping
                   ) -> tuple[dict[str, Any], list[str]]:
    fields: dict[str, Any] = {}
    problems: list[str] = []
    addresses: dict[str, Any] = {}
    for f in m.compiled:
        raw = f.read(customer, addresses)
        try:
            # convert_value inlined: it runs for every entry of every customer.
            fields[f.key] = None if _is_empty(raw) else f.convert(raw, f.entry)
        except ValueError as exc:
            problems.append(f"{f.entry.path}: {exc}")
    return fields, problems
