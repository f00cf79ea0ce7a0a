"""The Emarsys field catalogue of the sandbox account and the value rules of each type.

Values are stored the way ``getdata`` returns them: a string, or ``None`` for empty.
``normalize_value`` turns what an upsert sends into that form, or raises
``InvalidValue`` (per-contact error 2007) exactly where Emarsys refuses a value.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from magsync.sandbox.emarsys.countries import COUNTRIES

CREATABLE_TYPES = ("shorttext", "longtext", "largetext", "date", "url", "numeric")
CUSTOMER_ID_FIELD = 7001
SUBSCRIBER_ID_FIELD = 7002
KEY_FIELD_NAMES = {CUSTOMER_ID_FIELD: "Magento Customer ID",
                   SUBSCRIBER_ID_FIELD: "Magento Subscriber ID"}
EMAIL, GENDER, COUNTRY, OPT_IN = 3, 5, 14, 31

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_NUMBER_RE = re.compile(r"-?\d+(\.\d+)?\Z")
_MAX_LEN = {"shorttext": 255, "longtext": 255, "url": 1024}
_PLAIN = frozenset({str, int, float})  # exactly these types: bool and subclasses take the full path


class InvalidValue(ValueError):
    """A value Emarsys refuses for a field (per-contact error 2007)."""


@dataclass
class Field:
    """One Emarsys field; ``choices`` maps choice id -> English label for choice fields."""

    id: int
    name: str
    application_type: str
    string_id: str
    read_only: bool = False
    choices: dict[int, str] | None = field(default=None, repr=False)

    def as_json(self) -> dict[str, Any]:
        """The field as ``GET /field`` lists it (ids are strings)."""
        return {"id": str(self.id), "name": self.name,
                "application_type": self.application_type, "string_id": self.string_id}


_SYSTEM: tuple[tuple[int, str, str, str], ...] = (
    (1, "First Name", "shorttext", "first_name"),
    (2, "Last Name", "shorttext", "last_name"),
    (3, "E-Mail", "shorttext", "email"),
    (4, "Date of Birth", "birthdate", "birth_date"),
    (5, "Gender", "singlechoice", "gender"),
    (10, "Address", "shorttext", "address"),
    (11, "City", "shorttext", "city"),
    (12, "State", "shorttext", "state"),
    (13, "ZIP Code", "shorttext", "zip_code"),
    (14, "Country", "singlechoice", "country"),
    (15, "Phone", "shorttext", "phone"),
    (18, "Company", "shorttext", "company"),
    (31, "Opt-In", "singlechoice", "optin"),
    (37, "Mobile", "shorttext", "mobile"),
    (46, "Salutation", "singlechoice", "salutation"),
)
_READ_ONLY: tuple[tuple[int, str, str], ...] = (
    (0, "Interests", "interests"),
    (27, "Avg. length of visit (minutes)", "avg_length_of_visit"),
    (28, "Page views per day", "page_views_per_day"),
    (29, "Days since last email sent", "days_since_last_email_sent"),
    (30, "Response rate (% of emails sent)", "response_rate"),
    (32, "User status", "user_status"),
    (33, "Contact source", "contact_source"),
    (34, "Contact form", "contact_form"),
    (36, "Registration Language", "registration_language"),
    (47, "Email valid", "email_valid"),
    (48, "Date of first registration", "date_of_first_registration"),
)
_CHOICES: dict[int, dict[int, str]] = {
    GENDER: {1: "Male", 2: "Female"},
    OPT_IN: {1: "True", 2: "False"},
    46: {1: "Mr.", 2: "Ms.", 3: "Mrs.", 4: "Mx."},
    COUNTRY: {cid: label for cid, label, _ in sorted(COUNTRIES, key=lambda c: c[1])},
}


def build_system_fields(*, key_fields: bool = True) -> dict[int, Field]:
    """The fields a fresh account has; with ``key_fields`` also 7001/7002 (numeric)."""
    fields = {fid: Field(fid, name, kind, sid, choices=_CHOICES.get(fid))
              for fid, name, kind, sid in _SYSTEM}
    for fid, name, sid in _READ_ONLY:
        fields[fid] = Field(fid, name, "numeric" if fid in (27, 28, 29, 30) else "shorttext",
                            sid, read_only=True)
    if key_fields:
        for fid, name in KEY_FIELD_NAMES.items():
            fields[fid] = Field(fid, name, "numeric", make_string_id(name))
    return fields


def make_string_id(name: str) -> str:
    """Emarsys's string_id of a field name ("Magento Customer ID" -> magento_customer_id)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def normalize_value(fld: Field, value: Any) -> str | None:
    """The stored form of ``value`` for ``fld``; raises ``InvalidValue`` (2007)."""
    if value is None or value == "":
        return None
    if fld.id == OPT_IN:
        # Only the integers 1 and 2: "1", True and 1.0 are all refused.
        if type(value) is int and value in (1, 2):
            return str(value)
        raise InvalidValue(f"Invalid value for the Opt-In field: {value!r}")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidValue(f"Invalid value type for field {fld.id}: {value!r}")
    return _body_normalizer(fld)(fld, value)


