"""Emarsys fields: list (cached per client), resolve by id or name, create, choices,
and the ``magsync fields [--create-missing]`` report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from magsync.config import Config, FieldMapping, FieldRef
from magsync.emarsys.client import EmarsysApiError, EmarsysClient
from magsync.errors import RemoteConfigError
from magsync.model import EMAIL_FIELD, OPTIN_FIELD

FIELD_EXISTS = 9002
CHOICE_TYPES = frozenset({"singlechoice", "multichoice"})
DATE_TYPES = frozenset({"date", "birthdate"})
# Which Emarsys field types each converter can write into.
COMPATIBLE: dict[str, frozenset[str]] = {
    "date": DATE_TYPES,
    "gender": frozenset({"singlechoice"}),
    "country": frozenset({"singlechoice"}),
    "choice": frozenset({"singlechoice"}),
}


@dataclass(frozen=True)
class EmarsysField:
    """One Emarsys field as ``GET /field`` lists it."""

    id: int
    name: str
    type: str  # Emarsys's application_type: shorttext, numeric, singlechoice, ...


@dataclass(frozen=True)
class Choice:
    """One option of a single-choice field."""

    id: int
    label: str


def list_fields(client: EmarsysClient, *, refresh: bool = False) -> list[EmarsysField]:
    """Every field of the account, read once per client unless ``refresh``."""
    if refresh:
        client.forget("fields")
    return client.memo("fields", lambda: _read_fields(client))


def _read_fields(client: EmarsysClient) -> list[EmarsysField]:
    data = client.call("GET", "/field")
    return [EmarsysField(int(f["id"]), str(f.get("name") or ""),
                         str(f.get("application_type") or ""))
            for f in data or [] if str(f.get("id", "")).isdigit()]


def find_field(client: EmarsysClient, ref: FieldRef) -> EmarsysField | None:
    """The field ``ref`` names (an id, or a name matched case-insensitively), if any.

    An exact name match wins over a case-insensitive one; several case-insensitive
    matches are an error, since magsync cannot tell which one is meant.
    """
    fields = list_fields(client)
    if isinstance(ref, int) or (isinstance(ref, str) and ref.strip().isdigit()):
        fid = int(ref)
        return next((f for f in fields if f.id == fid), None)
    exact = [f for f in fields if f.name == ref]
    if exact:
        return exact[0]
    loose = [f for f in fields if f.name.lower() == ref.strip().lower()]
    if len(loose) > 1:
        ids = ", ".join(str(f.id) for f in loose)
        raise RemoteConfigError(f"Emarsys has several fields named {ref!r} (ids {ids})",
                                service="Emarsys",
                                hint="refer to the field by its numeric id in the config")
    return loose[0] if loose else None


def resolve_field(client: EmarsysClient, ref: FieldRef) -> EmarsysField:
    """The field ``ref`` names; ``RemoteConfigError`` (exit 2) when it does not exist."""
    fld = find_field(client, ref)
    if fld is None:
        what = f"id {ref}" if isinstance(ref, int) else repr(ref)
        hint = ("run `magsync fields --create-missing` to create it" if isinstance(ref, str)
                else "check the field id in Emarsys (Management > Field Editor)")
        raise RemoteConfigError(f"the Emarsys field {what} does not exist",
                                service="Emarsys", hint=hint)
    return fld


def create_field(client: EmarsysClient, name: str, field_type: str = "shorttext"
                 ) -> EmarsysField:
    """Create a custom field; one that already exists (9002) is read back instead."""
    try:
        data = client.call("POST", "/field", json={"name": name, "application_type": field_type})
    except EmarsysApiError as exc:
        if exc.reply_code != FIELD_EXISTS:
            raise
        return resolve_field_fresh(client, name)
    client.forget("fields")
    fid = int(data["id"]) if isinstance(data, dict) and "id" in data else None
    if fid is None:
        return resolve_field_fresh(client, name)
    return EmarsysField(fid, name, field_type)


def resolve_field_fresh(client: EmarsysClient, ref: FieldRef) -> EmarsysField:
    """``resolve_field`` after re-reading the field list."""
    list_fields(client, refresh=True)
    return resolve_field(client, ref)


def read_choices(client: EmarsysClient, field_id: int) -> list[Choice]:
    """The English choice labels of a single-choice field (cached per client)."""
    def load() -> list[Choice]:
        data = client.call("GET", f"/field/{field_id}/choice/translate/en")
        return [Choice(int(c["id"]), str(c.get("choice") or "")) for c in data or []]
    return client.memo(f"choices:{field_id}", load)


def is_compatible(convert: str, field_type: str) -> bool:
    """Whether a converter's output suits a field type (text never goes to a choice)."""
    allowed = COMPATIBLE.get(convert)
    if allowed is not None:
        return field_type in allowed
    return field_type not in CHOICE_TYPES


# ---------------------------------------------------------------------------------------
# `magsync fields`


