"""Resolving the configured field map against the Emarsys account: field ids, choice
tables and a stable hash, once per run. Pure code."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from magsync.config import Config, FieldRef
from magsync.errors import ConfigError
from magsync.mapping.converters import (
    CONVERTER_FUNCS,
    Converter,
    MappedField,
    fold,
    fused_converter,
)
from magsync.mapping.paths import Reader, compile_path, top_level_key
from magsync.model import EMAIL_FIELD, OPTIN, OPTIN_FIELD
from magsync.util.countries import build_country_table


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
    def steps(self) -> tuple[tuple[str, str | None, Reader, Callable[[Any], Any], str], ...]:
        """The entries as the per-customer loop runs them: (field key, the customer key
        read directly or None, the path reader, the fused converter, the path)."""
        return tuple((f.key, top_level_key(f.entry.path), f.read, fused_converter(f.entry),
                      f.entry.path) for f in self.compiled)

    @cached_property
    def customer_key(self) -> str:
        return str(self.customer_key_field)

    @cached_property
    def subscriber_key(self) -> str:
        return str(self.subscriber_key_field)

    @cached_property
    def email_key(self) -> str:
        return str(self.email_field)

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
        by_label = {fold(label): str(cid) for cid, label in options or ()}
        # Field 5 is 1 male / 2 female; a custom field is matched on its labels.
        return ({"1": by_label.get("male", "1"), "2": by_label.get("female", "2")}, False)
    if not options:
        return {}, True
    if convert == "country":
        return build_country_table(options).by_iso, False
    return {fold(label): str(cid) for cid, label in options}, False


def _with_hash(m: ResolvedMapping) -> ResolvedMapping:
    doc = {"entries": sorted([e.path, e.field_id, e.convert] for e in m.entries),
           "keys": [m.customer_key_field, m.subscriber_key_field],
           "email": m.email_field,
           # contacts depend only on whether subscribers are read at all: the module and
           # the database give the same rows, so switching between them changes nothing
           "subscribers": "none" if m.subscribers_mode == "none" else "emarsys-module"}
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    return replace(m, hash=digest)