def value_normalizer(fld: Field) -> Callable[[Any], str | None]:
    """``normalize_value`` for one field, with its type's branch chosen once: a plain
    non-empty str, int or float (what JSON carries) goes straight to that branch, any
    other value takes the full path. Same results and errors; cache it per field."""
    if fld.id == OPT_IN:
        return partial(normalize_value, fld)
    body = _body_normalizer(fld)
    if body is _normalize_text:
        limit = _MAX_LEN.get(fld.application_type, 1_000_000)

        def normalize_text(value: Any) -> str | None:
            if type(value) is str and 0 < len(value) <= limit:
                return value
            return normalize_value(fld, value)

        return normalize_text

    def normalize(value: Any) -> str | None:
        if type(value) in _PLAIN and value != "":
            return body(fld, value)
        return normalize_value(fld, value)

    return normalize


def _body_normalizer(fld: Field) -> Callable[[Field, str | int | float], str]:
    """The branch of ``normalize_value`` for a non-empty value of an accepted type."""
    if fld.choices is not None:
        return _normalize_choice
    kind = fld.application_type
    if kind in ("date", "birthdate"):
        return _normalize_date
    if kind == "numeric":
        return _normalize_number
    return _normalize_text


def _normalize_text(fld: Field, value: str | int | float) -> str:
    text = str(value)
    if len(text) > _MAX_LEN.get(fld.application_type, 1_000_000):
        raise InvalidValue(f"Value too long for field {fld.id} ({len(text)} chars)")
    return text


def _normalize_choice(fld: Field, value: str | int | float) -> str:
    assert fld.choices is not None
    text = str(value)
    if not text.isdecimal() or int(text) not in fld.choices:
        raise InvalidValue(f"Invalid choice id for field {fld.id}: {value!r}")
    return str(int(text))


def _normalize_date(fld: Field, value: str | int | float) -> str:
    text = str(value)
    try:
        if not _DATE_RE.match(text):
            raise ValueError(text)
        dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidValue(f"Invalid date for field {fld.id} (YYYY-MM-DD): {value!r}") from None
    return text


def _normalize_number(fld: Field, value: str | int | float) -> str:
    text = str(value).strip()
    if not _NUMBER_RE.match(text):
        raise InvalidValue(f"Invalid number for field {fld.id}: {value!r}")
    if "." in text and float(text).is_integer():
        text = str(int(float(text)))
    return text


def index_form(field_id: int, stored: str) -> str:
    """How a stored value is looked up: e-mail addresses ignore case."""
    return stored.lower() if field_id == EMAIL else stored


def render_for_export(fld: Field, stored: str | None) -> str:
    """A stored value as an export CSV shows it: choice labels, opt-in as True/False."""
    if stored is None:
        return ""
    if fld.choices is not None and stored.isdecimal():
        return fld.choices.get(int(stored), stored)
    return stored