@dataclass(frozen=True)
class FieldRow:
    """One line of ``magsync fields``: a Magento attribute and its Emarsys field."""

    attribute: str  # Magento attribute path, or a label such as "(customer id key)"
    ref: FieldRef  # as configured
    field: EmarsysField | None  # None: does not exist
    created: bool = False  # created by this call (--create-missing)
    problem: str = ""  # why it is missing and was not created, or a type mismatch

    @property
    def exists(self) -> bool:
        return self.field is not None


def mapped_fields(cfg: Config) -> list[tuple[str, FieldMapping]]:
    """Every field magsync writes: the mapping plus the always-mapped ones."""
    kf = cfg.emarsys.key_fields
    entries = [(m.path, m) for m in cfg.contacts.customers.fields]
    refs = {str(m.field).lower() for _, m in entries}
    always = [
        ("extension_attributes.is_subscribed", FieldMapping("opt-in", OPTIN_FIELD, "choice")),
        ("email", FieldMapping("email", EMAIL_FIELD)),
        ("id (customer id key)", FieldMapping("id", kf.customer_id, type="numeric")),
        ("subscriber_id (subscriber id key)",
         FieldMapping("subscriber_id", kf.subscriber_id, type="numeric")),
    ]
    emails_elsewhere = any(m.path == "email" for _, m in entries)
    for label, m in always:
        if str(m.field).lower() in refs or (m.path == "email" and emails_elsewhere):
            continue
        entries.append((label, m))
    return entries


def report_fields(cfg: Config, client: EmarsysClient, *, create_missing: bool = False
                  ) -> list[FieldRow]:
    """The ``magsync fields`` table; with ``create_missing`` missing named fields are
    created (as ``shorttext`` unless the entry says ``type:``; key fields numeric).

    A missing field referenced by id cannot be created: its row carries a problem, and
    the caller should exit 2 when ``any(r.problem and not r.exists for r in rows)``.
    """
    rows: list[FieldRow] = []
    for attribute, m in mapped_fields(cfg):
        fld = find_field(client, m.field)
        if fld is not None:
            rows.append(FieldRow(attribute, m.field, fld, problem=fit_problem(m.convert, fld)))
        elif isinstance(m.field, int):
            rows.append(FieldRow(attribute, m.field, None,
                                 problem=f"no Emarsys field has id {m.field}; a field "
                                         "referenced by id cannot be created"))
        elif create_missing:
            rows.append(_create_missing(client, attribute, m))
        else:
            rows.append(FieldRow(attribute, m.field, None,
                                 problem="missing: run `magsync fields --create-missing`"))
    return rows


def _create_missing(client: EmarsysClient, attribute: str, m: FieldMapping) -> FieldRow:
    """Create a missing named field of a type its converter can write (a date converter:
    ``date`` unless the entry says ``type:``); a choice field cannot be created over the
    API, nor one whose ``type:`` its converter cannot write."""
    assert isinstance(m.field, str)
    if COMPATIBLE.get(m.convert) == frozenset({"singlechoice"}):
        return FieldRow(attribute, m.field, None, problem=(
            f"missing: convert: {m.convert} needs a single-choice field, which Emarsys "
            "cannot create over the API; create it in the Emarsys UI (Management > Field "
            "Editor), then run `magsync fields` again"))
    ftype = m.type or ("date" if m.convert == "date" else "shorttext")
    if not is_compatible(m.convert, ftype):
        return FieldRow(attribute, m.field, None, problem=(
            f"missing: not created, convert: {m.convert} cannot write into a {ftype} field "
            "(fix the entry's type:)"))
    return FieldRow(attribute, m.field, create_field(client, m.field, ftype), created=True)


def fit_problem(convert: str, fld: EmarsysField) -> str:
    """Why a converter cannot write into this field ("" when it can), with the fix."""
    if is_compatible(convert, fld.type):
        return ""
    if COMPATIBLE.get(convert) == frozenset({"singlechoice"}):
        return (f"convert: {convert} needs a single-choice field, but {fld.name!r} (id "
                f"{fld.id}) is a {fld.type} field; map a single-choice field (create one in "
                f"the Emarsys UI: Management > Field Editor) or drop convert: {convert}")
    if convert == "date":
        return (f"convert: date needs a date field, but {fld.name!r} (id {fld.id}) is a "
                f"{fld.type} field; map a date field or drop convert: date")
    return (f"{fld.name!r} (id {fld.id}) is a {fld.type} field: text cannot be written "
            "into it; map another field or add the converter it needs (convert: choice)")


def row_as_dict(row: FieldRow) -> dict[str, Any]:
    """A row for ``--json`` output."""
    return {"attribute": row.attribute, "ref": row.ref,
            "id": row.field.id if row.field else None,
            "name": row.field.name if row.field else None,
            "type": row.field.type if row.field else None,
            "exists": row.exists, "created": row.created, "problem": row.problem}
